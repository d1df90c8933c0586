"""Shipped models (sdn.pretrained) and their packaging (sdn.packaging): every model that ships draws
"red" red and "yellow" yellow, its bf16 file round-trips, and `--model NAME` works in every command.

The checks run on each model in src/sdn/models_data and, always, on a tiny one trained here (flat
colour fields named by their colour, 30 epochs of 48 images) and packaged into a temporary models folder."""

import json

import pytest
import torch

from sdn import pretrained
from sdn.training.checkpoint import export_generator, generator_from_checkpoint, load_checkpoint, load_export
from sdn.cli import main
from sdn.data.captioned_images import CaptionedImages
from sdn.data.demo_data import COLOURS
from sdn.errors import UserError
from sdn.evaluation.metrics.colour import object_colours
from sdn.packaging import package_model, training_hours
from sdn.sampling import generate
from sdn.networks.text import build_text_encoder

FIXTURE = "tiny-colours"
PHRASES = ("{c}", "a {c} picture", "all {c}", "the colour {c}", "something {c}", "a {c} thing", "bright {c}", "it is {c}", "this flower has bright {c} petals")


def colour_fields(size: int = 32) -> CaptionedImages:
    """Each palette colour as a noisy flat field, 9 phrasings each (one in the shipped flower models' phrasing): colour is all there is to learn."""
    g = torch.Generator().manual_seed(0)
    images, captions = [], []
    for colour, rgb in COLOURS.items():
        for phrase in PHRASES:
            field = torch.tensor(rgb, dtype=torch.float32)[:, None, None] + 8 * torch.randn(3, size, size, generator=g)
            images.append(field.clamp(0, 255).to(torch.uint8))
            captions.append([phrase.format(c=colour)])
    return CaptionedImages(images=torch.stack(images), captions=captions, labels=[c[0] for c in captions], split=["train"] * len(captions))


@pytest.fixture(scope="module")
def tiny_run(module_tmp):
    from sdn.training.loop import training_loop

    run = module_tmp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 12-image steps: one thread is faster, much faster on a busy machine
    try:
        training_loop(colour_fields(), run, teacher="efficientnet-lite0", text_encoder="all-minilm-l6-v2", scheme="image",
                      stage1_epochs=30, stage2_epochs=0, batch_size=12, lr=1e-3, fc_dim=64, progress=False, checkpoint_every=None)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="module")
def tiny_models_dir(tiny_run, module_tmp):
    models = module_tmp("models")
    package_model(tiny_run, FIXTURE, models, description="flat colour fields, for the tests", data="48 generated colour fields")
    return models


@pytest.fixture(params=pretrained.list_models() + [FIXTURE])
def model(request, monkeypatch):
    """Each shipped model, then the tiny one (its models folder patched in)."""
    if request.param == FIXTURE:
        monkeypatch.setattr(pretrained, "MODELS_DIR", request.getfixturevalue("tiny_models_dir"))
    return request.param


def test_each_model_draws_red_and_yellow(model):
    """A caption naming red and one naming yellow, in the phrasing of the captions the shipped models
    learned (Reed's flower captions), draw red- and yellow-dominant images."""
    ckpt = load_checkpoint(pretrained.model_path(model))
    encoder = build_text_encoder(ckpt["config"]["text_encoder"])
    images = generate(generator_from_checkpoint(ckpt), encoder.encode(["this flower has bright red petals", "this flower has bright yellow petals"]), precision=ckpt["config"]["precision"])
    for output in range(images.shape[1]):
        assert object_colours(images[:, output]) == ["red", "yellow"], f"{model}, output {output}"


def test_each_model_is_bf16_within_size_and_round_trips(model, tmp_path):
    path = pretrained.model_path(model)
    assert path.stat().st_size <= pretrained.MAX_BYTES
    ckpt = load_export(path)
    generator = generator_from_checkpoint(ckpt)
    parameters = dict(generator.named_parameters())
    for key, stored in ckpt["generator"].items():
        assert stored.dtype == (torch.bfloat16 if key in parameters else torch.float32), key
    assert json.loads((path.parent / pretrained.CONFIG).read_text()) == ckpt["config"]
    again = export_generator(generator, ckpt["config"], tmp_path / "again.safetensors", weights_dtype=torch.bfloat16)
    assert again.read_bytes() == path.read_bytes()  # fp32 in memory and back to bf16: not one bit lost
    assert pretrained.describe(pretrained.model_card(model))


def test_packaged_model_draws_exactly_what_the_run_drew(tiny_run, tiny_models_dir, monkeypatch):
    """bf16 drawing casts the weights to bf16 anyway, so the bf16 package changes no pixel."""
    monkeypatch.setattr(pretrained, "MODELS_DIR", tiny_models_dir)
    text = build_text_encoder("all-minilm-l6-v2").encode(["red", "a blue thing", "green and purple"])
    run = generator_from_checkpoint(load_checkpoint(tiny_run))
    shipped = generator_from_checkpoint(load_checkpoint(pretrained.model_path(FIXTURE)))
    assert torch.equal(generate(run, text, precision="bf16"), generate(shipped, text, precision="bf16"))


