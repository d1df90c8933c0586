"""The decisions made once (sdn.utils, CaptionedImages.take, checkpoint names, the registries behind the
CLI's choices, the training presets) do what the places that use them rely on."""

import dataclasses
import errno
import inspect
import os

import pytest
import torch

from sdn.cli import build_parser, main
from sdn.data.captioned_images import CaptionedImages
from sdn.errors import UserError
from sdn.evaluation.metrics import METRICS, default_metrics
from sdn.training.checkpoint import atomic_save, checkpoint_step
from sdn.training.config import PAPER, PRESETS, TrainingConfig
from sdn.training.loop import training_loop
from sdn.training.losses import LOSSES
from sdn.training.schemes import SCHEMES
from sdn.utils import atomic_write, atomic_write_text, image_output


def test_take_selects_every_per_image_field_alike():
    data = CaptionedImages(images=torch.arange(4).view(4, 1, 1, 1).expand(4, 3, 2, 2).to(torch.uint8),
                           captions=[[f"{i}a", f"{i}b"] for i in range(4)], labels=list("wxyz"), split=["train", "test"] * 2,
                           masks=torch.arange(4).view(4, 1, 1).expand(4, 2, 2) > 1, attributes=[{"i": i} for i in range(4)],
                           embeddings=torch.arange(8.0).view(4, 2, 1), embeddings_name="e")
    part = data.take([3, 0, 3], captions_per_image=1)
    assert part.images[:, 0, 0, 0].tolist() == [3, 0, 3]
    assert part.captions == [["3a"], ["0a"], ["3a"]] and part.labels == ["z", "w", "z"] and part.split == ["test", "train", "test"]
    assert part.masks[:, 0, 0].tolist() == [True, False, True] and part.attributes == [{"i": 3}, {"i": 0}, {"i": 3}]
    assert part.embeddings.flatten().tolist() == [6.0, 0.0, 6.0] and part.embeddings_name == "e"
    assert data.subset("test").labels == ["x", "z"] and data.subset("test").captions == [["1a", "1b"], ["3a", "3b"]]


def test_atomic_write_replaces_only_with_a_complete_file(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "old")

    def torn(f):
        f.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, torn)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left
    atomic_write(path, lambda f: f.write(b"new"), durable=True)
    assert path.read_text() == "new"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, where every write fails with ENOSPC")
def test_a_full_disk_is_one_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-latest.pt"
    atomic_save({"w": torch.ones(3)}, path)
    real_fdopen = os.fdopen

    def onto_a_full_disk(fd, *args, **kwargs):  # the temporary file's writes go where the kernel says ENOSPC
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", onto_a_full_disk)
    with pytest.raises(UserError, match="no space left on the disk holding .*checkpoint-latest.pt.*--resume auto"):
        atomic_save({"w": torch.zeros(1_000_000)}, path)  # torch's writer fails first, with the OSError as context
    with pytest.raises(UserError, match="no space left"):
        atomic_write_text(path.with_name("log.json"), "x" * 100_000)  # a plain buffered write fails on its own
    with pytest.raises(OSError, match="not a disk"):  # other failures pass through unchanged
        atomic_write(path, lambda f: (_ for _ in ()).throw(OSError(errno.EIO, "not a disk")))
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_the_cli_reports_a_full_disk_in_one_line_whatever_raised_it(monkeypatch, capsys):
    parser = build_parser()
    args = parser.parse_args(["models"])

    def writes_onto_a_full_disk(_):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # torch's form

    args.func = writes_onto_a_full_disk
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    monkeypatch.setattr("sdn.cli.build_parser", lambda: parser)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sdn: error: no space left on the disk") and err.count("\n") == 1
    args.func = lambda _: (_ for _ in ()).throw(RuntimeError("a bug, not the disk"))
    with pytest.raises(RuntimeError, match="a bug"):  # anything else keeps its traceback
        main(["models"])


def test_image_output_names_the_bad_suffix_and_folder(tmp_path):
    assert image_output(tmp_path / "a.JPG") == tmp_path / "a.JPG"
    with pytest.raises(UserError, match=r"--out must end in \.png or \.jpg, not 'a\.gif'"):
        image_output(tmp_path / "a.gif")
    with pytest.raises(UserError, match="cannot write to folder"):
        image_output(tmp_path / "missing" / "a.png")


def test_checkpoint_names_are_parsed_in_one_place():
    assert checkpoint_step("run/checkpoint-000123.pt") == 123
    assert checkpoint_step("checkpoint-latest.pt") is None and checkpoint_step(".checkpoint-000004.pt.x1.tmp") is None


def test_every_scheme_names_registered_losses():
    assert all(name in LOSSES for scheme in SCHEMES.values() for name in scheme)
    assert [s.n_outputs for s in SCHEMES.values()] == [1, 1, 1, 1, 1, 3, 1]  # diverse draws 3 by default


def test_list_metrics_prints_the_registry_with_its_descriptions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--list-metrics"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(METRICS)
    assert all(m.description in line for m, line in zip(METRICS.values(), lines))
    assert default_metrics() == ("ssim", "fsim", "is", "fid", "variety")


def test_a_choice_outside_its_registry_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", "x", "--scheme", "bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sdn: error:") and "unknown scheme 'bogus'; choose from image, stage1" in err[0]


def test_the_presets_are_training_loops_and_the_clis_defaults():
    signature = inspect.signature(training_loop).parameters
    assert all(signature[f.name].default == getattr(PAPER, f.name) for f in dataclasses.fields(TrainingConfig))
    # `sdn train` leaves these unset until it knows the method (the GAN baselines have their own)
    deferred = {"batch_size", "lr", "stage1_epochs", "stage2_epochs"}
    for command, preset, unset in ((["train", "--out", "x"], PAPER, deferred), (["demo"], PRESETS["demo"], set())):
        args = vars(build_parser().parse_args(command))
        wanted = {f.name: None if f.name in unset else getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name in args}
        assert {k: args[k] for k in wanted} == wanted
        assert len(wanted) >= 20  # most settings are options
