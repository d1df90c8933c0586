"""The generator G (the paper's target model): the teacher's mirror image, derived from its taps.

Fully connected layers (g-fc8, g-fc7, g-fc6) map the caption embedding to the deepest tap's shape.
Then, walking the taps from deep to shallow, each step up-samples ("image resize") where the stride
halves and applies a 3x3 convolution + ReLU where the channel count must change or the stride does
not. The last step produces the image (3n channels, no ReLU). Every step's output has the shape of
the teacher tap it is paired with, so Stage I can compare them one to one.

For VGG19 at 224 px this is the paper's G: g-fc8/7/6 -> 512x7x7, then 16 convolutions in 5
up-sampling groups (4, 4, 4, 2, 2), the last one linear to RGB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sdn.networks.caption_input import StandardisedCaptions
from sdn.networks.teachers import Tap, check_resolution


def conv3x3_as_matmul(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`conv(x)` (3x3, padding 1, stride 1) as one matrix product over the 9 shifted copies of x,
    laid out (kh, kw, channel) like a channels-last weight, whose (out, kh*kw*in) matrix is then a view.
    Same result to rounding. It pays where the weight dwarfs the activations (64 px: G's first
    convolution, 1280 -> 320 channels at 2x2, is 1.8x faster as a product than through oneDNN's
    convolution, forward and backward); the 9x larger input copy costs little there."""
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    columns = torch.cat([padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], -1)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, 9 * c)
    y = F.linear(columns.reshape(b * h * w, 9 * c), weight, conv.bias)
    return y.view(b, h, w, -1).permute(0, 3, 1, 2)  # a channels-last (B, out, H, W) view


