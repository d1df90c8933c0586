import pytest
import torch
from torch import nn

from sdn.errors import UserError
from sdn.networks.generator import Generator
from sdn.networks.teachers import build_teacher, teacher_taps


def test_vgg19_generator_is_the_papers_G():
    with torch.device("meta"):
        g = Generator(teacher_taps("vgg19"), 224, text_dim=1024, fc_dim=4096)
    linears = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(1024, 4096), (4096, 4096), (4096, 512 * 7 * 7)]
    convs_per_group = []
    for step in g.steps:
        if step.upsample > 1:
            assert step.upsample == 2
            convs_per_group.append(0)
        if step.conv is not None:
            convs_per_group[-1] += 1
    assert convs_per_group == [4, 4, 4, 2, 2]  # 16 convolutions in 5 up-sampling groups
    assert g.steps[-1].conv.out_channels == 3 and not g.steps[-1].relu  # linear conv to RGB
    # Hand count: g-fc8, g-fc7, g-fc6, then VGG19's 16 conv kernels mirrored (in <-> out), whose
    # biases are VGG's *input* channel counts.
    fc = (1024 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 25088 + 25088)
    kernels = 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 3 * 256 * 256 + 256 * 512 + 7 * 512 * 512)
    biases = 3 + 64 + 64 + 128 + 128 + 3 * 256 + 256 + 3 * 512 + 4 * 512
    assert sum(p.numel() for p in g.parameters()) == fc + kernels + biases == 143_789_123


