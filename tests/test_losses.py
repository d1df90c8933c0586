import pytest
import torch

from sdn.training.losses import ImageLoss, Stage1Loss, Stage2Loss, image_loss, l1_per_image


def test_image_loss_hand_computed():
    real = torch.zeros(1, 3, 2, 2)
    images = torch.zeros(1, 2, 3, 2, 2)
    images[0, 0, 0, 0, 0] = 1.2  # one element off by 1.2 among 12 -> 0.1
    images[0, 1] = 0.5  # all off by 0.5
    assert image_loss(real, images) == pytest.approx(torch.tensor([[0.1, 0.5]]))
    assert ImageLoss([], pixel_weight=2.0).compare(real=real, images=images[:, :1])[0].item() == pytest.approx(0.2)


def test_stage1_loss_hand_computed():
    real = torch.zeros(2, 3, 2, 2)
    images = torch.full((2, 1, 3, 2, 2), 0.25)  # pixel L1 0.25 per image
    real_feats = [torch.ones(2, 4, 1, 1), torch.zeros(2, 2, 2, 2)]
    acts = [torch.zeros(2, 4, 1, 1), torch.full((2, 2, 2, 2), -0.5)]  # tap L1: 1.0 and 0.5
    loss = Stage1Loss([2.0, 3.0], pixel_weight=1.0).compare(real=real, images=images, real_feats=real_feats, generator_acts=acts)[0]
    assert loss.item() == pytest.approx(2.0 * 1.0 + 3.0 * 0.5 + 0.25)


def test_stage2_loss_hand_computed():
    real = torch.zeros(1, 3, 2, 2)
    images = torch.full((1, 1, 3, 2, 2), 0.5)
    real_feats = [torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)]
    fake_feats = [torch.tensor([2.0, 4.0]).view(1, 2, 1, 1)]  # |1| and |2| -> mean 1.5
    loss = Stage2Loss([0.5], pixel_weight=2.0).compare(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats)[0]
    assert loss.item() == pytest.approx(0.5 * 1.5 + 2.0 * 0.5)


def test_diverse_stage2_takes_min_per_caption_and_sends_gradient_to_best_output_only():
    real = torch.zeros(2, 3, 2, 2)
    # (B=2, n=3): each caption's three outputs are constant images of 0.9, 0.1 and 0.5
    images = torch.tensor([0.9, 0.1, 0.5]).view(1, 3, 1, 1, 1).expand(2, 3, 3, 2, 2).clone().requires_grad_(True)
    real_feats = [torch.zeros(2, 1, 1, 1)]
    fake_feats = [images.flatten(0, 1)[:, :1, :1, :1].detach()]  # tap L1 = the output's value
    loss = Stage2Loss([1.0], diverse_mean_weight=0.0).compare(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats)[0]
    assert loss.item() == pytest.approx(0.1 + 0.1)  # min over outputs of (tap 0.1 + pixel 0.1)
    loss.backward()
    grad_per_output = images.grad.abs().flatten(2).sum(2)
    assert (grad_per_output[:, 1] > 0).all()
    assert (grad_per_output[:, [0, 2]] == 0).all()


def test_diverse_stage1_min_over_pixel_term_and_mean_share():
    real = torch.zeros(1, 3, 1, 1)
    images = torch.tensor([0.2, 0.6]).view(1, 2, 1, 1, 1).expand(1, 2, 3, 1, 1).clone().requires_grad_(True)
    acts, feats = [torch.zeros(1, 1, 1, 1)], [torch.ones(1, 1, 1, 1)]
    loss = Stage1Loss([1.0], diverse_mean_weight=0.1).compare(real=real, images=images, real_feats=feats, generator_acts=acts)[0]
    assert loss.item() == pytest.approx(1.0 + 0.2 + 0.1 * 0.4)
    loss.backward()
    g = images.grad.abs().flatten(2).sum(2)[0]
    assert g[0] > 10 * g[1] > 0  # the best output gets the gradient; the other only the small share


