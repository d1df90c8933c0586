import json
import math

import pytest
import torch

from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.data.demo_data import make_demo_data
from sdn.errors import UserError
from sdn.training.losses import Stage1Loss, Stage2Loss
from sdn.training.schemes import SCHEMES
from sdn.training.loop import training_loop
from sdn.training.step import train_step
from sdn.networks.teachers import build_teacher
from sdn.networks.generator import Generator


@pytest.fixture(scope="module")
def tiny_data():
    data = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=2)
    return data.take(list(range(0, len(data), 18)))  # one image per colour-shape class: 18 train + 6 test


TINY = dict(teacher="efficientnet-lite0", text_encoder="test-hash", fc_dim=32, batch_size=8, progress=False)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_trains_with_finite_losses(tmp_path, tiny_data, scheme):
    path = training_loop(tiny_data, tmp_path, scheme=scheme, stage1_epochs=1, stage2_epochs=1, **TINY)
    ckpt = load_checkpoint(path)
    losses = [v for _, _, v in ckpt["history"]]
    assert len(losses) == 2 * math.ceil(18 / 8) and all(math.isfinite(v) for v in losses)
    stages = [s for _, s, _ in ckpt["history"]]
    assert stages[0] == SCHEMES[scheme][0] and stages[-1] == SCHEMES[scheme][1]
    assert generator_from_checkpoint(ckpt).n_outputs == (3 if scheme == "diverse" else 1)


def test_cached_caption_embeddings_are_used_without_building_the_encoder(tmp_path, tiny_data, monkeypatch):
    """A cache prepared with the run's encoder trains without loading that encoder (its weights may be
    absent, e.g. on a machine without the MiniLM package); its 5-d vectors set G's text input."""
    import dataclasses

    import sdn.data.batches as batches

    def refuse(name):
        raise AssertionError(f"the {name} encoder was built although the cache holds its embeddings")

    monkeypatch.setattr(batches, "build_text_encoder", refuse)
    embeddings = torch.randn(len(tiny_data), 2, 5)
    cached = dataclasses.replace(tiny_data, embeddings=embeddings, embeddings_name="test-hash")
    ckpt = load_checkpoint(training_loop(cached, tmp_path, scheme="stage2", stage1_epochs=0, stage2_epochs=1, **TINY))
    assert ckpt["config"]["text_dim"] == 5
    with pytest.raises(AssertionError, match="encoder was built"):  # without cached vectors it must build one
        training_loop(tiny_data, tmp_path / "other", scheme="stage2", stage1_epochs=0, stage2_epochs=1, **TINY)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_teacher_stays_frozen_through_a_training_step(stage):
    teacher = build_teacher("efficientnet-lite0", resolution=32)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    generator = Generator(teacher.taps, 32, 4, fc_dim=16)
    opt = torch.optim.Adam(generator.parameters(), 1e-3)
    loss_fn = (Stage1Loss if stage == "stage1" else Stage2Loss)([1.0] * len(teacher.taps))
    g_before = generator.steps[-1].conv.weight.clone()
    train_step(generator, teacher, loss_fn, torch.rand(2, 3, 32, 32), torch.randn(2, 4), opt, torch.device("cpu"), "fp32")
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics
    assert all(p.grad is None for p in teacher.parameters())
    assert not torch.equal(g_before, generator.steps[-1].conv.weight)  # the generator did learn


def test_resume_continues_from_the_saved_step(tmp_path, tiny_data):
    first = training_loop(tiny_data, tmp_path / "a", stage1_epochs=1, stage2_epochs=1, seed=1, **TINY)
    # Stop after the first epoch: a run with one epoch in total writes the same first checkpoint.
    partial = training_loop(tiny_data, tmp_path / "b", stage1_epochs=1, stage2_epochs=0, seed=1, **TINY)
    assert load_checkpoint(partial)["step"] == 3
    resumed = training_loop(tiny_data, tmp_path / "b", stage1_epochs=1, stage2_epochs=1, seed=1, resume=partial, **TINY)
    a, b = load_checkpoint(first), load_checkpoint(resumed)
    assert b["step"] == a["step"] == 6 and b["epoch"] == 1
    assert [s for s, _, _ in b["history"]] == [1, 2, 3, 4, 5, 6]
    assert [v for *_, v in b["history"]] == pytest.approx([v for *_, v in a["history"]], rel=1e-3)


def test_resume_from_another_configuration_is_refused(tmp_path, tiny_data):
    path = training_loop(tiny_data, tmp_path, stage1_epochs=1, stage2_epochs=0, **TINY)
    with pytest.raises(UserError, match="fc_dim=32 but this run has fc_dim=64"):
        training_loop(tiny_data, tmp_path, stage1_epochs=2, stage2_epochs=0, resume=path, **{**TINY, "fc_dim": 64})


