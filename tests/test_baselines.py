"""GAN-INT-CLS and StackGAN Stage-I: networks, losses, noise, exact resume, collapse detection."""

import dataclasses
import math
import warnings

import pytest
import torch
from test_training import tiny_data as _tiny_data

from sdn import baselines
from sdn.baselines import build_discriminator, build_generator
from sdn.baselines.losses import matching_aware_d_loss, mismatched_indices
from sdn.baselines.networks import GanIntClsGenerator, MatchingDiscriminator, StackGanStage1Generator, kl_divergence
from sdn.baselines.noise import fixed_noise
from sdn.baselines.step import GanSettings, StepInputs, gan_step
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.evaluation.collapse import variety_report
from sdn.sampling import Sampler


def cfg(method, resolution=64, **kw):
    spec = baselines.METHODS[method]
    return {**dict(method=method, resolution=resolution, text_dim=16, noise_dim=spec.noise_dim, gf_dim=spec.gf_dim, df_dim=spec.df_dim,
                   text_proj_dim=spec.text_proj_dim, n_outputs=1, noise_seed=0), **kw}


@pytest.fixture
def tiny_specs(monkeypatch):
    """Both methods with narrow networks (the published widths are tested for shape only)."""
    for name, spec in list(baselines.METHODS.items()):
        monkeypatch.setitem(baselines.METHODS, name, dataclasses.replace(spec, gf_dim=8, df_dim=8, noise_dim=8, text_proj_dim=8, batch_size=6))


def test_gan_int_cls_networks_have_the_published_shapes():
    g, d = build_generator(cfg("gan-int-cls")), build_discriminator(cfg("gan-int-cls"))
    assert isinstance(d, MatchingDiscriminator)
    assert g.project[0].weight.shape == (128, 16) and isinstance(g.project[1], torch.nn.LeakyReLU)  # text -> 128-d, leaky ReLU
    assert g.net[0].weight.shape == (100 + 128, 1024, 4, 4)  # [z, text] -> ngf*8 x 4 x 4
    widths = [m.out_channels for m in g.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert widths == [1024, 512, 256, 128, 3]
    text = torch.randn(5, 16)
    images, acts = g.eval()(text)
    assert images.shape == (5, 1, 3, 64, 64) and acts == [] and 0 <= images.min() and images.max() <= 1
    assert d.image(torch.zeros(5, 3, 64, 64)).shape == (5, 512, 4, 4)  # ndf*8 at 4x4, where the text joins
    assert d.project(text).shape == (5, 128) and isinstance(d.project[1], torch.nn.BatchNorm1d)
    assert d.joint[0].in_channels == 512 + 128 and d(images[:, 0] * 2 - 1, text).shape == (5,)


def test_stackgan_stage1_networks_have_the_published_shapes():
    g, d = build_generator(cfg("stackgan1")), build_discriminator(cfg("stackgan1"))
    assert isinstance(g, StackGanStage1Generator) and g.noise_dim == 100 + 128  # z and the CA's epsilon
    assert g.condition[0].weight.shape == (2 * 128, 16)  # mu and log sigma, 128-d each
    assert g.fc[0].weight.shape == (4 * 4 * 128 * 8, 128 + 100)  # [c, z] -> GF_DIM*8 x 4 x 4
    assert [m.out_channels for m in g.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)][-4:] == [512, 256, 128, 3]
    assert sum(isinstance(m, torch.nn.Upsample) for m in g.modules()) == 4
    images, _ = g.eval()(torch.randn(3, 16))
    assert images.shape == (3, 1, 3, 64, 64)
    assert d.image(torch.zeros(3, 3, 64, 64)).shape == (3, 512, 4, 4)  # DF_DIM*8 at 4x4
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in d.project)


@pytest.mark.parametrize("method", ["gan-int-cls", "stackgan1"])
def test_drawings_are_reproducible_per_caption_whatever_the_batch(method):
    g = build_generator(cfg(method, 32, n_outputs=3)).eval()
    text = torch.randn(6, 16)
    alone, _ = g(text[2:3])
    together, _ = g(text)
    assert together.shape == (6, 3, 3, 32, 32)
    torch.testing.assert_close(together[2], alone[0])  # the same caption, the same drawings, in any batch
    assert (together[0, 0] - together[0, 1]).abs().mean() > 1e-3  # n outputs: n different noise vectors
    assert (together[0, 0] - together[1, 0]).abs().mean() > 1e-3  # different captions, different noise
    bf16 = Sampler(g, precision="bf16")(text)
    assert (bf16 - together).abs().mean() < 0.02  # a bf16 Sampler picks the same noise rows
    with fixed_noise(g):
        fixed, _ = g(text)
        noise = g.sampling_noise(text)
    assert all(torch.equal(noise[i], noise[0]) for i in range(6))  # every caption the same noise (interpolation figures)
    assert g.fixed_noise is False and not torch.allclose(fixed, together)