@pytest.mark.parametrize("teacher", ["vgg19", "efficientnet-lite0"])
@pytest.mark.parametrize("resolution", [64, 128, 224])
def test_every_generator_activation_matches_its_teacher_tap(teacher, resolution):
    t = build_teacher(teacher, init="random", resolution=resolution)
    g = Generator(t.taps, resolution, text_dim=7, fc_dim=32, n_outputs=2)
    with torch.no_grad():
        images, acts = g(torch.randn(1, 7))
        feats = t(torch.rand(1, 3, resolution, resolution))
    assert images.shape == (1, 2, 3, resolution, resolution)
    assert len(acts) == len(feats) == len(t.taps)
    for tap, a, f in zip(t.taps, acts, feats):
        expected = (1, tap.channels, resolution // tap.stride, resolution // tap.stride)
        assert tuple(a.shape) == tuple(f.shape) == expected, tap


@pytest.mark.parametrize("resolution", [0, 50, 100, 33])
def test_resolution_must_be_a_multiple_of_32(resolution):
    with pytest.raises(UserError, match="multiple of 32"):
        Generator(teacher_taps("vgg19"), resolution, 8)


def test_he_init_keeps_captions_apart_through_19_layers():
    torch.manual_seed(0)
    g = Generator(teacher_taps("vgg19"), 64, 16, fc_dim=256)
    with torch.no_grad():
        images, _ = g(torch.randn(8, 16))
    spread = images.std(0).mean().item()
    assert spread > 0.05, spread  # PyTorch's default init gives nearly one image for all captions


def test_text_statistics_standardise_the_input():
    g = Generator(teacher_taps("efficientnet-lite0"), 64, 4, fc_dim=8)
    emb = torch.randn(100, 4) * 5 + 3
    g.set_text_statistics(emb)
    assert torch.allclose(g.text_mean, emb.mean(0)) and torch.allclose(g.text_std, emb.std(0))


@pytest.mark.parametrize("teacher", ["vgg19", "efficientnet-lite0"])
def test_each_activation_is_paired_with_its_tap_by_identity_not_only_shape(teacher):
    """VGG19's conv4_1..conv4_4 share one shape: a reordering would pass a shape check. Each step
    records the tap it mirrors; the activation at position i must be that very step's output."""
    taps = build_teacher(teacher, init="random", resolution=64).taps
    g = Generator(taps, 64, text_dim=5, fc_dim=16)
    outputs = {}
    for step in g.steps:
        step.register_forward_hook(lambda m, _, out: outputs.__setitem__(m.tap_name, out[1]))
    with torch.no_grad():
        _, acts = g(torch.randn(2, 5))
    assert [s.tap_name for s in g.steps][-1] == "image"
    for tap, act in zip(taps[:-1], acts[:-1]):
        assert act is outputs[tap.name], tap.name
    assert all(act is not out for act in acts[-1:] for out in outputs.values())  # the deepest: g-fc6's output


def test_default_pairing_is_post_relu_for_vgg_and_pre_relu_for_signed_taps(tmp_path):
    from sdn.networks.teachers import default_pair_preactivation

    assert default_pair_preactivation("vgg19") is False and default_pair_preactivation("vgg16") is False
    assert default_pair_preactivation("efficientnet-lite0") is True
    post = Generator(teacher_taps("vgg19"), 32, text_dim=5, fc_dim=16, pair_preactivation=False)
    pre = Generator(teacher_taps("vgg19"), 32, text_dim=5, fc_dim=16, pair_preactivation=True)
    pre.load_state_dict(post.state_dict())
    with torch.no_grad():
        text = torch.randn(3, 5)
        acts_post, acts_pre = post(text)[1], pre(text)[1]
    assert all((a >= 0).all() for a in acts_post)
    assert any((a < 0).any() for a in acts_pre)
    for a, b in zip(acts_post, acts_pre):
        assert torch.equal(a, b.clamp_min(0))


@pytest.mark.parametrize("pair_preactivation", [True, False])
def test_teacher_forced_steps_read_the_taps_not_the_step_above(pair_preactivation):
    """Stage I with --stage1-inputs teacher: step j reads the ReLU of the tap its predecessor is paired
    with, so only the fully connected part sees the caption and every other value is that step applied
    to a tap."""
    torch.manual_seed(0)
    taps = teacher_taps("efficientnet-lite0")
    g = Generator(taps, 32, text_dim=8, fc_dim=16, pair_preactivation=pair_preactivation)
    tap_inputs = [torch.randn(2, t.channels, 32 // t.stride, 32 // t.stride) for t in taps]
    text_a, text_b = torch.randn(2, 8), torch.randn(2, 8)
    images_a, acts_a = g(text_a, tap_inputs=tap_inputs)
    images_b, acts_b = g(text_b, tap_inputs=tap_inputs)
    assert [a.shape for a in acts_a] == [a.shape for a in g(text_a)[1]]
    torch.testing.assert_close(images_a, images_b)
    for a, b in zip(acts_a[:-1], acts_b[:-1]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(acts_a[-1], acts_b[-1])  # the deepest value comes from the caption
    out, pre = g.steps[-1](torch.relu(tap_inputs[0]))  # the image step reads the shallowest tap
    torch.testing.assert_close(images_a.flatten(1, 2), out)
    out, pre = g.steps[-2](torch.relu(tap_inputs[1]))
    torch.testing.assert_close(acts_a[0], pre if pair_preactivation else out)
    # Drawing (no taps) depends on the caption everywhere.
    assert not torch.allclose(g(text_a)[0], g(text_b)[0])


def test_caption_film_starts_as_the_papers_G_and_then_sets_each_channel_from_the_caption():
    taps = teacher_taps("efficientnet-lite0")
    torch.manual_seed(0)
    film = Generator(taps, 64, text_dim=16, fc_dim=32, caption_film=True)
    plain = Generator(taps, 64, text_dim=16, fc_dim=32)
    assert set(plain.state_dict()) < set(film.state_dict())
    assert all(".film." in k for k in set(film.state_dict()) - set(plain.state_dict()))
    plain.load_state_dict({k: v for k, v in film.state_dict().items() if ".film." not in k})
    text = torch.randn(3, 16)
    assert torch.equal(film(text)[0], plain(text)[0])  # zero-initialised: the paper's G to start with
    last = film.steps[-1]  # the image step: its FiLM shifts each colour channel by the caption
    with torch.no_grad():
        last.film.bias[3:] = torch.tensor([0.2, 0.0, -0.2])  # shifts, after the 3 scales
        last.film.weight[3] = 0.0
        last.film.weight[3, 0] = 1.0  # red shifted by the caption's first (standardised) dimension
    shifted, _ = film(text)
    delta = (shifted - plain(text)[0])[:, 0].mean((-1, -2))  # (B, 3): the same at every pixel
    assert torch.allclose(delta[:, 1:], torch.tensor([0.0, -0.2]).expand(3, 2), atol=1e-5)
    assert torch.allclose(delta[:, 0], 0.2 + film.standardise_text(text)[:, 0], atol=1e-5)