class GeneratorStep(nn.Module):
    """One mirrored step: optional nearest-neighbour up-sampling, optional 3x3 conv (+ ReLU).

    caption_dim: > 0 gives the convolution a FiLM layer (Perez et al. 2018): a linear map of the caption
    that scales and shifts its output per channel (see Generator's caption_film).
    matmul_convs: run the convolution as `conv3x3_as_matmul` when it is weight-bound, i.e. when
    the batch has fewer output positions (B x H x W) than the convolution has output channels
    (64 px, batch 12: G's first two convolutions; never at 224 px). A speed switch, not architecture."""

    def __init__(self, in_channels: int, out_channels: int, upsample: int, conv: bool, relu: bool, tap_name: str = "",
                 caption_dim: int = 0):
        super().__init__()
        self.tap_name = tap_name  # the teacher tap (or "image") this step's output is paired with
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1) if conv else None
        self.film = nn.Linear(caption_dim, 2 * out_channels) if conv and caption_dim else None
        self.relu = relu
        self.matmul_convs = False

    def forward(self, x: torch.Tensor, caption: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output fed to the next step, pre-activation value)."""
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        if self.conv is not None:
            weight_bound = self.matmul_convs and x.shape[0] * x.shape[2] * x.shape[3] < self.conv.out_channels
            x = conv3x3_as_matmul(x, self.conv) if weight_bound else self.conv(x)
        if self.film is not None:
            scale, shift = self.film(caption).to(x.dtype)[:, :, None, None].chunk(2, 1)
            x = torch.addcmul(shift, x, 1 + scale)
        pre = x
        return (F.relu(x) if self.relu else x), pre


class Generator(StandardisedCaptions):
    """G: caption embedding -> (images (B, n, 3, H, W), activations paired with the teacher's taps).

    taps: the teacher's taps, shallow to deep.
    resolution: output size in pixels (a multiple of 32).
    text_dim: caption-embedding dimension (any).
    fc_dim: width of g-fc8 and g-fc7 (4096 as in VGG19's fc7/fc6).
    n_outputs: images per caption; > 1 is the paper's diverse synthesis (3n output channels).
    pair_preactivation: Stage I compares each layer's value *before* its ReLU with the teacher's tap;
        False compares the value after it, as the authors did with VGG (training picks per teacher:
        see sdn.networks.teachers.default_pair_preactivation). EfficientNet's block outputs are signed (linear
        bottlenecks), which a post-ReLU value can never match; for VGG's post-ReLU taps the two agree
        where the target is positive and the pre-ReLU pairing asks for 0 rather than "anything <= 0"
        elsewhere. Steps without a convolution (the mirror of a pool: up-sampling only) pass on a
        post-ReLU value whatever this says.
    grad_checkpointing: while training, keep only each up-sampling group's input and the values the
        loss pairs with the taps, and recompute the rest of the group in the backward pass (about one
        more generator forward per step, for a smaller peak memory: 224 px on small GPUs). Same
        results; a runtime switch, not part of the architecture or the checkpoint.
    matmul_convs: run weight-bound convolutions as matrix products (see GeneratorStep); same results
        to rounding; a runtime switch like grad_checkpointing.
    caption_film: the standardised caption also scales and shifts every convolution's output per channel
        (FiLM; zero at the start, so training starts from the paper's G, where the caption enters only
        through g-fc8). An addition beyond the paper: a caption's colour can then be set by the last layers
        whatever the shape above them, and it lifted the demo's unseen colour-shape pairs most of any lever
        (docs/demo-levers.md).
    caption_projection: hold the "paraphrase" text scaling's projection (sdn.networks.caption_input), so
        the caption is read only along the directions in which different images' captions differ more
        than one image's paraphrases do; the text_scaling setting of a run decides it.
    """

    def __init__(self, taps: tuple[Tap, ...], resolution: int, text_dim: int, fc_dim: int = 4096, n_outputs: int = 1,
                 pair_preactivation: bool = True, grad_checkpointing: bool = False, matmul_convs: bool = False,
                 caption_film: bool = False, caption_projection: bool = False):
        super().__init__()
        check_resolution(resolution)
        self.taps, self.resolution, self.n_outputs = tuple(taps), resolution, n_outputs
        self.pair_preactivation = pair_preactivation
        self.grad_checkpointing = grad_checkpointing
        deepest = taps[-1]
        self.top_shape = (deepest.channels, resolution // deepest.stride, resolution // deepest.stride)
        # set from the training captions by `set_text_statistics`
        self.register_caption_statistics(text_dim, caption_projection)
        self.fc = nn.Sequential(
            nn.Linear(text_dim, fc_dim), nn.ReLU(),  # g-fc8
            nn.Linear(fc_dim, fc_dim), nn.ReLU(),  # g-fc7
            nn.Linear(fc_dim, deepest.channels * self.top_shape[1] * self.top_shape[2]),  # g-fc6
        )
        # Walk deep -> shallow; the image (3n channels, stride 1) is the final "tap".
        targets = list(reversed(taps[:-1])) + [Tap("image", 3 * n_outputs, 1)]
        steps, prev = [], deepest
        for tap in targets:
            up = prev.stride // tap.stride
            conv = up == 1 or tap.channels != prev.channels
            steps.append(GeneratorStep(prev.channels, tap.channels, up, conv, relu=tap.name != "image", tap_name=tap.name,
                                       caption_dim=text_dim if caption_film else 0))
            prev = tap
        self.steps = nn.ModuleList(steps)
        for step in steps:
            step.matmul_convs = matmul_convs
        # Checkpoint segments: a new group starts at every up-sampling, the natural unit of the
        # mirrored VGG (conv5_x, conv4_x, ...); each group's input is small next to its insides.
        self.groups: list[list[int]] = []
        for i, step in enumerate(steps):
            if not self.groups or step.upsample > 1:
                self.groups.append([])
            self.groups[-1].append(i)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # He init: with PyTorch's default, this 19-layer plain ReLU net collapses to one mean image.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        last = self.steps[-1].conv
        nn.init.kaiming_normal_(last.weight, nonlinearity="linear")
        nn.init.constant_(last.bias, 0.5)  # start from mid-grey, the middle of the [0, 1] image range
        for step in self.steps:
            if step.film is not None:
                nn.init.zeros_(step.film.weight)
                nn.init.zeros_(step.film.bias)

    def forward(self, text: torch.Tensor, tap_inputs: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """tap_inputs: None (drawing: each step reads the previous step's output), or the teacher's taps
        of the real images (shallow -> deep, in the units the loss compares them in): each step then
        reads the ReLU of the tap its predecessor is paired with ("teacher-forced" Stage I, so every
        layer learns its own step of inverting the teacher at once instead of waiting for the layers
        above it to carry the caption's content)."""
        caption = self.standardise_text(text).to(self.fc[0].weight.dtype)
        pre = self.fc(caption).view(-1, *self.top_shape)
        x = F.relu(pre)
        acts = [pre if self.pair_preactivation else x]  # paired with the deepest tap
        if tap_inputs is not None:
            n = len(tap_inputs)
            for j, step in enumerate(self.steps):
                x, pre = step(F.relu(tap_inputs[n - 1 - j]).to(x.dtype), caption)
                acts.append(pre if self.pair_preactivation else x)
            acts.pop()
            return x.unflatten(1, (self.n_outputs, 3)), acts[::-1]
        for group in self.groups:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x, group_acts = checkpoint(self._run_group, group, x, caption, use_reentrant=False)
            else:
                x, group_acts = self._run_group(group, x, caption)
            acts += group_acts
        acts.pop()  # the last step's value is the image (no ReLU), not an activation paired with a tap
        images = x.unflatten(1, (self.n_outputs, 3))
        return images, acts[::-1]  # activations shallow -> deep, aligned with the teacher's taps

    def _run_group(self, group: list[int], x: torch.Tensor, caption: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the steps numbered `group`: (last output, each step's value paired with a tap)."""
        acts = []
        for i in group:
            x, pre = self.steps[i](x, caption)
            acts.append(pre if self.pair_preactivation else x)
        return x, acts