def test_l1_is_mean_over_elements_per_image():
    a, b = torch.zeros(2, 10), torch.cat([torch.ones(1, 10), torch.zeros(1, 10)])
    assert l1_per_image(a, b).tolist() == [1.0, 0.0]


def test_tap_scales_divide_the_teachers_activations():
    real = torch.zeros(1, 3, 1, 1)
    images = torch.zeros(1, 1, 3, 1, 1)
    feats = [torch.full((1, 2, 1, 1), 4.0)]
    # Stage I: the generator's activation (1.0) is compared with 4 / 2 = 2
    s1 = Stage1Loss([0.5], tap_scales=[2.0]).compare(real=real, images=images, real_feats=feats, generator_acts=[torch.ones(1, 2, 1, 1)])[0]
    assert s1.item() == pytest.approx(0.5 * 1.0)
    # Stage II: both sides are divided: |4 - 8| / 2 = 2
    s2 = Stage2Loss([0.5], tap_scales=[2.0]).compare(real=real, images=images, real_feats=feats, fake_feats=[torch.full((1, 2, 1, 1), 8.0)])[0]
    assert s2.item() == pytest.approx(0.5 * 2.0)


def test_sum_reduction_is_the_papers_plain_l1_hand_computed():
    """Eq. 1 with ||.||_1 a plain sum over each image's elements, taps weighted 1, batch mean."""
    real = torch.zeros(2, 3, 2, 2)
    images = torch.full((2, 1, 3, 2, 2), 0.25)  # pixel: 12 elements x 0.25 = 3 per image
    real_feats = [torch.ones(2, 4, 1, 1), torch.zeros(2, 2, 2, 2)]
    acts = [torch.zeros(2, 4, 1, 1), torch.full((2, 2, 2, 2), -0.5)]  # taps: 4 x 1 = 4 and 8 x 0.5 = 4
    kw = dict(real=real, images=images, real_feats=real_feats, generator_acts=acts)
    assert Stage1Loss([1.0, 1.0], pixel_weight=1.0, reduction="sum").compare(**kw)[0].item() == pytest.approx(4 + 4 + 3)
    assert Stage1Loss([1.0, 1.0], pixel_weight=1.0, reduction="mean").compare(**kw)[0].item() == pytest.approx(1 + 0.5 + 0.25)
    fake = [torch.zeros(2, 4, 1, 1), torch.zeros(2, 2, 2, 2)]
    s2 = Stage2Loss([1.0, 1.0], pixel_weight=2.0, reduction="sum").compare(real=real, images=images, real_feats=real_feats, fake_feats=fake)[0]
    assert s2.item() == pytest.approx(4 + 0 + 2 * 3)
    assert l1_per_image(torch.ones(1, 2, 3), torch.zeros(1, 2, 3), "sum").item() == 6.0


def test_sum_reduction_gradient_is_the_sign_per_element():
    a = torch.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    l1_per_image(a, torch.zeros(1, 3), "sum").sum().backward()
    assert a.grad.tolist() == [[1.0, -1.0, 1.0]]


def test_diverse_mean_weight_zero_is_the_pure_minimum_of_eqs_4_5():
    real = torch.zeros(1, 3, 1, 1)
    images = torch.tensor([0.2, 0.6]).view(1, 2, 1, 1, 1).expand(1, 2, 3, 1, 1).clone().requires_grad_()
    pure = ImageLoss([], pixel_weight=1.0, diverse_mean_weight=0.0).compare(real=real, images=images)[0]
    assert pure.item() == pytest.approx(0.2)  # min(0.2, 0.6), nothing else
    pure.backward()
    assert images.grad[0, 1].abs().sum() == 0  # the worse output gets no gradient at all
    crn = ImageLoss([], pixel_weight=1.0, diverse_mean_weight=0.001).compare(real=real, images=images.detach())[0]
    assert crn.item() == pytest.approx(0.2 + 0.001 * 0.4)