def test_matching_aware_loss_values():
    real, wrong, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.5]), torch.tensor([-3.0, 0.0])

    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -math.log(p) if target else -math.log(1 - p)

    terms = matching_aware_d_loss(real, wrong, fake, 0.5)
    expected = sum(bce(x, 1) for x in real.tolist()) / 2 + 0.5 * sum(bce(x, 0) for x in wrong.tolist()) / 2 + 0.5 * sum(bce(x, 0) for x in fake.tolist()) / 2
    assert terms["d_loss"].item() == pytest.approx(expected, rel=1e-6)


def test_wrong_captions_come_from_other_classes():
    assert mismatched_indices(["a", "a", "b", "c", "a"]).tolist() == [2, 2, 3, 4, 2]
    assert mismatched_indices(["a", "a", "a"]).tolist() == [1, 2, 0]  # one class only: someone else's caption


def _two_class_batch(n=16, res=32):
    """Red images captioned with text A, blue images with text B."""
    labels = torch.arange(n) % 2
    images = torch.full((n, 3, res, res), -1.0)
    images[labels == 0, 0], images[labels == 1, 2] = 1.0, 1.0
    texts = torch.stack([torch.randn(16, generator=torch.Generator().manual_seed(int(c))) for c in labels])
    return images, texts, labels


@pytest.mark.parametrize("wrong_weight", [0.5, 0.0])
def test_the_discriminator_learns_to_refuse_mismatched_captions_only_with_the_wrong_text_term(wrong_weight):
    torch.manual_seed(0)
    images, texts, labels = _two_class_batch(8)
    g, d = GanIntClsGenerator(32, 16, 8, 8, 8), MatchingDiscriminator(32, 16, 8, 8)
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.5, 0.999)), torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    wrong = texts[mismatched_indices(labels.tolist())]
    seen = []
    for step in range(30):
        x = StepInputs(images, texts, wrong, torch.randn(8, 8), torch.randn(8, 8), torch.randn(8, 8))
        seen.append(gan_step(g, d, opt_g, opt_d, x, GanSettings(wrong_weight=wrong_weight), torch.device("cpu"), "fp32"))
    p_real, p_wrong = (sum(t[k] for t in seen[-10:]) / 10 for k in ("p_real", "p_wrong"))  # D's mean probabilities, last 10 steps
    if wrong_weight:
        assert p_real - p_wrong > 0.4 and p_wrong < 0.3  # real image + right caption accepted, + wrong caption refused
    else:
        assert p_wrong > 0.5 and p_real - p_wrong < 0.3  # without the term nothing teaches D that a caption can be wrong


@pytest.mark.parametrize("method", ["gan-int-cls", "stackgan1"])
def test_the_generator_learns_what_the_discriminator_sees(method):
    """Every real image is pure red: within 30 steps the drawings turn red (their red channel above the others)."""
    torch.manual_seed(0)
    c = {**cfg(method, 32), "gf_dim": 8, "df_dim": 8, "noise_dim": 8, "text_proj_dim": 8}
    g, d = build_generator(c), build_discriminator(c)
    images, texts = torch.full((8, 3, 32, 32), -1.0), torch.randn(8, 16)
    images[:, 0] = 1.0
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 2e-3, betas=(0.5, 0.999)), torch.optim.Adam(d.parameters(), 2e-3, betas=(0.5, 0.999))
    spec = baselines.METHODS[method]

    def redness():
        with torch.no_grad():
            drawn, _ = g.draw(texts, torch.randn(8, g.noise_dim))
        return (drawn[:, 0] - drawn[:, 1:].mean(1)).mean().item()

    before = redness()
    for _ in range(30):
        x = StepInputs(images, texts, texts.roll(1, 0), *(torch.randn(8, g.noise_dim) for _ in range(3)))
        gan_step(g, d, opt_g, opt_d, x, GanSettings(0.5, spec.interp_weight, spec.kl_weight), torch.device("cpu"), "fp32")
    assert abs(before) < 0.1 and redness() > 0.25