def test_model_card_is_filled_from_the_run(tiny_run, tiny_models_dir, tmp_path):
    card = (tiny_models_dir / FIXTURE / pretrained.CARD).read_text()
    steps = len((tiny_run / "stats.jsonl").read_text().splitlines())
    assert f"| training steps | {steps} |" in card and "| resolution | 32 px |" in card
    assert "--scheme image" in card and "--lr 0.001" in card and "--fc-dim 64" in card
    assert "48 generated colour fields" in card and "flat colour fields, for the tests" in card
    metrics = {"metrics": {"ssim": 0.25, "ssim_std": 0.125, "fid": 80.5, "ssim_settings": "piq.ssim"}, "split": "test",
               "cache": "/x/oxford102-64", "real_images": 1155, "captions_per_image": 10, "feature_precision": "fp32"}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    out = package_model(tiny_run, "with-metrics", tmp_path / "models", metrics=tmp_path / "metrics.json", command="sdn train --x 1")
    card = (out / pretrained.CARD).read_text()
    assert "| SSIM | 0.2500 ± 0.1250 | piq.ssim |" in card and "| FID | 80.5000 |" in card
    assert "1155 real images, 10 caption(s) each" in card and "sdn train --x 1" in card and "Rebuilt" not in card


def test_training_hours_sum_the_step_times(tmp_path):
    lines = [{"step": 1, "stage": "stage1", "images_per_s": 10.0}, {"step": 2, "stage": "stage1", "images_per_s": 20.0},
             {"step": 2, "stage": "stage1", "images_per_s": 40.0}, {"step": 3, "stage": "stage2", "images_per_s": 5.0}]
    (tmp_path / "stats.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"step": 4, "sta')
    hours = training_hours(tmp_path, batch_size=36)
    assert hours == pytest.approx({"stage1": (36 / 10 + 36 / 40) / 3600, "stage2": 36 / 5 / 3600})


def test_packaging_refuses_bad_names_oversize_and_overwriting(tiny_run, tiny_models_dir, monkeypatch, tmp_path):
    for bad in ("Flowers", "../x", "a b", ""):
        with pytest.raises(UserError, match="model name"):
            package_model(tiny_run, bad, tmp_path)
    with pytest.raises(UserError, match="exists"):
        package_model(tiny_run, FIXTURE, tiny_models_dir)
    monkeypatch.setattr(pretrained, "MAX_BYTES", 1000)
    with pytest.raises(UserError, match="over the"):
        package_model(tiny_run, "too-big", tmp_path)
    assert not any(tmp_path.iterdir())  # nothing half-written left behind


def test_cli_models_sample_interpolate_take_a_model_name(tiny_models_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pretrained, "MODELS_DIR", tiny_models_dir)
    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["name", "resolution", "text", "encoder"]
    assert table[1].split()[:5] == [FIXTURE, "32", "px", "all-minilm-l6-v2", f"{pretrained.model_path(FIXTURE).stat().st_size / 2**20:.1f}"]
    assert table[1].endswith("flat colour fields, for the tests")
    assert main(["models", FIXTURE]) == 0 and capsys.readouterr().out == pretrained.model_card(FIXTURE)
    out = tmp_path / "red.png"
    assert main(["sample", "--model", FIXTURE, "--text", "red", "--out", str(out)]) == 0
    import numpy as np
    from PIL import Image

    drawn = torch.from_numpy(np.array(Image.open(out).convert("RGB"))).permute(2, 0, 1)
    assert object_colours(drawn[None].float() / 255) == ["red"]
    interpolation = ["interpolate", "--model", FIXTURE, "--text", "red", "--text", "blue", "--steps", "3", "--out", str(tmp_path / "i.png")]
    assert main(interpolation) == 0


def test_evaluate_and_figure_resolve_the_model_name(tiny_models_dir, monkeypatch):
    monkeypatch.setattr(pretrained, "MODELS_DIR", tiny_models_dir)
    import sdn.evaluation.evaluate
    import sdn.evaluation.figure_commands

    seen = []
    monkeypatch.setattr(sdn.evaluation.evaluate, "evaluate", lambda checkpoint, *a, **kw: seen.append(checkpoint) or {"metrics": {}})
    monkeypatch.setattr(sdn.evaluation.figure_commands, "single_figure", lambda kind, checkpoint, *a: seen.append(checkpoint))
    assert main(["evaluate", "--model", FIXTURE, "--data", "cache", "--out", "o"]) == 0
    assert main(["figure", "compare", "--model", FIXTURE, "--data", "cache", "--out", "o.png"]) == 0
    assert seen == [str(pretrained.model_path(FIXTURE))] * 2


def test_unknown_model_is_one_line_listing_the_available_ones(tiny_models_dir, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "MODELS_DIR", tiny_models_dir)
    for command in (["sample", "--text", "red", "--out", "x.png"], ["evaluate", "--data", "c", "--out", "o"]):
        assert main([*command, "--model", "flowers-1024"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"sdn: error: unknown model 'flowers-1024'; available: {FIXTURE} (see `sdn models`)"
    monkeypatch.setattr(pretrained, "MODELS_DIR", tiny_models_dir / "absent")
    assert main(["sample", "--model", FIXTURE, "--text", "red", "--out", "x.png"]) == 2
    assert "available: none ships with this installation" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --checkpoint and --model exclude each other
        main(["sample", "--model", FIXTURE, "--checkpoint", "x", "--text", "red", "--out", "x.png"])


def test_a_built_wheel_ships_the_models(tiny_models_dir, tmp_path):
    """Package data, not only an editable checkout: the wheel (what a non-editable `pip install .` installs) holds each model."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    pytest.importorskip("setuptools")
    root = Path(__file__).resolve().parents[1]
    project = tmp_path / "project"
    shutil.copytree(root / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, project / name)
    shutil.copytree(tiny_models_dir / FIXTURE, project / "src/sdn/models_data" / FIXTURE)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist", "."],
                           cwd=project, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (project / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for file in (pretrained.WEIGHTS, pretrained.CONFIG, pretrained.CARD):
        assert f"sdn/models_data/{FIXTURE}/{file}" in names
    assert "sdn/pretrained.py" in names and "sdn/networks/minilm.py" in names