@pytest.mark.parametrize("inputs", ["teacher", "both"])
def test_stage1_with_teacher_inputs_runs_g_on_the_taps_of_the_real_images(inputs):
    """--stage1-inputs teacher: the loss of G's steps applied to the teacher's (scaled) taps of the real
    image; both: that plus the paper's free-running Stage I loss."""
    from sdn.networks.generator import Generator
    from sdn.networks.teachers import build_teacher

    torch.manual_seed(0)
    teacher = build_teacher("efficientnet-lite0", init="random", resolution=32)
    g = Generator(teacher.taps, 32, text_dim=8, fc_dim=16)
    real, text = torch.rand(2, 3, 32, 32), torch.randn(2, 8)
    scales = torch.rand(len(teacher.taps)) + 0.5
    weights = torch.full((len(teacher.taps),), 1 / len(teacher.taps))
    loss, _ = Stage1Loss(weights, 2.0, tap_scales=scales, inputs=inputs)(g, teacher, real, text)
    paper = Stage1Loss(weights, 2.0, tap_scales=scales)
    with torch.no_grad():
        feats = teacher(real)
    forced_images, forced_acts = g(text, tap_inputs=paper.scaled(feats))
    expected = paper.compare(real=real, images=forced_images, real_feats=feats, generator_acts=forced_acts)[0]
    if inputs == "both":
        expected = expected + paper(g, teacher, real, text)[0]
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("fused_l1", [True, False])
def test_l2_distance_hand_computed_for_taps_and_pixels(fused_l1):
    real = torch.zeros(2, 3, 2, 2)
    images = torch.full((2, 1, 3, 2, 2), 0.5)  # squared 0.25 per element
    real_feats = [torch.ones(2, 4, 1, 1), torch.zeros(2, 2, 2, 2)]
    acts = [torch.zeros(2, 4, 1, 1), torch.full((2, 2, 2, 2), -0.5)]  # squared: 1.0 and 0.25
    args = dict(real=real, images=images, real_feats=real_feats, generator_acts=acts)
    l2 = Stage1Loss([2.0, 3.0], pixel_weight=4.0, distance="l2", fused_l1=fused_l1).compare(**args)[0]
    assert l2.item() == pytest.approx(2.0 * 1.0 + 3.0 * 0.25 + 4.0 * 0.25)
    l1 = Stage1Loss([2.0, 3.0], pixel_weight=4.0, fused_l1=fused_l1).compare(**args)[0]
    assert l1.item() == pytest.approx(2.0 * 1.0 + 3.0 * 0.5 + 4.0 * 0.5)  # the paper's distance is still the default
    l1_taps = Stage1Loss([2.0, 3.0], pixel_weight=4.0, pixel_distance="l2", fused_l1=fused_l1).compare(**args)[0]
    assert l1_taps.item() == pytest.approx(2.0 * 1.0 + 3.0 * 0.5 + 4.0 * 0.25)  # L1 taps, squared image term


def test_l2_optimum_is_the_mean_of_a_sparse_target_where_l1_draws_nothing():
    # A pixel that is "object" (1) in 30 % of the images and background (0) elsewhere: L1's best constant
    # is the median, 0 (nothing drawn); L2's is the mean, 0.3 (the object's share).
    target = (torch.arange(10) < 3).float().view(10, 1, 1, 1, 1).expand(10, 1, 3, 1, 1).contiguous()
    best = {}
    for distance in ("l1", "l2"):
        value = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([value], lr=0.01)
        for _ in range(400):
            drawn = value.view(1, 1, 1, 1, 1).expand(10, 1, 3, 1, 1)
            loss = ImageLoss([], pixel_distance=distance).compare(real=target[:, 0], images=drawn)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        best[distance] = value.item()
    assert abs(best["l1"]) < 0.05 and best["l2"] == pytest.approx(0.3, abs=0.05)
