"""The `sdn` command: parse (the options: here and in sdn.cli_options) and call (sdn.commands)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from sdn import cli_options as options
from sdn import commands
from sdn.errors import DISK_FULL_ADVICE, UserError, out_of_space
from sdn.training.config import PAPER, PRESETS


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other bad input (see main)."""

    def error(self, message: str):
        self.exit(2, f"sdn: error: {' '.join(message.split())} (see: {self.prog} --help)\n")


def _add_training_args(p: argparse.ArgumentParser, demo: bool) -> None:
    r, c = options.registries(), PRESETS["demo" if demo else "paper"]  # c: the defaults (sdn.training.config)
    g = p.add_argument_group("model and training (see sdn.training.loop.training_loop)")
    g.add_argument("--teacher", default=c.teacher, **options.one_of(r.teachers, "teacher"),
                   help="teacher network (vgg19: the paper's)")
    g.add_argument("--teacher-weights", metavar="PATH", help="local teacher state dict (torchvision layout for VGG)")
    g.add_argument("--teacher-init", default=c.teacher_init, choices=r.teacher_inits, help="random: for tests only")
    g.add_argument("--teacher-pooling", default=c.teacher_pooling, choices=r.poolings, help="VGG pooling (the authors used avg)")
    g.add_argument("--text-encoder", default=c.text_encoder, **options.one_of(r.text_encoders, "text encoder"), help="caption encoder")
    g.add_argument("--scheme", default=c.scheme, **options.one_of(r.schemes, "scheme"),
                   help="paper Table 3: " + "; ".join(f"{k}: {s.description}" for k, s in r.schemes.items()))
    g.add_argument("--n-outputs", type=int, help="images per caption (diverse synthesis); default 3 for --scheme diverse, else 1")
    g.add_argument("--stage1-epochs", type=int, default=c.stage1_epochs)
    g.add_argument("--stage2-epochs", type=int, default=c.stage2_epochs)
    g.add_argument("--batch-size", type=int, default=c.batch_size,
                   help="images per step over all processes (with torchrun: a multiple of their number); default 12 (SDN), 64 (GAN baselines)")
    g.add_argument("--lr", type=float, default=c.lr, help="Adam learning rate; default 1e-4 (SDN), 2e-4 (GAN baselines)")
    g.add_argument("--fc-dim", type=int, default=c.fc_dim, help="width of g-fc8 and g-fc7")
    g.add_argument("--caption-film", action=argparse.BooleanOptionalAction, default=c.caption_film,
                   help="the caption also scales and shifts every convolution's output (FiLM), not only g-fc8's input "
                        "(off: the paper's G)")
    g.add_argument("--tap-weights", default=c.tap_weights, choices=r.tap_weights,
                   help="inverse-mean (default): each tap divided by its mean |activation| on real images, taps weighted alike; equal: the paper's raw sum")
    g.add_argument("--pixel-weight", type=float, default=c.pixel_weight,
                   help="weight of the image L1 term (the demo's default keeps the colour signal, which the teacher taps barely carry, from being drowned)")
    g.add_argument("--stage2-pixel-weight", type=float, default=c.stage2_pixel_weight,
                   help="weight of the image L1 term in the second stage of sdn/diverse (default: --pixel-weight)")
    g.add_argument("--tap-profile", default=c.tap_profile,
                   help="how the tap weights spread over the taps: flat (alike, the paper), mid (favours mid-level taps), mid-narrow (nearly all weight on them), "
                        "or one number per tap, comma-separated")
    g.add_argument("--teacher-input-size", type=int, default=c.teacher_input_size, metavar="PX",
                   help="the teacher looks at images up-sampled to PX (a multiple of 32), its taps pooled back to the "
                        "image size's shapes (default: the image size, the paper)")
    g.add_argument("--stage1-inputs", default=c.stage1_inputs, choices=r.stage1_inputs,
                   help="what G's steps read in Stage I: generator (the step above, the paper), teacher (the teacher's tap "
                        "of the real image that the step above is paired with), both (the two losses added)")
    g.add_argument("--pairing", choices=["auto", "pre-relu", "post-relu"], default="auto",
                   help="Stage I: compare G's pre- or post-ReLU values with the taps; auto (default): post-ReLU for VGG "
                        "(the authors'), pre-ReLU for teachers with signed taps (EfficientNet)")
    g.add_argument("--pair-post-relu", dest="pairing", action="store_const", const="post-relu", help=argparse.SUPPRESS)
    g.add_argument("--loss-reduction", choices=r.reductions, default=c.loss_reduction,
                   help="each L1 term over an image's elements: mean (default) or sum (the paper's plain L1 of eqs. 1-3; "
                        "with --tap-weights equal: the paper's exact loss)")
    g.add_argument("--tap-distance", choices=r.distances, default=c.tap_distance,
                   help="what the tap terms measure: l1 (the paper) or l2 (squared error; its optimum is a sparse "
                        "target's mean, not its median, which is often zero: docs/demo-levers.md)")
    g.add_argument("--pixel-distance", choices=r.distances, default=c.pixel_distance,
                   help="what the image term measures: l1 (the paper) or l2")
    g.add_argument("--ema-decay", type=float, default=c.ema_decay,
                   help="draw with a moving average of G's weights, moved 1 - this of the way each step "
                        "(0: the last weights, the paper; StyleGAN2-ADA and EDM average)")
    g.add_argument("--lr-decay", default=c.lr_decay, choices=r.lr_decays,
                   help="the learning rate over the run: none (constant, the paper) or cosine (down to 0 at the last step)")
    g.add_argument("--caption-noise", type=float, default=c.caption_noise, metavar="SD",
                   help="training only: Gaussian noise of SD standard deviations added to each caption vector "
                        "(StackGAN's conditioning augmentation, fixed variance; 0: none, the paper)")
    g.add_argument("--text-scaling", choices=r.text_scalings, default=c.text_scaling,
                   help="how G standardises a caption vector: dimension (each by its own spread over the training "
                        "captions, the paper's default), global (one spread for all) or paraphrase (only the directions "
                        "in which different images' captions differ more than one image's captions do)")
    g.add_argument("--caption-mix", action=argparse.BooleanOptionalAction, default=c.caption_mix,
                   help="training only: each step reads a random blend of two of the image's own captions "
                        "(off: one caption per step, the paper)")
    g.add_argument("--adversarial-weight", type=float, default=c.adversarial_weight, metavar="W",
                   help="--scheme projected only: weight of the critic's verdict on the teacher's features in Stage II")
    g.add_argument("--critic-lr", type=float, default=c.critic_lr,
                   help="--scheme projected only: the critic's Adam learning rate")
    g.add_argument("--no-critic-wrong-captions", dest="critic_wrong_captions", action="store_false",
                   help="--scheme projected only: the critic does not learn to refuse real images with other images' "
                        "captions (GAN-CLS's matching-aware loss; without it G drew one picture for every caption)")
    g.add_argument("--diverse-mean-weight", type=float, default=c.diverse_mean_weight,
                   help="diverse synthesis: CRN's share of the mean over the n outputs (0: the paper's pure minimum, eqs. 4-5)")
    g.add_argument("--precision", default=c.precision, choices=r.precisions)
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    g.add_argument("--adam", default=c.adam, choices=r.adam,
                   help="Adam implementation (auto: fused where supported, else foreach)")
    g.add_argument("--compile", action="store_true", help="torch.compile the generator and teacher (minutes to compile; little gain measured on CPU)")
    g.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute the generator's activations in the backward pass: less memory (224 px on small GPUs), a little slower")
    # These three are CPU optimisations, always off on a GPU (sdn.training.settings.settle_speed_switches)
    g.add_argument("--no-teacher-fusion", dest="teacher_fusion", action="store_false",
                   help="run the teacher as loaded, batch norms unfolded (the slower path on CPUs; off on GPUs anyway; docs/speed.md)")
    g.add_argument("--no-fused-l1", dest="fused_l1", action="store_false", help="the loss terms' plain L1 formula (slower on CPUs; same values; off on GPUs anyway)")
    g.add_argument("--no-matmul-convs", dest="matmul_convs", action="store_false",
                   help="weight-bound generator convolutions through oneDNN instead of as matrix products (slower at 64 px on CPUs; off on GPUs anyway)")
    g.add_argument("--no-retain-freed-memory", dest="retain_freed_memory", action="store_false",
                   help="leave glibc's malloc returning freed memory to the kernel (page faults every step)")
    g.add_argument("--seed", type=int, default=c.seed)
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    g.add_argument("--size", type=int, default=None if not demo else 64,
                   help="image resolution, a multiple of 32 (demo data: default 64; a cache: its own size)")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    r = options.registries()
    parser = _Parser(prog="sdn", description="Symmetrical Distillation Networks for text-to-image synthesis.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train on built-in coloured-shape data and draw unseen captions (under 10 minutes on 2 CPU cores)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the image-space baseline (--scheme image at the same budget) trained and scored beside SDN")
    p.add_argument("--background", default="flat", choices=r.backgrounds,
                   help="the demo data's backgrounds: flat mid-grey (default) or a random grey gradient per image, which no "
                        "caption describes and which slows the learning of shapes (docs/demo-levers.md)")
    _add_training_args(p, demo=True)
    p.set_defaults(func=commands.cmd_demo)

    p = sub.add_parser("train", help="train a generator")
    p.add_argument("--data", default="demo", help="'demo' (built-in data) or a cache folder made by `sdn data prepare`")
    p.add_argument("--out", required=True, help="run folder (checkpoints, stats.jsonl)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="continue exactly where a run stopped: 'auto' (the newest readable checkpoint in --out, else start afresh), a checkpoint file or a run folder")
    p.add_argument("--checkpoint-every", type=int, default=PAPER.checkpoint_every, metavar="STEPS", help="checkpoint every this many steps as well as at each epoch end (0: epoch ends only)")
    p.add_argument("--checkpoint-epochs", type=int, default=PAPER.checkpoint_epochs, metavar="N", help="checkpoint at every N-th epoch end (and the last)")
    p.add_argument("--keep-checkpoints", type=int, default=PAPER.keep_checkpoints, metavar="K", help="numbered checkpoints kept in --out")
    p.add_argument("--max-bad-steps", type=int, default=PAPER.max_bad_steps, metavar="N", help="stop after N non-finite losses in a row (each is skipped)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a run folder that already holds a run")
    p.add_argument("--allow-changed-settings", nargs="+", default=[], metavar="KEY",
                   help="on resume, let these settings differ from the checkpoint's (training longer needs no permission); "
                        "any other difference is refused; changes are recorded in the run's config")
    p.add_argument("--background", default="gradient", choices=r.backgrounds,
                   help="--data demo only: the built-in data's backgrounds (default gradient: with the paper's L1 image term, "
                        "flat backgrounds trap G at a grey image; `sdn demo` uses flat with --pixel-distance l2)")
    p.add_argument("--method", default="sdn", choices=r.methods,
                   help="sdn (default), or a Table 1 baseline: gan-int-cls (Reed et al. 2016), stackgan1 (StackGAN Stage-I)")
    p.add_argument("--epochs", type=int, help="GAN baselines: epochs (default: the paper's 600; learning rates halve every 100 / 50)")
    p.add_argument("--max-minutes", type=float, help="stop at the first step boundary after this much wall time, with a checkpoint")
    _add_training_args(p, demo=False)
    p.set_defaults(func=commands.cmd_train, batch_size=None, lr=None, stage1_epochs=None, stage2_epochs=None)

    options.add_data(sub, r)
    options.add_export(sub, r)
    options.add_sample(sub, r)
    options.add_evaluate(sub, r)
    options.add_figure(sub, r)
    options.add_interpolate(sub, r)
    options.add_models(sub, r)
    options.add_ablate(sub, r)
    options.add_serve(sub, r)
    options.add_rank_report(sub, r)
    options.add_table1(sub, r)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *_: f"sdn: warning: {msg}\n"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.func(args)
    except UserError as e:
        message = " ".join(str(e).split())  # one line, whatever the message held
        print(f"sdn: error: {message}", file=sys.stderr)
        return 2
    except Exception as e:
        if not out_of_space(e):
            raise
        print(f"sdn: error: no space left on the disk: {DISK_FULL_ADVICE}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdn: interrupted; the last checkpoint is kept (continue with --resume auto)", file=sys.stderr)
        return 130
    return 0
