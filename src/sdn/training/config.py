"""Training settings defined once. `TrainingConfig`'s defaults are the paper's (Yuan & Peng 2018,
where it gives them) and each preset changes a few of them for one purpose. training_loop's keyword
defaults, the options of `sdn train` and `sdn demo`, and `sdn ablate` and `sdn table1` read them here."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class TrainingConfig:
    teacher: str = "vgg19"  # teacher network (a key of sdn.networks.teachers.TEACHERS)
    teacher_init: str = "pretrained"  # "random" is for tests only
    teacher_pooling: str = "avg"  # VGG pooling: "avg" (the authors') or "max"
    text_encoder: str = "all-minilm-l6-v2"  # caption encoder (a key of sdn.networks.text.TEXT_ENCODERS)
    scheme: str = "sdn"  # a key of sdn.training.schemes.SCHEMES (the paper's Table 3)
    n_outputs: int | None = None  # images per caption; None = the scheme's (3 for "diverse", else 1)
    stage1_epochs: int = 100  # epochs with the first loss of the scheme (paper: 100)
    stage2_epochs: int = 100  # epochs with the second loss of the scheme (paper: 100)
    batch_size: int = 12  # images per step over all processes (paper: 12); a multiple of the number of processes
    lr: float = 1e-4  # Adam learning rate (paper: 1e-4)
    fc_dim: int = 4096  # width of g-fc8 and g-fc7
    caption_film: bool = False  # the caption also scales and shifts every convolution's output per channel
    # (FiLM, zero-initialised; sdn.networks.generator.Generator), not only g-fc8's input (False: the paper's G)
    pair_preactivation: bool | None = None  # Stage I pairs G's pre-ReLU (True) or post-ReLU (False) values
    # with the taps (see Generator); None: post-ReLU for VGG (the authors'), pre-ReLU for teachers with signed taps
    tap_weights: str = "inverse-mean"  # "inverse-mean": each tap divided by its mean |activation| on
    # real training images and weighted 1/(number of taps), so every tap counts alike and the taps
    # together weigh about as much as a relative error; "equal": every raw tap term weighted 1, as in the
    # paper (its exact eqs. 1-3 also need loss_reduction="sum")
    loss_reduction: str = "mean"  # each L1 term over an image's elements: "mean" (a term's size is
    # independent of the tap's shape) or "sum" (the paper's plain ||.||_1, which weighs big taps more)
    tap_distance: str = "l1"  # what the tap terms measure: "l1" (the paper) or "l2" (squared error, whose
    # optimum is the mean rather than the median of a sparse target: see sdn.training.losses._Weighted)
    pixel_distance: str = "l1"  # the same for the image term
    pixel_weight: float = 1.0  # weight of the image-space L1 term
    stage2_pixel_weight: float | None = None  # the image term's weight in the second part of a two-loss
    # scheme (sdn, diverse); None = pixel_weight
    tap_profile: str = "flat"  # how the tap weights spread over the taps: "flat" (alike, the paper), "mid"
    # (favours mid-level taps) or one number per tap (sdn.networks.teacher_views.tap_weight_profile)
    teacher_input_size: int | None = None  # the teacher sees images up-sampled to this size, its taps
    # area-pooled back to their shapes at the image size (sdn.networks.teacher_views); None = the image size (the paper)
    stage1_inputs: str = "generator"  # what G's steps read in Stage I: "generator" (the step above, the
    # paper), "teacher" (the teacher's tap of the real image paired with the step above, so every layer
    # learns its own step of inverting the teacher at once), "both" (the two losses added)
    diverse_mean_weight: float = 0.001  # CRN's small share of the mean over the n outputs (0: the
    # paper's pure minimum, eqs. 4-5)
    ema_decay: float = 0.0  # draw with an exponential moving average of G's weights, moved 1 - ema_decay of
    # the way each step (0: the last weights, the paper; sdn.training.average)
    lr_decay: str = "none"  # the learning rate over the run: "none" (constant, the paper) or "cosine" (from lr
    # down to 0 at the last step, a half cosine over all steps of both stages; sdn.training.optim.scheduled_lr;
    # a run resumed with more epochs stretches the rest of the curve to the new last step)
    caption_noise: float = 0.0  # training only: Gaussian noise of this many standard deviations (per
    # dimension, over the training captions) added to each caption vector, StackGAN's conditioning
    # augmentation in its fixed-variance form (0: none, the paper)
    text_scaling: str = "dimension"  # how G standardises a caption vector with the training captions' statistics:
    # "dimension" (each dimension by its own spread) or "global" (one spread for all, so directions the
    # training sentences never vary are not amplified for a caption worded otherwise) or "paraphrase" (only
    # the directions in which different images' captions differ more than one image's captions do, each
    # scaled to unit spread: G reads the meaning, not the sentence frame; needs >= 2 captions per image;
    # sdn.networks.caption_input.paraphrase_directions)
    caption_mix: bool = False  # training only: each step reads a random blend of two of the image's own captions
    # (weights uniform in [0, 1], the blend rescaled to the two vectors' length), so G sees the space between
    # phrasings of one meaning, not only the sentences (False: one caption, the paper; sdn.data.batches.caption_blend)
    adversarial_weight: float = 0.1  # the "projected" scheme only: weight of the critic's verdict in Stage II
    # (hinge generator loss; sdn.training.losses.ProjectedStage2Loss)
    critic_lr: float = 2e-4  # the "projected" scheme only: the critic's Adam learning rate (betas 0, 0.99, as Projected GAN)
    critic_wrong_captions: bool = True  # the "projected" scheme only: the critic also refuses real images paired with
    # other images' captions (GAN-CLS's matching-aware loss); without it, G drew one picture for every caption
    precision: str = "bf16"  # "bf16" autocast (AMX on CPU, tensor cores on CUDA) or "fp32"
    channels_last: bool = True  # NHWC memory format for the convolutions
    adam: str = "auto"  # Adam implementation: "fused" (one kernel over all parameters), "foreach",
    # "for-loop" (the reference); "auto" = fused where this torch supports it on the device, else
    # foreach. On 2 CPU cores fused steps the 142 M-parameter 224 px generator 5x faster than foreach.
    compile: bool = False  # torch.compile the generator and the teacher (off: on 2 CPU cores it took
    # minutes to compile and gained nothing clear, 0.95-0.99x in Stage I, 1.03-1.26x in Stage II)
    grad_checkpointing: bool = False  # recompute the generator's insides in the backward pass for
    # a smaller peak memory (224 px on small GPUs); same results, about one more generator forward
    teacher_fusion: bool = True  # a frozen teacher with batch norms and paddings folded in and weights
    # held in the step's precision (sdn.networks.teacher_fusion); same taps to rounding
    fused_l1: bool = True  # every loss term's L1 in 4 elementwise passes instead of ~11 (sdn.training.fused_l1)
    matmul_convs: bool = True  # weight-bound generator convolutions as matrix products (Generator)
    retain_freed_memory: bool = True  # CPU: glibc keeps freed memory for reuse (sdn.training.host_memory);
    # process-wide. The four together, 64 px, EfficientNet-Lite0, 1 thread: Stage II 1.9x, Stage I 1.3x (docs/speed.md)
    # On a GPU the first three are turned off: there they slowed 64-px steps 2x (sdn.training.settings.settle_speed_switches)
    seed: int = 0  # initialisation, data order and caption choice
    checkpoint_every: int | None = 500  # also checkpoint every this many steps (None: at the end of each epoch only)
    checkpoint_epochs: int = 1  # checkpoint at the end of every this many epochs (and always of the last one)
    keep_checkpoints: int = 3  # numbered checkpoints kept in run_dir; older ones are deleted
    max_bad_steps: int = 5  # a non-finite loss skips its step; this many in a row stop training


PAPER = TrainingConfig()
PRESETS: dict[str, TrainingConfig] = {
    "paper": PAPER,
    # `sdn demo`: a small fast teacher and generator, under 10 minutes on 2 CPU cores; the large pixel
    # weight keeps the colour signal, which the teacher taps barely carry, from being drowned
    # (its epochs take seconds: a checkpoint every 8 wrote 9 of 135 MB per run instead of 37). The image
    # term is squared: under L1 a colour that covers a few pixels of few images can stay at the
    # background's median (seed 2 drew no blue or purple: unseen-pair colour 57.4 % -> 82.1 % with L2).
    # On the demo's flat backgrounds (sdn.demo) shape comes from Stage II, the teacher's features of G's
    # drawing: most of the budget in Stage II and lr 3e-4 took seed 0's unseen-pair shape from 17.6 %
    # (18 + 14 epochs, lr 1e-4) to 43.2 % (10 + 22); batch 32 (not the paper's 12) runs an epoch in 2/3 of
    # the time on a CPU, so the same ~5 minutes hold 16 + 36 epochs: 50.6 % (docs/demo-levers.md).
    # Weighting the teacher's mid-level taps most (tap_profile "mid") took it to 70.4 % at the cost of
    # colour (84.3 -> 69.1 %); a heavier image term in Stage II and a short weight average (about the
    # last 100 steps) give the colour back: 86.4 % colour, 66.7 % shape (session 7, same budget). Nearly all
    # the tap weight on blocks 2, 4 and 7 ("mid-narrow") lifted the weak seeds 1 and 2 from 45.1 / 42.3 %
    # to 64.8 / 74.4 % shape (session 8, same budget; a cosine learning-rate decay and caption noise
    # each traded shape for colour there). The caption in every layer (caption_film, session 12) took the
    # worst seed from 64.8 % shape and 85.5 % colour to 83.3 % and 98.2 % (three seeds, same budget).
    # Reading only the directions in which different images' captions differ (text_scaling "paraphrase",
    # session 14) took the held-out phrasings' shape from 51.2-58.3 % to 59.9-67.0 % and the worst unseen
    # shape from 83.3 to 91.7 %; the image-space baseline, reading captions the same way, gained more
    # (SDN's lead on unseen shape 32.7-33.1 points, was 48.7-66.1; docs/demo-levers.md)
    "demo": replace(PAPER, teacher="efficientnet-lite0", stage1_epochs=16, stage2_epochs=36, batch_size=32, lr=3e-4, fc_dim=1024,
                    caption_film=True, text_scaling="paraphrase",
                    pixel_weight=50.0, pixel_distance="l2", checkpoint_epochs=8, tap_profile="mid-narrow", stage2_pixel_weight=100.0,
                    ema_decay=0.99),
    # `sdn ablate` and SDN in `sdn table1`: every run alike, the budget given on the command line
    "ablation": replace(PAPER, teacher="efficientnet-lite0", stage1_epochs=1, stage2_epochs=1, fc_dim=1024, pixel_weight=10.0),
}


def preset_kwargs(name: str) -> dict:
    """A preset as training_loop keyword arguments."""
    preset = PRESETS[name]
    return {f.name: getattr(preset, f.name) for f in fields(preset)}
