"""SDN's losses (paper eqs. 1-5) as small callables.

Reduction (`reduction`): "mean" (the default) makes every L1 term the *mean* absolute difference
over one image's elements (channels x height x width), so a term's size does not depend on the tap's
shape or the resolution; "sum" is the paper's plain ||.||_1 (eqs. 1-3), a sum over the elements,
which weighs each tap by its size (at 224 px VGG19's conv1_x counts 128x pool5). The loss of a batch
is the mean over its images either way. Each tap term is multiplied by its weight (`tap_weights`, one per teacher tap,
1 each in the paper) and the pixel term by `pixel_weight`. With `tap_scales`, the teacher's
activations are divided by them first (Stage I: the generator then learns activations of unit scale;
Stage II: the same as weighting each tap by 1 / its scale).

Diverse synthesis (eqs. 4, 5; multiple choice learning as in CRN): the generator draws n images per
caption; the image-dependent part of the loss is the minimum over the n images, per caption, so only
the best image gets the gradient. `diverse_mean_weight` (CRN uses 0.001) adds that small fraction of
the mean over all n images so that no output is starved of gradient forever.

Each loss is an object, `loss(generator, teacher, real, text, precision) -> (loss, terms)`, that runs
the forward passes it needs (the teacher on the real images and on the drawings, or not) and compares
their results (`compare`); LOSSES names them, sdn.training.schemes says which trains when, and the training step
knows no names. All losses accumulate in fp32 whatever precision the networks ran in. `terms` are the
loss's parts (batch means, detached, named as in `term_names`) for the training log: the tap and pixel
parts of the output the loss counted (the best one per caption when n > 1, whose small mean share is
left out, so only with n = 1 do the parts add up to the loss exactly).
"""

from __future__ import annotations

from typing import Sequence

import torch

from sdn.training.fused_l1 import scaled_l1_per_image, weighted_taps_per_image
from sdn.utils import autocast


REDUCTIONS = ("mean", "sum")  # see the module's docstring
DISTANCES = ("l1", "l2")  # what each term measures (see _Weighted)
TAP_WEIGHTS = ("inverse-mean", "equal")  # how training_loop weighs the teacher's taps (see its tap_weights)
STAGE1_INPUTS = ("generator", "teacher", "both")  # what G's steps read in Stage I (see Stage1Loss)


