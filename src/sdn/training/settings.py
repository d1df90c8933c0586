"""training_loop's settings: checked all at once before anything slow, and recorded in every checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

from sdn.training import distributed
from sdn.errors import UserError
from sdn.training.losses import DISTANCES, REDUCTIONS, STAGE1_INPUTS, TAP_WEIGHTS
from sdn.training.optim import check_adam, check_lr_decay
from sdn.training.schemes import SCHEMES
from sdn.networks.caption_input import TEXT_SCALINGS
from sdn.networks.teacher_views import tap_weight_profile
from sdn.networks.teachers import default_pair_preactivation, teacher_taps
from sdn.utils import check_precision


def check_training_arguments(a: SimpleNamespace) -> None:
    """Bad settings fail here, at once, in one line; fills in a.n_outputs and a.pair_preactivation."""
    if a.scheme not in SCHEMES:
        raise UserError(f"unknown scheme {a.scheme!r}; choose from {', '.join(SCHEMES)}")
    if a.tap_weights not in TAP_WEIGHTS:
        raise UserError(f"tap weights must be 'equal' or 'inverse-mean', not {a.tap_weights!r}")
    if a.loss_reduction not in REDUCTIONS:
        raise UserError(f"loss reduction must be one of {', '.join(REDUCTIONS)}, not {a.loss_reduction!r}")
    for name in ("tap_distance", "pixel_distance"):
        if getattr(a, name) not in DISTANCES:
            raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(DISTANCES)}, not {getattr(a, name)!r}")
    if not 0 <= a.ema_decay < 1:
        raise UserError(f"--ema-decay must be at least 0 and below 1, not {a.ema_decay}")
    if a.adversarial_weight < 0 or a.critic_lr <= 0:
        raise UserError(f"--adversarial-weight must be 0 or more and --critic-lr above 0, not {a.adversarial_weight} and {a.critic_lr}")
    if a.text_scaling not in TEXT_SCALINGS:
        raise UserError(f"--text-scaling must be one of {', '.join(TEXT_SCALINGS)}, not {a.text_scaling!r}")
    if a.caption_noise < 0:
        raise UserError(f"--caption-noise must be 0 or more, not {a.caption_noise}")
    check_lr_decay(a.lr_decay)
    if a.diverse_mean_weight < 0:
        raise UserError(f"--diverse-mean-weight must be 0 or more, not {a.diverse_mean_weight}")
    if a.pair_preactivation is None:
        a.pair_preactivation = default_pair_preactivation(a.teacher)
    check_precision(a.precision)
    if a.stage1_inputs not in STAGE1_INPUTS:
        raise UserError(f"--stage1-inputs must be one of {', '.join(STAGE1_INPUTS)}, not {a.stage1_inputs!r}")
    tap_weight_profile(a.tap_profile, teacher_taps(a.teacher))  # a bad profile fails before anything slow
    check_adam(a.adam)
    a.n_outputs = a.n_outputs or SCHEMES[a.scheme].n_outputs
    if SCHEMES[a.scheme].n_outputs > 1 and a.n_outputs < 2:
        raise UserError(f"the {a.scheme} scheme needs --n-outputs of 2 or more")
    if a.batch_size < 1 or a.stage1_epochs < 0 or a.stage2_epochs < 0 or a.stage1_epochs + a.stage2_epochs < 1:
        raise UserError("batch size must be >= 1 and the epochs must add up to at least 1")
    if (a.checkpoint_every is not None and a.checkpoint_every < 1) or min(a.keep_checkpoints, a.max_bad_steps, a.checkpoint_epochs) < 1:
        raise UserError("--checkpoint-every, --checkpoint-epochs, --keep-checkpoints and --max-bad-steps must be 1 or more")
    world_size = distributed.world_size_from_env()
    if a.batch_size % world_size:
        raise UserError(f"the batch size {a.batch_size} is the global batch and must divide evenly over the {world_size} "
                        f"processes: choose a multiple of {world_size}")


CPU_SPEED_SWITCHES = ("teacher_fusion", "fused_l1", "matmul_convs")


def settle_speed_switches(a: SimpleNamespace, device_type: str) -> None:
    """The speed switches are CPU optimisations: on a GPU they are turned off. Measured on an H200
    (64 px, EfficientNet-Lite0, batch 64, benchmarks/train_step.py): a step with them ran 0.42x (Stage
    I) and 0.53x (Stage II) as fast as with them off, launching about 7x as many kernels
    (benchmarks/results/gpu-h200/train_step_64px_batch64.log). The values a run used are the ones
    its config records."""
    if device_type != "cpu":
        for name in CPU_SPEED_SWITCHES:
            setattr(a, name, False)


def training_config(a: SimpleNamespace, resolution: int) -> dict:
    """The run's settings as its checkpoints record them (sdn.training.checkpoint compares them on resume)."""
    encoder_name = a.text_encoder_instance.name if a.text_encoder_instance is not None else a.text_encoder
    return dict(
        method="sdn", teacher=a.teacher, teacher_pooling=a.teacher_pooling, teacher_init=a.teacher_init, resolution=resolution,
        text_encoder=encoder_name, fc_dim=a.fc_dim, caption_film=a.caption_film, n_outputs=a.n_outputs, scheme=a.scheme,
        pair_preactivation=a.pair_preactivation,
        stage1_epochs=a.stage1_epochs, stage2_epochs=a.stage2_epochs, batch_size=a.batch_size, lr=a.lr,
        tap_weights=a.tap_weights, loss_reduction=a.loss_reduction, tap_distance=a.tap_distance, pixel_distance=a.pixel_distance, pixel_weight=a.pixel_weight,
        diverse_mean_weight=a.diverse_mean_weight, ema_decay=a.ema_decay, lr_decay=a.lr_decay, caption_noise=a.caption_noise, caption_mix=a.caption_mix, text_scaling=a.text_scaling,
        adversarial_weight=a.adversarial_weight, critic_lr=a.critic_lr, critic_wrong_captions=a.critic_wrong_captions, stage2_pixel_weight=a.stage2_pixel_weight, tap_profile=a.tap_profile,
        teacher_input_size=a.teacher_input_size, stage1_inputs=a.stage1_inputs, precision=a.precision, channels_last=a.channels_last, seed=a.seed,
        adam=a.adam, compile=a.compile, grad_checkpointing=a.grad_checkpointing,
        teacher_fusion=a.teacher_fusion, fused_l1=a.fused_l1, matmul_convs=a.matmul_convs, retain_freed_memory=a.retain_freed_memory,
    )