def test_bad_arguments_are_one_clear_error(tmp_path, tiny_data):
    with pytest.raises(UserError, match="unknown scheme"):
        training_loop(tiny_data, tmp_path, scheme="gan", **TINY)
    with pytest.raises(UserError, match="diverse scheme needs"):
        training_loop(tiny_data, tmp_path, scheme="diverse", n_outputs=1, **TINY)
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(UserError, match="cannot write to output folder"):
        training_loop(tiny_data, blocker / "run", **TINY)
    assert blocker.read_text() == "keep me"


def test_a_fresh_run_does_not_silently_replace_an_existing_one(tmp_path, tiny_data):
    path = training_loop(tiny_data, tmp_path, stage1_epochs=1, stage2_epochs=0, **TINY)
    before = path.read_bytes()
    with pytest.raises(UserError, match="already holds a run"):
        training_loop(tiny_data, tmp_path, stage1_epochs=1, stage2_epochs=0, **TINY)
    assert path.read_bytes() == before
    training_loop(tiny_data, tmp_path, stage1_epochs=1, stage2_epochs=0, overwrite=True, **TINY)
    lines = (tmp_path / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]  # the new run's log only, one line per step


class CountingTeacher(torch.nn.Module):
    """Wraps a teacher and records, per call, whether the images needed gradients (drawn) or not (real)."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher, self.taps, self.calls = teacher, teacher.taps, []

    def forward(self, images):
        self.calls.append("drawn" if images.requires_grad else "real")
        return self.teacher(images)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_each_scheme_uses_exactly_its_loss_terms_and_teacher_passes(scheme):
    """image: pixel only, no teacher; stage1: taps of G's own activations, teacher on the real images
    only; stage2: teacher on real and drawn; joint: both losses' terms."""
    expected = {
        "image": (("loss", "pixel"), []),
        "stage1": (("loss", "taps", "pixel"), ["real"]),
        "stage2": (("loss", "taps", "pixel"), ["real", "drawn"]),
        "joint": (("loss", "stage1_taps", "stage1_pixel", "stage2_taps", "stage2_pixel"), ["real", "drawn"]),
        # the critic reads the taps the loss already made: no third teacher pass
        "stage2-projected": (("loss", "taps", "pixel", "adversarial", "d_loss", "d_real", "d_fake", "d_wrong"), ["real", "drawn"]),
    }
    from sdn.networks.projected_discriminator import ProjectedDiscriminator
    from sdn.training.losses import ImageLoss, ProjectedStage2Loss, SumOfLosses

    teacher = CountingTeacher(build_teacher("efficientnet-lite0", resolution=32))
    weights = [1.0] * len(teacher.taps)
    critic = ProjectedDiscriminator(teacher.taps, 4)
    losses = {"image": ImageLoss(weights), "stage1": Stage1Loss(weights), "stage2": Stage2Loss(weights),
              "stage2-projected": ProjectedStage2Loss(weights, critic=critic)}
    losses["joint"] = SumOfLosses(stage1=losses["stage1"], stage2=losses["stage2"])
    for stage in dict.fromkeys(SCHEMES[scheme]):
        teacher.calls.clear()
        generator = Generator(teacher.taps, 32, 4, fc_dim=16)
        terms = train_step(generator, teacher, losses[stage], torch.rand(2, 3, 32, 32), torch.randn(2, 4),
                           torch.optim.SGD(generator.parameters(), 0.0), torch.device("cpu"), "fp32",
                           critic_optimizer=torch.optim.SGD(critic.parameters(), 0.0))
        names, calls = expected[stage]
        assert tuple(terms) == names and teacher.calls == calls, stage
        if stage == "joint":
            assert terms["loss"] == pytest.approx(sum(v for k, v in terms.items() if k != "loss"), rel=1e-5)