def l1_per_image(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """|a - b| over every dimension but the first, averaged or summed: one value per image."""
    return _L1PerImage.apply(a, b, reduction == "sum")


def distance_per_image(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean", distance: str = "l1") -> torch.Tensor:
    """l1_per_image, or for distance "l2" the squared difference, averaged or summed per image."""
    if distance == "l1":
        return l1_per_image(a, b, reduction)
    squared = (a.float() - b.float()).square().flatten(1)
    return squared.sum(1) if reduction == "sum" else squared.mean(1)


class _L1PerImage(torch.autograd.Function):
    """The plain fp32 formula, `(a.float() - b.float()).abs().flatten(1).mean(1)`, with the same
    gradients; but where autograd's abs would keep the whole fp32 difference of every tap until the
    backward pass, this keeps only its sign, as int8: a quarter of the memory (about 0.6 GB less in
    a 224 px, batch-12 VGG19 step)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, summed: bool) -> torch.Tensor:
        diff = a.float() - b.float()
        ctx.save_for_backward(diff.sign().to(torch.int8))
        ctx.dtypes, ctx.count = (a.dtype, b.dtype), 1 if summed else diff[0].numel()
        per_image = diff.abs().flatten(1)
        return per_image.sum(1) if summed else per_image.mean(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (sign,) = ctx.saved_tensors
        g = (grad / ctx.count).view(-1, *[1] * (sign.dim() - 1)) * sign
        grad_a = g.to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        grad_b = (-g).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


class Loss:
    """Runs the forward passes a loss needs, in `precision`, then `compare`s their results."""

    term_names: tuple[str, ...] = ()
    teacher_on_real = False  # the teacher's taps of the real images (one pass, no autograd)
    teacher_on_drawings = False  # the teacher's taps of the drawings (back-propagated through)

    def __call__(self, generator, teacher, real: torch.Tensor, text: torch.Tensor,
                 precision: str = "fp32") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with autocast(real.device, precision):
            images, acts = generator(text)
            real_feats = fake_feats = None
            if self.teacher_on_real:
                with torch.no_grad():  # one teacher pass on the real images, shared by every term
                    real_feats = teacher(real)
            if self.teacher_on_drawings:
                fake_feats = teacher(images.flatten(0, 1))
        return self.compare(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats, generator_acts=acts)

    def compare(self, **passes) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class _Weighted(Loss):
    """tap_weights: one weight per tap. tap_scales: one divisor per tap applied to the teacher's
    activations (None = 1 each), so that each tap is compared in units of its typical size.
    reduction: "mean" or "sum" over each image's elements (see the module's docstring).
    distance: "l1" (the paper's ||.||_1) or "l2" (squared error) for the tap terms; pixel_distance the
    same for the image term (None: as distance). An L1 term's optimum
    is the median of its target given the caption, and where most targets are zero (the teacher's sparse
    activations; an object's pixels against a background) that median is zero or the background: L1 then
    pulls G towards drawing nothing and gives no gradient that depends on the caption. L2's optimum is
    the mean, which keeps the object's share (measured on the demo: docs/demo-levers.md).
    fused_l1: compute every L1 term with sdn.training.fused_l1 (the same values to rounding, fewer passes);
    it implements the "mean" reduction only, so "sum" always takes the plain path."""

    term_names: tuple[str, ...] = ("taps", "pixel")

    def __init__(self, tap_weights: Sequence[float] | torch.Tensor, pixel_weight: float = 1.0, diverse_mean_weight: float = 0.0,
                 tap_scales: Sequence[float] | torch.Tensor | None = None, reduction: str = "mean", fused_l1: bool = False,
                 distance: str = "l1", pixel_distance: str | None = None):
        self.reduction, self.distance, self.pixel_distance = reduction, distance, pixel_distance or distance
        assert reduction in REDUCTIONS and {distance, self.pixel_distance} <= set(DISTANCES)
        self.tap_weights = torch.as_tensor(tap_weights, dtype=torch.float32)
        self.tap_scales = None if tap_scales is None else torch.as_tensor(tap_scales, dtype=torch.float32).tolist()
        # Each term takes the fused path where it is an L1 of the "mean" reduction.
        self.fused_l1 = fused_l1 and reduction == "mean" and distance == "l1"
        self.fused_pixel_l1 = fused_l1 and reduction == "mean" and self.pixel_distance == "l1"
        self.inverse_scales = None if self.tap_scales is None else [1 / s for s in self.tap_scales]
        self.pixel_weight = pixel_weight
        self.diverse_mean_weight = diverse_mean_weight

    def scaled(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self.tap_scales is None:
            return list(feats)
        return [f.float() / s for f, s in zip(feats, self.tap_scales)]

    def taps_per_image(self, targets: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        assert len(targets) == len(outputs) == len(self.tap_weights)
        terms = torch.stack([distance_per_image(t, o, self.reduction, self.distance) for t, o in zip(targets, outputs)], 1)  # (B, taps)
        return terms @ self.tap_weights.to(terms.device)

    def image_loss(self, real: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.fused_pixel_l1:
            return scaled_l1_per_image(images, real.unsqueeze(1), batch_dims=2)
        return image_loss(real, images, self.reduction, self.pixel_distance)

    def min_over_outputs(self, per_output: torch.Tensor) -> torch.Tensor:
        """per_output: (B, n) -> (B,): min over the n images, plus a small share of their mean."""
        best = per_output.min(1).values
        if self.diverse_mean_weight and per_output.shape[1] > 1:
            best = best + self.diverse_mean_weight * per_output.mean(1)
        return best

    def best_terms(self, taps: torch.Tensor | None, pixel: torch.Tensor, per_output: torch.Tensor) -> dict[str, torch.Tensor]:
        """taps, pixel: (B, n) parts of per_output (B, n); those of each caption's best output."""
        best = per_output.detach().argmin(1, keepdim=True)
        parts = {"taps": taps, "pixel": pixel}
        return {name: parts[name].detach().gather(1, best).mean() for name in self.term_names if name in parts}


def image_loss(real: torch.Tensor, images: torch.Tensor, reduction: str = "mean", distance: str = "l1") -> torch.Tensor:
    """Eq. 2 per output: real (B, 3, H, W), images (B, n, 3, H, W) -> (B, n)."""
    diff = images.float() - real.float().unsqueeze(1)
    diff = (diff.abs() if distance == "l1" else diff.square()).flatten(2)
    return diff.sum(2) if reduction == "sum" else diff.mean(2)


class ImageLoss(_Weighted):
    """The "image space loss" baseline: pixel L1 only (min over outputs when n > 1)."""

    term_names = ("pixel",)

    def compare(self, real, images, **_):
        pixel = self.pixel_weight * self.image_loss(real, images)
        return self.min_over_outputs(pixel).mean(), self.best_terms(None, pixel, pixel)


class Stage1Loss(_Weighted):
    """Eq. 1 (eq. 4 when n > 1): teacher taps of the real image vs the generator's own activations.

    inputs: "generator" (the paper: each step of G reads the step above it), "teacher" (each step reads
    the teacher's tap of the real image that the step above is paired with, so every layer learns its
    own step of inverting the teacher at once; see Generator.forward), or "both" (the two losses added;
    the terms logged are the free-running ones)."""

    teacher_on_real = True

    def __init__(self, *args, inputs: str = "generator", **kwargs):
        super().__init__(*args, **kwargs)
        assert inputs in STAGE1_INPUTS
        self.inputs = inputs

    def __call__(self, generator, teacher, real, text, precision="fp32"):
        if self.inputs == "generator":
            return super().__call__(generator, teacher, real, text, precision)
        with autocast(real.device, precision):
            with torch.no_grad():
                real_feats = teacher(real)  # one pass, shared by the forced and the free-running terms
            images, acts = generator(text, tap_inputs=self.scaled(real_feats))
            free = generator(text) if self.inputs == "both" else None
        loss, terms = self.compare(real=real, images=images, real_feats=real_feats, generator_acts=acts)
        if free is not None:
            free_loss, terms = self.compare(real=real, images=free[0], real_feats=real_feats, generator_acts=free[1])
            loss = loss + free_loss
        return loss, terms

    def compare(self, real, images, real_feats, generator_acts, **_):
        if self.fused_l1:
            taps = weighted_taps_per_image(generator_acts, real_feats, self.tap_weights, target_scales=self.inverse_scales)
        else:
            taps = self.taps_per_image(self.scaled(real_feats), generator_acts)
        pixel = self.pixel_weight * self.image_loss(real, images)
        return (taps + self.min_over_outputs(pixel)).mean(), self.best_terms(taps.unsqueeze(1).expand_as(pixel), pixel, pixel)


class Stage2Loss(_Weighted):
    """Eq. 3 (eq. 5 when n > 1): teacher taps of the real image vs teacher taps of the generated one.

    fake_feats are the teacher's taps of all B*n generated images, batch laid out image-major (B, n).
    """

    teacher_on_real = teacher_on_drawings = True

    def compare(self, real, images, real_feats, fake_feats, **_):
        b, n = images.shape[:2]
        if self.fused_l1:  # |fake / s - real / s| = |fake - real| / s: no scaled copies
            expanded = real_feats if n == 1 else [f.repeat_interleave(n, 0) for f in real_feats]
            taps = weighted_taps_per_image(fake_feats, expanded, self.tap_weights, result_scales=self.inverse_scales).view(b, n)
        else:
            expanded = [f.repeat_interleave(n, 0) for f in self.scaled(real_feats)]
            taps = self.taps_per_image(expanded, self.scaled(fake_feats)).view(b, n)
        pixel = self.pixel_weight * self.image_loss(real, images)
        return self.min_over_outputs(taps + pixel).mean(), self.best_terms(taps, pixel, taps + pixel)


class ProjectedStage2Loss(Stage2Loss):
    """Stage II (eq. 3) plus a critic's verdict (the "projected" scheme, beyond the paper): the
    generator is also pushed towards drawings whose teacher features the critic
    (sdn.networks.projected_discriminator) takes for a real photo of the caption, with the hinge
    generator loss -critic(drawing), weighted `adversarial_weight`; `wrong_captions`: the critic also
    refuses real images paired with other images' captions (hinge_critic_loss). The passes it made are kept as
    `last_passes` (detached) for the critic's own update (sdn.training.step.critic_step), which reuses
    the teacher's taps of the real and drawn images instead of running the teacher again."""

    term_names = ("taps", "pixel", "adversarial")

    def __init__(self, *args, critic=None, adversarial_weight: float = 0.1, wrong_captions: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.critic, self.adversarial_weight, self.wrong_captions = critic, adversarial_weight, wrong_captions
        self.last_passes = None

    def __call__(self, generator, teacher, real, text, precision="fp32"):
        self._text, self._precision = text, precision
        return super().__call__(generator, teacher, real, text, precision)

    def compare(self, real, images, real_feats, fake_feats, **passes):
        loss, terms = super().compare(real=real, images=images, real_feats=real_feats, fake_feats=fake_feats, **passes)
        text = self._text.repeat_interleave(images.shape[1], 0)
        self.critic.requires_grad_(False)  # its gradients come from its own update
        with autocast(real.device, self._precision):
            adversarial = -self.critic(fake_feats, text).float().mean()
        self.critic.requires_grad_(True)
        self.last_passes = ([f.detach() for f in real_feats], [f.detach() for f in fake_feats], self._text, text)
        terms["adversarial"] = adversarial.detach()
        return loss + self.adversarial_weight * adversarial, terms


class SumOfLosses(Loss):
    """Several losses added (the "joint" scheme: Stage I and Stage II together), on one set of
    forward passes; the parts of each are named `<loss>_<part>`."""

    def __init__(self, **losses: Loss):
        self.losses = losses
        self.term_names = tuple(f"{name}_{t}" for name, loss in losses.items() for t in loss.term_names)
        self.teacher_on_real = any(loss.teacher_on_real for loss in losses.values())
        self.teacher_on_drawings = any(loss.teacher_on_drawings for loss in losses.values())

    def compare(self, **passes):
        total, terms = 0, {}
        for name, loss in self.losses.items():
            value, parts = loss.compare(**passes)
            total = total + value
            terms.update({f"{name}_{t}": v for t, v in parts.items()})
        return total, terms


def joint_loss(*args, **kw) -> SumOfLosses:
    """The "joint" loss: Stage I and Stage II with the same settings, added."""
    return SumOfLosses(stage1=Stage1Loss(*args, **kw), stage2=Stage2Loss(*args, **kw))


# The losses a scheme (sdn.training.schemes) can name; each is built with the settings of _Weighted.
LOSSES = {"image": ImageLoss, "stage1": Stage1Loss, "stage2": Stage2Loss, "joint": joint_loss, "stage2-projected": ProjectedStage2Loss}
