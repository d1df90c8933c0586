"""The `sdn` command's options, command by command (sdn.cli puts them together; sdn.commands runs them).
Choices come from the registries that define them, so a new teacher, scheme or metric shows up here."""

from __future__ import annotations

import argparse

from sdn import commands
from sdn.training.config import PRESETS


def one_of(registry, what: str):
    """An argparse type that accepts the keys of `registry` (read when the parser is built, so
    entries registered at run time count), refusing others in one line that lists them."""
    names = list(registry)

    def check(value: str) -> str:
        if value not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {value!r}; choose from {', '.join(names)}")
        return value

    return dict(type=check, choices=names)


def registries():
    """The registries that name the options' choices. Their modules import torch (about 1.5 s, which
    every command but `models`, `rank-report` and --help needs anyway) and none of the packages that
    `sdn sample` must not load (tests/test_startup.py)."""
    from sdn.baselines import METHODS
    from sdn.data.demo_data import BACKGROUNDS
    from sdn.data.readers import READERS
    from sdn.networks.caption_input import TEXT_SCALINGS
    from sdn.networks.classifiers import CLASSIFIERS
    from sdn.networks.teachers import POOLINGS, TEACHER_INITS, TEACHERS
    from sdn.networks.text import TEXT_ENCODERS
    from sdn.training.losses import DISTANCES, REDUCTIONS, STAGE1_INPUTS, TAP_WEIGHTS
    from sdn.training.optim import ADAM_CHOICES, LR_DECAYS
    from sdn.training.schemes import SCHEMES
    from sdn.utils import PRECISIONS

    return argparse.Namespace(
        methods=["sdn", *METHODS], classifiers=CLASSIFIERS, reductions=REDUCTIONS, tap_weights=TAP_WEIGHTS, adam=ADAM_CHOICES,
        schemes=SCHEMES, datasets=list(READERS), teachers=TEACHERS, teacher_inits=TEACHER_INITS, poolings=POOLINGS,
        text_encoders=TEXT_ENCODERS, precisions=PRECISIONS, stage1_inputs=STAGE1_INPUTS, distances=DISTANCES,
        backgrounds=BACKGROUNDS, lr_decays=LR_DECAYS, text_scalings=TEXT_SCALINGS,
    )


def add_model_source(p: argparse.ArgumentParser, checkpoint_help: str = "checkpoint file or run folder") -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help=checkpoint_help)
    g.add_argument("--model", metavar="NAME", help="a model that ships with sdn instead (list: sdn models)")


