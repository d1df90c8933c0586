"""The training schemes of the paper's Table 3: which loss trains each part of a run.

A run has two parts, `stage1_epochs` then `stage2_epochs`; a scheme names the loss of each (keys of
sdn.training.losses.LOSSES) and how many images per caption its generator draws by default."""

from __future__ import annotations


class Scheme(tuple):
    """(loss of the first `stage1_epochs` epochs, loss of the remaining `stage2_epochs`), with a
    description for people and the images per caption drawn when --n-outputs is not given."""

    def __new__(cls, first: str, second: str, description: str, n_outputs: int = 1):
        scheme = super().__new__(cls, (first, second))
        scheme.description, scheme.n_outputs = description, n_outputs
        return scheme


SCHEMES: dict[str, Scheme] = {
    "image": Scheme("image", "image", "image-space loss only"),
    "stage1": Scheme("stage1", "stage1", "Stage-I loss only"),
    "stage2": Scheme("stage2", "stage2", "Stage-II loss only"),
    "joint": Scheme("joint", "joint", "Stage-I & Stage-II losses together"),
    "sdn": Scheme("stage1", "stage2", "the paper's two-stage SDN"),
    "diverse": Scheme("stage1", "stage2", "two-stage SDN with n outputs and min-over-outputs losses", n_outputs=3),
    # beyond the paper: a critic on the teacher's features fights the blur of the L1 regression
    "projected": Scheme("stage1", "stage2-projected", "two-stage SDN, Stage II with a critic on the teacher's taps (Projected GAN)"),
}


def uses_critic(scheme: str) -> bool:
    return "stage2-projected" in SCHEMES[scheme]


def scheme_losses(a, tap_weights, tap_scales, critic=None) -> dict:
    """The losses of the scheme `a.scheme` (a: training_loop's settings), by name. The image term weighs
    a.stage2_pixel_weight in the second part of a scheme with two different losses when that is set,
    a.pixel_weight everywhere else; Stage I reads a.stage1_inputs; the projected Stage II is judged by
    `critic`, weighted a.adversarial_weight."""
    from sdn.training.losses import LOSSES

    first, second = SCHEMES[a.scheme]
    losses = {}
    for name in dict.fromkeys((first, second)):
        pixel = a.stage2_pixel_weight if a.stage2_pixel_weight is not None and name == second != first else a.pixel_weight
        extra = {"inputs": a.stage1_inputs} if name == "stage1" else {}
        if name == "stage2-projected":
            extra = {"critic": critic, "adversarial_weight": a.adversarial_weight, "wrong_captions": a.critic_wrong_captions}
        losses[name] = LOSSES[name](tap_weights, pixel, a.diverse_mean_weight, tap_scales, a.loss_reduction, fused_l1=a.fused_l1,
                                     distance=a.tap_distance, pixel_distance=a.pixel_distance, **extra)
    return losses