def test_kl_term_and_its_weight():
    mu, log_sigma = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.1, -0.2]])
    by_hand = ((-0.1 + 0.5 * (-1 + math.exp(0.2) + 0.25)) + (0.2 + 0.5 * (-1 + math.exp(-0.4) + 1.0))) / 2
    assert kl_divergence(mu, log_sigma).item() == pytest.approx(by_hand, rel=1e-6)
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0  # the prior itself
    assert baselines.METHODS["stackgan1"].kl_weight == 2.0 and baselines.METHODS["gan-int-cls"].kl_weight == 0
    torch.manual_seed(0)
    g, d = StackGanStage1Generator(32, 16, 8, 8, 8), MatchingDiscriminator(32, 16, 8, 8, text_batch_norm=False, residual=True)
    images, texts, _ = _two_class_batch(4)
    x = StepInputs(images, texts, texts.roll(1, 0), torch.randn(4, 16), torch.randn(4, 16), torch.randn(4, 16))
    terms = gan_step(g, d, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()), x, GanSettings(kl_weight=2.0),
                     torch.device("cpu"), "fp32")
    assert terms["kl"] > 0 and terms["g_loss"] == pytest.approx(terms["g_adversarial"] + 2.0 * terms["kl"], rel=1e-6)


@pytest.fixture(scope="module")
def tiny_data():
    return _tiny_data.__wrapped__()


RUN = dict(text_encoder="test-hash", precision="fp32", progress=False, checkpoint_every=2, epochs=2, seed=3)


@pytest.mark.parametrize("method", ["gan-int-cls", "stackgan1"])
def test_a_gan_run_killed_and_resumed_matches_the_uninterrupted_run_bit_for_bit(tmp_path, tiny_data, tiny_specs, monkeypatch, method):
    from sdn.baselines import loop

    # 18 train images, batches of 6: 3 steps an epoch, 6 in all; checkpoints at 2, 3 (epoch end), 4
    whole = load_checkpoint(loop.gan_training_loop(tiny_data, tmp_path / "whole", method=method, **RUN))
    real_step, calls = loop.gan_step, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "gan_step", dying)
    with pytest.raises(KeyboardInterrupt):
        loop.gan_training_loop(tiny_data, tmp_path / "cut", method=method, **RUN)
    monkeypatch.setattr(loop, "gan_step", real_step)
    assert load_checkpoint(tmp_path / "cut")["position"] == {"epoch": 1, "images": 6}
    resumed = load_checkpoint(loop.gan_training_loop(tiny_data, tmp_path / "cut", method=method, resume="auto", **RUN))
    assert resumed["step"] == whole["step"] == 6 and resumed["history"] == whole["history"]
    for key in ("generator", "discriminator"):
        for name, value in whole[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)
    for key in ("optimizer", "optimizer_d"):
        for i, state in whole[key]["state"].items():
            assert all(torch.equal(resumed[key]["state"][i][k], v) for k, v in state.items()), (key, i)
        assert resumed[key]["param_groups"] == whole[key]["param_groups"]
    generator = generator_from_checkpoint(load_checkpoint(tmp_path / "cut" / "generator.safetensors"))
    assert type(generator) is type(generator_from_checkpoint(whole))


def test_a_deliberately_collapsed_run_is_flagged(tmp_path, tiny_data, tiny_specs, monkeypatch):
    import json

    from sdn.baselines import loop

    real_draw = StackGanStage1Generator.draw
    monkeypatch.setattr(StackGanStage1Generator, "draw", lambda self, text, noise: real_draw(self, text * 0, noise * 0))  # ignores its inputs
    with pytest.warns(UserWarning, match="looks collapsed"):
        loop.gan_training_loop(tiny_data, tmp_path / "collapsed", method="stackgan1", **{**RUN, "epochs": 1})
    collapsed = json.loads((tmp_path / "collapsed" / "collapse.json").read_text())
    assert collapsed["collapsed"] and collapsed["variety"] < 1e-3
    monkeypatch.setattr(StackGanStage1Generator, "draw", real_draw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy run warns about nothing
        loop.gan_training_loop(tiny_data, tmp_path / "healthy", method="stackgan1", **{**RUN, "epochs": 1})
    healthy = json.loads((tmp_path / "healthy" / "collapse.json").read_text())
    assert not healthy["collapsed"] and healthy["variety"] > 100 * collapsed["variety"]
    lines = (tmp_path / "healthy" / "stats.jsonl").read_text().splitlines()
    assert '"batch_variety"' in lines[0] and '"p_fake"' in lines[0] and '"collapse_check"' in lines[-1]


def test_variety_report_on_known_images():
    reals = torch.rand(20, 3, 8, 8)
    assert variety_report(reals, reals)["variety"] == pytest.approx(1.0) and not variety_report(reals, reals)["collapsed"]
    same = variety_report(reals[:1].expand(20, -1, -1, -1), reals)
    assert same["variety"] == 0 and same["collapsed"]
    few = variety_report(reals[torch.arange(20) % 2], reals)  # two drawings for twenty captions: the set varies, neighbours do not
    assert few["variety"] > 0.5 and few["variety_nearest"] == 0 and few["collapsed"]


def test_a_non_finite_discriminator_loss_skips_only_its_update(monkeypatch):
    from sdn.baselines import step as step_module

    g, d = GanIntClsGenerator(32, 16, 8, 8, 8), MatchingDiscriminator(32, 16, 8, 8)
    opt_g, opt_d = torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters())
    real_loss = step_module.matching_aware_d_loss
    monkeypatch.setattr(step_module, "matching_aware_d_loss", lambda *a: {k: v * float("nan") for k, v in real_loss(*a).items()})
    before = {k: v.clone() for k, v in d.state_dict().items() if "running" not in k and "num_batches" not in k}
    images, texts, _ = _two_class_batch(4)
    terms = gan_step(g, d, opt_g, opt_d, StepInputs(images, texts, texts.roll(1, 0), *(torch.randn(4, 8) for _ in range(3))), GanSettings(),
                     torch.device("cpu"), "fp32")
    assert math.isnan(terms["loss"]) and math.isfinite(terms["g_loss"])  # the loop's divergence guard counts this step
    assert not opt_d.state and all(torch.equal(d.state_dict()[k], v) for k, v in before.items())
    assert opt_g.state  # G still stepped