def test_cosine_lr_decay_is_followed_step_by_step_and_logged(tmp_path, tiny_data):
    from sdn.training.optim import scheduled_lr

    assert scheduled_lr(1e-3, "none", 5, 10) == 1e-3
    assert [scheduled_lr(1.0, "cosine", s, 4) for s in range(5)] == pytest.approx([1.0, 0.8536, 0.5, 0.1464, 0.0], abs=1e-4)
    training_loop(tiny_data, tmp_path, stage1_epochs=1, stage2_epochs=1, lr=1e-3, lr_decay="cosine", **TINY)
    logged = [json.loads(line)["lr"] for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert logged == pytest.approx([scheduled_lr(1e-3, "cosine", s, 6) for s in range(6)])
    assert logged[0] == pytest.approx(1e-3) and logged[-1] < 1e-4  # decays within the run, not only at its end
    with pytest.raises(UserError, match="--lr-decay must be one of none, cosine"):
        training_loop(tiny_data, tmp_path / "bad", lr_decay="step", **TINY)


def test_caption_noise_changes_training_and_is_part_of_the_run_settings(tmp_path, tiny_data):
    plain = load_checkpoint(training_loop(tiny_data, tmp_path / "plain", stage1_epochs=1, stage2_epochs=0, **TINY))
    noisy_path = training_loop(tiny_data, tmp_path / "noisy", stage1_epochs=1, stage2_epochs=0, caption_noise=0.5, **TINY)
    noisy = load_checkpoint(noisy_path)
    assert noisy["config"]["caption_noise"] == 0.5 and plain["config"]["caption_noise"] == 0.0
    assert noisy["history"][0][2] == pytest.approx(plain["history"][0][2], rel=0.5)  # the same task, a little perturbed
    assert [v for *_, v in noisy["history"]] != [v for *_, v in plain["history"]]
    with pytest.raises(UserError, match="caption_noise: 0.5 saved, 0.0 now"):  # a resume cannot drop it silently
        training_loop(tiny_data, tmp_path / "noisy", stage1_epochs=2, stage2_epochs=0, resume=noisy_path, **TINY)
    with pytest.raises(UserError, match="--caption-noise must be 0 or more"):
        training_loop(tiny_data, tmp_path / "bad", caption_noise=-1.0, **TINY)


def test_caption_blend_mixes_two_captions_of_the_same_image_at_a_sentence_vectors_length():
    from sdn.data.batches import caption_blend, epoch_blend

    vectors = torch.nn.functional.normalize(torch.randn(4, 3, 8), dim=2)
    offset, weight = epoch_blend(seed=0, epoch=0, n_images=4, captions_per_image=3)
    assert ((offset >= 1) & (offset <= 2)).all() and ((weight >= 0) & (weight <= 1)).all()  # never a caption with itself
    pick = torch.tensor([0, 1, 2, 0])
    blend = caption_blend(vectors, pick, offset, weight)
    assert torch.allclose(blend.norm(dim=1), torch.ones(4), atol=1e-5)  # unit sentences in, unit length out
    rows = torch.arange(4)
    second = vectors[rows, (pick + offset) % 3]
    direction = weight[:, None] * vectors[rows, pick] + (1 - weight[:, None]) * second
    assert torch.allclose(torch.nn.functional.normalize(direction, dim=1), blend, atol=1e-5)
    ends = caption_blend(vectors, pick, offset, torch.ones(4))  # weight 1: the drawn caption itself
    assert torch.allclose(ends, vectors[rows, pick], atol=1e-6)
    assert torch.equal(epoch_blend(0, 0, 4, 3)[0], offset) and not torch.equal(epoch_blend(0, 1, 50, 3)[1], epoch_blend(0, 2, 50, 3)[1])


def test_caption_mix_changes_training_and_is_part_of_the_run_settings(tmp_path, tiny_data):
    plain = load_checkpoint(training_loop(tiny_data, tmp_path / "plain", stage1_epochs=1, stage2_epochs=0, **TINY))
    mixed_path = training_loop(tiny_data, tmp_path / "mixed", stage1_epochs=1, stage2_epochs=0, caption_mix=True, **TINY)
    mixed = load_checkpoint(mixed_path)
    assert mixed["config"]["caption_mix"] is True and plain["config"]["caption_mix"] is False
    assert [v for *_, v in mixed["history"]] != [v for *_, v in plain["history"]]
    with pytest.raises(UserError, match="caption_mix: True saved, False now"):  # a resume cannot drop it silently
        training_loop(tiny_data, tmp_path / "mixed", stage1_epochs=2, stage2_epochs=0, resume=mixed_path, **TINY)


def test_global_text_scaling_divides_every_dimension_by_one_spread(tmp_path, tiny_data):
    from sdn.networks.caption_input import StandardisedCaptions

    net = StandardisedCaptions()
    net.register_caption_statistics(3)
    vectors = torch.tensor([[0.0, 0.0, 5.0], [2.0, 0.02, 5.0], [4.0, 0.04, 5.0]])
    net.set_text_statistics(vectors)  # per dimension: the barely moving second dimension is blown up 100x
    assert net.standardise_text(vectors[2:])[0, :2].tolist() == pytest.approx([1.0, 1.0])
    net.set_text_statistics(vectors, "global")
    spread = math.sqrt((4 + 0.0004 + 0) / 3)
    assert net.text_std.tolist() == pytest.approx([spread] * 3)
    assert net.standardise_text(vectors[2:])[0, :2].tolist() == pytest.approx([2 / spread, 0.02 / spread])
    with pytest.raises(ValueError, match="text scaling must be one of"):
        net.set_text_statistics(vectors, "pca")
    ckpt = load_checkpoint(training_loop(tiny_data, tmp_path / "global", stage1_epochs=1, stage2_epochs=0, text_scaling="global", **TINY))
    assert ckpt["config"]["text_scaling"] == "global"
    std = ckpt["generator"]["text_std"]
    assert torch.allclose(std, std[0].expand_as(std))
    with pytest.raises(UserError, match="--text-scaling must be one of dimension, global"):
        training_loop(tiny_data, tmp_path / "bad", text_scaling="pca", **TINY)


def test_projected_scheme_trains_a_critic_that_is_saved_and_resumed_exactly(tmp_path, tiny_data):
    """The critic learns (its hinge loss falls on a fixed batch once it has trained), its weights and
    optimiser are in every checkpoint, and a resumed run repeats an uninterrupted one."""
    settings = dict(scheme="projected", stage1_epochs=1, seed=3, adversarial_weight=0.5, **TINY)
    whole = load_checkpoint(training_loop(tiny_data, tmp_path / "a", stage2_epochs=2, **settings))
    assert {"critic", "critic_optimizer"} <= set(whole) and whole["config"]["adversarial_weight"] == 0.5
    assert whole["config"]["critic_wrong_captions"] is True
    log = [json.loads(line) for line in (tmp_path / "a" / "stats.jsonl").read_text().splitlines()]
    assert all("d_loss" not in e for e in log if e["stage"] == "stage1")
    assert all(math.isfinite(e["d_loss"]) and "adversarial" in e and "d_wrong" in e for e in log if e["stage"] == "stage2-projected")
    partial = training_loop(tiny_data, tmp_path / "b", stage2_epochs=1, **settings)
    resumed = load_checkpoint(training_loop(tiny_data, tmp_path / "b", stage2_epochs=2, resume=partial, **settings))
    assert [v for *_, v in resumed["history"]] == pytest.approx([v for *_, v in whole["history"]], rel=1e-3)
    for k, v in whole["critic"].items():
        assert torch.allclose(v.float(), resumed["critic"][k].float(), atol=1e-4), k


def test_the_critic_learns_to_tell_real_taps_from_drawn_ones():
    from sdn.networks.projected_discriminator import ProjectedDiscriminator, critic_taps, hinge_critic_loss

    teacher = build_teacher("efficientnet-lite0", resolution=32)
    assert [teacher.taps[i].name for i in critic_taps(teacher.taps)] == ["block2", "block4", "block10", "head"]
    torch.manual_seed(0)
    real_images, drawn_images, text = torch.rand(8, 3, 32, 32), torch.full((8, 3, 32, 32), 0.5), torch.randn(8, 4)
    with torch.no_grad():
        real, drawn = teacher(real_images), teacher(drawn_images)
    critic = ProjectedDiscriminator(teacher.taps, 4)
    opt = torch.optim.Adam(critic.parameters(), 1e-3, betas=(0.0, 0.99))
    wrong_text = text.roll(1, 0)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        terms = hinge_critic_loss(critic(real, text), critic(drawn, text), critic(real, wrong_text))
        terms["d_loss"].backward()
        opt.step()
        losses.append(terms["d_loss"].item())
    assert losses[0] > 1.5 and losses[-1] < 0.5 * losses[0]  # from chance (2) towards separating them
    with torch.no_grad():  # matching-aware: a real image with another image's caption is refused
        assert critic(real, text).mean() > critic(real, wrong_text).mean() + 0.5


def test_caption_film_is_trained_saved_and_part_of_the_architecture(tmp_path, tiny_data):
    path = training_loop(tiny_data, tmp_path / "film", stage1_epochs=1, stage2_epochs=1, caption_film=True, **TINY)
    ckpt = load_checkpoint(path)
    assert ckpt["config"]["caption_film"] is True
    generator = generator_from_checkpoint(ckpt)  # rebuilt with its FiLM layers, the trained values loaded
    films = [s.film for s in generator.steps if s.film is not None]
    assert len(films) == sum(s.conv is not None for s in generator.steps) and all(f.weight.abs().sum() > 0 for f in films)
    with pytest.raises(UserError, match="caption_film=True but this run has caption_film=False"):
        training_loop(tiny_data, tmp_path / "film", stage1_epochs=2, stage2_epochs=1, resume=path, **TINY)