class ListMetrics(argparse.Action):
    """`sdn evaluate --list-metrics`: the metric registry's names and descriptions, then exit."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        from sdn.evaluation.metrics.registry import metrics_help

        print(metrics_help(), end="")  # to stdout: argparse's exit message would go to stderr
        parser.exit(0)


def add_data(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("prepare", help="read a dataset once into a cache for training and evaluation")
    p.add_argument("--dataset", required=True, choices=r.datasets)
    p.add_argument("--root", required=True, help="the dataset folder, as its downloads unpack")
    p.add_argument("--out", required=True, help="cache folder to create")
    p.add_argument("--size", type=int, default=64, help="image resolution (64, 128, 224...)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem instead of skipping the item")
    p.add_argument("--stackgan-dir", help="StackGAN's folder with <split>/char-CNN-RNN-embeddings.pickle: import them (text encoder char-cnn-rnn-pickle)")
    p.add_argument("--text-encoder", default="all-minilm-l6-v2", **one_of(["none", *r.text_encoders], "text encoder"),
                   help="caption encoder to precompute, or 'none'")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=commands.cmd_prepare)


def add_export(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("export", help="write a checkpoint's generator as safetensors (training does this at its end)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder (its newest checkpoint)")
    p.add_argument("--out", required=True, help="file to write, e.g. generator.safetensors (the configuration goes beside it as .json)")
    p.set_defaults(func=commands.cmd_export)


def add_sample(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("sample", help="draw images for captions you type")
    add_model_source(p, "checkpoint file, exported generator.safetensors, or run folder")
    p.add_argument("--text", action="append", help="a caption (repeat for several)")
    p.add_argument("--data", help="instead of --text: a prepared cache; draws its images' captions next to the real images")
    p.add_argument("--split", default="test", choices=["train", "test"], help="with --data: which split")
    p.add_argument("--count", type=int, default=12, help="with --data: how many images")
    p.add_argument("-n", type=int, default=None, help="images per caption (at most the model's outputs; default all)")
    p.add_argument("--out", required=True, help="image file for the grid (.png or .jpg)")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.set_defaults(func=commands.cmd_sample)


def add_evaluate(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("evaluate", help="the paper's metrics (SSIM, FSIM, IS, FID) and figures on a cache split; metrics.json + report.html")
    add_model_source(p)
    p.add_argument("--data", required=True, help="a cache made by `sdn data prepare` (same resolution and text encoder)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", help="comma-separated keys of the metric registry (default: its default ones; see --list-metrics)")
    p.add_argument("--list-metrics", action=ListMetrics, help="list the metrics with their descriptions and exit")
    p.add_argument("--classifier", default="efficientnet-lite0", **one_of(r.classifiers, "classifier"),
                   help="Inception Score network: efficientnet-lite0 (offline) or inception-v3")
    p.add_argument("--classifier-weights", metavar="PATH", help="local classifier weights (inception-v3: torchvision's state dict)")
    p.add_argument("--captions-per-image", type=int, help="default: all (the paper's protocol)")
    p.add_argument("--is-splits", type=int, default=10)
    p.add_argument("--feature-precision", default="fp32", choices=r.precisions,
                   help="IS/FID features: fp32 (standard) or bf16 (about 5x faster on CPUs with AMX; compare bf16 only with bf16)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-figures", dest="figures", action="store_false", help="numbers only")
    p.add_argument("--save-drawings", action="store_true", help="also write every drawing as a PNG in OUT/drawings (for other tools)")
    p.add_argument("--device")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=commands.cmd_evaluate)


def add_figure(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("figure", help="one of the paper's figures as an image file")
    p.add_argument("kind", choices=["compare", "diverse", "retrieval"],
                   help="compare: real vs generated (Figs. 3-4); diverse: n outputs per caption (Fig. 5); retrieval: nearest training images (Fig. 7)")
    add_model_source(p)
    p.add_argument("--data", required=True, help="a prepared cache")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--count", type=int, default=8, help="captions to draw")
    p.add_argument("--classifier", default="efficientnet-lite0", **one_of(r.classifiers, "classifier"), help="retrieval feature network")
    p.add_argument("--classifier-weights", metavar="PATH")
    p.add_argument("--out", required=True, help="image file (.png)")
    p.add_argument("--device")
    p.set_defaults(func=commands.cmd_figure)


def add_interpolate(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("interpolate", help="images along a line between two captions' embeddings (paper Fig. 8)")
    add_model_source(p)
    p.add_argument("--text", action="append", help="caption A, then caption B")
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--out", required=True, help="image file (.png)")
    p.add_argument("--device")
    p.set_defaults(func=commands.cmd_interpolate)


def add_models(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("models", help="the trained models that ship with sdn (use one with --model NAME)")
    p.add_argument("name", nargs="?", help="print this model's card")
    p.set_defaults(func=commands.cmd_models)


def add_ablate(sub, r: argparse.Namespace) -> None:
    ab = PRESETS["ablation"]  # the defaults (sdn.training.config)
    p = sub.add_parser("ablate", help="train and evaluate the paper's Table 3 schemes, teachers and loss balances alike")
    p.add_argument("--data", required=True, help="a prepared cache with all-minilm-l6-v2 embeddings")
    p.add_argument("--out", required=True, help="folder for the runs and the table")
    p.add_argument("--runs", help="comma-separated subset of: image,stage1,stage2,joint,sdn,diverse,sdn-equal-taps,"
                                  "sdn-efficientnet-lite0-random,sdn-vgg19-random,sdn-vgg19-imagenet")
    p.add_argument("--teacher", default=ab.teacher, **one_of(r.teachers, "teacher"), help="the base (pretrained) teacher")
    p.add_argument("--vgg19-weights", metavar="PATH", help="VGG19 ImageNet state dict for the sdn-vgg19-imagenet run")
    p.add_argument("--stage1-epochs", type=int, default=ab.stage1_epochs, help="budget of every run, first part")
    p.add_argument("--stage2-epochs", type=int, default=ab.stage2_epochs, help="budget of every run, second part")
    p.add_argument("--tap-weights", default=ab.tap_weights, choices=r.tap_weights)
    p.add_argument("--pixel-weight", type=float, default=ab.pixel_weight)
    p.add_argument("--fc-dim", type=int, default=ab.fc_dim)
    p.add_argument("--captions-per-image", type=int, default=1, help="evaluation drawings per test image")
    p.add_argument("--feature-precision", default="bf16", choices=r.precisions, help="IS/FID features (all runs alike)")
    p.add_argument("--classifier", default="efficientnet-lite0", **one_of(r.classifiers, "classifier"))
    p.add_argument("--batch-size", type=int, default=ab.batch_size)
    p.add_argument("--seed", type=int, default=ab.seed)
    p.add_argument("--device")
    p.add_argument("--allow-changed-settings", nargs="+", default=[], metavar="KEY",
                   help="reuse or resume runs in --out whose saved settings differ in these keys (recorded); otherwise refused")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=commands.cmd_ablate)


def add_serve(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("serve", help="a local web page to draw your own captions (and --rank: rank models by hand, paper Table 2)")
    p.add_argument("--checkpoint", action="append", help="run folder, .pt checkpoint or generator.safetensors (repeat for several models)")
    p.add_argument("--model", action="append", help="a packaged model by name (repeat for several)")
    p.add_argument("--data", help="a prepared cache: example captions of its unseen test classes, real images beside their captions")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--max-batch-size", type=int, default=16, help="queued requests drawn together in one generator call")
    p.add_argument("--rank", action="store_true", help="add the ranking page /rank (needs --data and two or more models)")
    p.add_argument("--rank-db", default="ranks.sqlite", help="SQLite file for the ranking answers (created if absent)")
    p.add_argument("--show-real", action="store_true", help="ranking page: show the caption's real image, labelled, beside the drawings")
    p.set_defaults(func=commands.cmd_serve)


def add_rank_report(sub, r: argparse.Namespace) -> None:
    p = sub.add_parser("rank-report", help="mean human rank of each model from a --rank-db file (paper Table 2)")
    p.add_argument("--rank-db", required=True, help="the SQLite file written by `sdn serve --rank`")
    p.set_defaults(func=commands.cmd_rank_report)


def add_table1(sub, r: argparse.Namespace) -> None:
    ab = PRESETS["ablation"]  # the defaults (sdn.training.config)
    p = sub.add_parser("table1", help="the paper's Table 1: SDN, GAN-INT-CLS and StackGAN Stage-I under one wall-clock budget, scored alike")
    p.add_argument("--data", required=True, help="a prepared cache with the text encoder's embeddings")
    p.add_argument("--out", required=True, help="folder for the runs and the table (rerun: finished runs are reused, others continued)")
    p.add_argument("--budget-minutes", type=float, required=True, help="wall-clock training time of every method")
    p.add_argument("--methods", default="sdn,gan-int-cls,stackgan1")
    p.add_argument("--teacher", default=ab.teacher, **one_of(r.teachers, "teacher"),
                   help="SDN's teacher (vgg19 + --teacher-weights: the paper's)")
    p.add_argument("--teacher-weights", metavar="PATH")
    p.add_argument("--pixel-weight", type=float, default=ab.pixel_weight, help="SDN's image-term weight")
    p.add_argument("--fc-dim", type=int, default=ab.fc_dim, help="SDN's g-fc8/g-fc7 width")
    p.add_argument("--text-encoder", default=ab.text_encoder, **one_of(r.text_encoders, "text encoder"))
    p.add_argument("--classifier", default="efficientnet-lite0", **one_of(r.classifiers, "classifier"), help="IS network (inception-v3 + --classifier-weights: comparable with published IS)")
    p.add_argument("--classifier-weights", metavar="PATH")
    p.add_argument("--captions-per-image", type=int, help="default: all (the paper's protocol)")
    p.add_argument("--feature-precision", default="fp32", choices=r.precisions)
    p.add_argument("--metrics", help="comma-separated keys of the metric registry (default: its default ones)")
    p.add_argument("--precision", default=ab.precision, choices=r.precisions, help="training precision of every method")
    p.add_argument("--seed", type=int, default=ab.seed)
    p.add_argument("--device")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=commands.cmd_table1)