def test_checkpoints_without_a_method_are_sdn_ones():
    from sdn.training.checkpoint import check_compatible
    from sdn.errors import UserError
    from sdn.networks.generator import Generator
    from sdn.networks.teachers import teacher_taps

    old = {"teacher": "efficientnet-lite0", "resolution": 32, "text_dim": 16, "fc_dim": 8, "n_outputs": 1}  # written before "method"
    state = Generator(teacher_taps("efficientnet-lite0"), 32, 16, 8).state_dict()
    assert type(generator_from_checkpoint({"config": old, "generator": state})) is Generator
    check_compatible(old, {"method": "sdn", "resolution": 32})
    with pytest.raises(UserError, match="made with method='sdn' but this run has method='gan-int-cls'"):
        check_compatible(old, {"method": "gan-int-cls", "resolution": 32})


def test_an_sdn_run_saved_before_methods_existed_resumes(tmp_path, tiny_data):
    from test_training import TINY

    from sdn.training.checkpoint import atomic_save, checkpoint_files
    from sdn.training.loop import training_loop

    training_loop(tiny_data, tmp_path, **{**TINY, "stage1_epochs": 1, "stage2_epochs": 0})
    for path in checkpoint_files(tmp_path):
        ckpt = load_checkpoint(path)
        del ckpt["config"]["method"]  # as written before the baselines
        atomic_save(ckpt, path)
    resumed = load_checkpoint(training_loop(tiny_data, tmp_path, resume="auto", **{**TINY, "stage1_epochs": 2, "stage2_epochs": 0}))
    assert resumed["step"] == 6 and resumed["config"]["method"] == "sdn"


def test_resuming_a_gan_run_with_other_settings_is_refused_unless_allowed(tmp_path, tiny_data, tiny_specs):
    from sdn.baselines.loop import gan_training_loop
    from sdn.errors import UserError

    gan_training_loop(tiny_data, tmp_path, method="stackgan1", **{**RUN, "epochs": 1})
    with pytest.raises(UserError, match=r"lr: 0.0002 saved, 0.001 now"):
        gan_training_loop(tiny_data, tmp_path, method="stackgan1", resume="auto", lr=1e-3, **{**RUN, "epochs": 2})
    with pytest.raises(UserError, match="made with method='stackgan1' but this run has method='gan-int-cls'"):
        gan_training_loop(tiny_data, tmp_path, method="gan-int-cls", resume="auto", **{**RUN, "epochs": 2})
    ckpt = load_checkpoint(gan_training_loop(tiny_data, tmp_path, method="stackgan1", resume="auto", lr=1e-3, allow_changed_settings=("lr",),
                                             **{**RUN, "epochs": 2}))
    assert ckpt["step"] == 6 and ckpt["config"]["changed_settings"] == [{"key": "lr", "from": 2e-4, "to": 1e-3, "step": 3}]


def test_a_gan_run_checkpoints_every_nth_epoch_end_and_the_last(tmp_path, tiny_data, tiny_specs):
    """18 train images, batches of 6: 3 steps an epoch; 3 epochs, every 2nd epoch end: steps 6 and 9."""
    from sdn.baselines import loop
    from sdn.training.checkpoint import checkpoint_files

    run = {**RUN, "epochs": 3, "checkpoint_every": None, "checkpoint_epochs": 2, "keep_checkpoints": 10}
    loop.gan_training_loop(tiny_data, tmp_path, method="gan-int-cls", **run)
    assert [p.name for p in checkpoint_files(tmp_path)] == ["checkpoint-000009.pt", "checkpoint-000006.pt", "checkpoint-latest.pt"]
