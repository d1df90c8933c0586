"""The `sdn` command: a thin layer over sdn.demo, sdn.training and sdn.sampling."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from sdn.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other bad input (see main)."""

    def error(self, message: str):
        self.exit(2, f"sdn: error: {' '.join(message.split())} (see: {self.prog} --help)\n")


def _one_of(registry, what: str):
    """An argparse type that accepts the keys of `registry` (read when the parser is built, so
    entries registered at run time count), refusing others in one line that lists them."""
    names = list(registry)

    def check(value: str) -> str:
        if value not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {value!r}; choose from {', '.join(names)}")
        return value

    return dict(type=check, choices=names)


def _registries():
    """The registries that name the choices of the options (light modules: no heavy imports at start-up)."""
    from sdn.baselines import METHODS
    from sdn.classifiers import CLASSIFIERS
    from sdn.losses import REDUCTIONS, TAP_WEIGHTS
    from sdn.optim import ADAM_CHOICES
    from sdn.readers import READERS
    from sdn.schemes import SCHEMES
    from sdn.teachers import TEACHERS
    from sdn.text import TEXT_ENCODERS
    from sdn.utils import PRECISIONS

    return argparse.Namespace(methods=["sdn", *METHODS], classifiers=CLASSIFIERS, reductions=REDUCTIONS, tap_weights=TAP_WEIGHTS, adam=ADAM_CHOICES,
                              schemes=SCHEMES, datasets=list(READERS), teachers=TEACHERS, text_encoders=TEXT_ENCODERS, precisions=PRECISIONS)


def _add_training_args(p: argparse.ArgumentParser, demo: bool) -> None:
    r = _registries()
    g = p.add_argument_group("model and training (see sdn.training.training_loop)")
    g.add_argument("--teacher", default="efficientnet-lite0" if demo else "vgg19", **_one_of(r.teachers, "teacher"),
                   help="teacher network (vgg19: the paper's)")
    g.add_argument("--teacher-weights", metavar="PATH", help="local teacher state dict (torchvision layout for VGG)")
    g.add_argument("--teacher-init", default="pretrained", choices=["pretrained", "random"], help="random: for tests only")
    g.add_argument("--teacher-pooling", default="avg", choices=["avg", "max"], help="VGG pooling (the authors used avg)")
    g.add_argument("--text-encoder", default="all-minilm-l6-v2", **_one_of(r.text_encoders, "text encoder"), help="caption encoder")
    g.add_argument("--scheme", default="sdn", **_one_of(r.schemes, "scheme"),
                   help="paper Table 3: " + "; ".join(f"{k}: {s.description}" for k, s in r.schemes.items()))
    g.add_argument("--n-outputs", type=int, help="images per caption (diverse synthesis); default 3 for --scheme diverse, else 1")
    g.add_argument("--stage1-epochs", type=int, default=18 if demo else 100)
    g.add_argument("--stage2-epochs", type=int, default=14 if demo else 100)
    g.add_argument("--batch-size", type=int, default=12,
                   help="images per step over all processes (with torchrun: a multiple of their number); default 12 (SDN), 64 (GAN baselines)")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate; default 1e-4 (SDN), 2e-4 (GAN baselines)")
    g.add_argument("--fc-dim", type=int, default=1024 if demo else 4096, help="width of g-fc8 and g-fc7")
    g.add_argument("--tap-weights", default="inverse-mean", choices=r.tap_weights,
                   help="inverse-mean (default): each tap divided by its mean |activation| on real images, taps weighted alike; equal: the paper's raw sum")
    g.add_argument("--pixel-weight", type=float, default=50.0 if demo else 1.0,
                   help="weight of the image L1 term (the demo's default keeps the colour signal, which the teacher taps barely carry, from being drowned)")
    g.add_argument("--pairing", choices=["auto", "pre-relu", "post-relu"], default="auto",
                   help="Stage I: compare G's pre- or post-ReLU values with the taps; auto (default): post-ReLU for VGG "
                        "(the authors'), pre-ReLU for teachers with signed taps (EfficientNet)")
    g.add_argument("--pair-post-relu", dest="pairing", action="store_const", const="post-relu", help=argparse.SUPPRESS)
    g.add_argument("--loss-reduction", choices=r.reductions, default="mean",
                   help="each L1 term over an image's elements: mean (default) or sum (the paper's plain L1 of eqs. 1-3; "
                        "with --tap-weights equal: the paper's exact loss)")
    g.add_argument("--diverse-mean-weight", type=float, default=0.001,
                   help="diverse synthesis: CRN's share of the mean over the n outputs (0: the paper's pure minimum, eqs. 4-5)")
    g.add_argument("--precision", default="bf16", choices=r.precisions)
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    g.add_argument("--adam", default="auto", choices=r.adam,
                   help="Adam implementation (auto: fused where supported, else foreach)")
    g.add_argument("--compile", action="store_true", help="torch.compile the generator and teacher (minutes to compile; little gain measured on CPU)")
    g.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute the generator's activations in the backward pass: less memory (224 px on small GPUs), a little slower")
    g.add_argument("--no-teacher-fusion", dest="teacher_fusion", action="store_false",
                   help="run the teacher as loaded, batch norms unfolded (the slower path before the speed work; docs/speed.md)")
    g.add_argument("--no-fused-l1", dest="fused_l1", action="store_false", help="the loss terms' plain L1 formula (slower; same values)")
    g.add_argument("--no-matmul-convs", dest="matmul_convs", action="store_false",
                   help="weight-bound generator convolutions through oneDNN instead of as matrix products (slower at 64 px)")
    g.add_argument("--no-retain-freed-memory", dest="retain_freed_memory", action="store_false",
                   help="leave glibc's malloc returning freed memory to the kernel (page faults every step)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    g.add_argument("--size", type=int, default=None if not demo else 64,
                   help="image resolution, a multiple of 32 (demo data: default 64; a cache: its own size)")
    g.add_argument("--no-progress", dest="progress", action="store_false")


def _training_kwargs(a) -> dict:
    return dict(
        teacher=a.teacher, teacher_weights=a.teacher_weights, teacher_init=a.teacher_init, teacher_pooling=a.teacher_pooling,
        text_encoder=a.text_encoder, scheme=a.scheme, n_outputs=a.n_outputs, stage1_epochs=a.stage1_epochs, stage2_epochs=a.stage2_epochs,
        batch_size=a.batch_size, lr=a.lr, fc_dim=a.fc_dim,
        pair_preactivation={"auto": None, "pre-relu": True, "post-relu": False}[a.pairing],
        tap_weights=a.tap_weights, loss_reduction=a.loss_reduction, pixel_weight=a.pixel_weight,
        diverse_mean_weight=a.diverse_mean_weight,
        precision=a.precision, channels_last=a.channels_last, device=a.device, progress=a.progress,
        adam=a.adam, compile=a.compile, grad_checkpointing=a.grad_checkpointing,
        teacher_fusion=a.teacher_fusion, fused_l1=a.fused_l1, matmul_convs=a.matmul_convs, retain_freed_memory=a.retain_freed_memory,
    )


def _add_model_source(p: argparse.ArgumentParser, checkpoint_help: str = "checkpoint file or run folder") -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help=checkpoint_help)
    g.add_argument("--model", metavar="NAME", help="a model that ships with sdn instead (list: sdn models)")


def _checkpoint(a) -> str:
    from sdn.pretrained import resolve_checkpoint

    return resolve_checkpoint(a.checkpoint, a.model)


def _one_thread() -> None:
    """For a few drawings: hundreds of tiny operations, where OpenMP's barriers between 2 threads
    cost seconds on a busy machine and save nothing on an idle one (measured: docs/models.md)."""
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


def cmd_demo(a) -> None:
    from sdn.demo import run_demo
    from sdn.teachers import check_resolution

    check_resolution(a.size)
    report = run_demo(a.out, resolution=a.size, seed=a.seed, **_training_kwargs(a))
    print(f"colour accuracy on unseen colour-shape pairs: {report['colour_accuracy_test_unseen_pairs']:.1%} "
          f"(train pairs {report['colour_accuracy_train']:.1%}); wall time {report['wall_seconds']:.0f} s")
    print(f"wrote {a.out}/samples.png, loss.png, metrics.json, checkpoints, generator.safetensors")


def cmd_train(a) -> None:
    from sdn.demo_data import make_demo_data
    from sdn.teachers import check_resolution
    from sdn.training import training_loop

    if a.method == "sdn" and a.epochs is not None:
        raise UserError("--epochs is for the GAN baselines; SDN takes --stage1-epochs and --stage2-epochs")
    if a.method != "sdn" and (a.stage1_epochs is not None or a.stage2_epochs is not None or a.scheme != "sdn"):
        raise UserError(f"--scheme, --stage1-epochs and --stage2-epochs are SDN's; {a.method} takes --epochs")

    if a.data == "demo":
        check_resolution(a.size or 64)
        data = make_demo_data(a.size or 64, a.seed)
    else:
        from sdn.cache import load_cache

        if a.size is not None:
            check_resolution(a.size)
        data = load_cache(a.data, a.text_encoder)
        if a.size is not None and a.size != data.resolution:
            raise UserError(f"--size {a.size} but the cache {a.data} holds {data.resolution} px images")
    run = dict(seed=a.seed, resume=a.resume, overwrite=a.overwrite, checkpoint_every=a.checkpoint_every or None,
               keep_checkpoints=a.keep_checkpoints, max_bad_steps=a.max_bad_steps, max_seconds=None if a.max_minutes is None else a.max_minutes * 60)
    if a.method == "sdn":
        a.batch_size, a.lr = a.batch_size or 12, a.lr or 1e-4
        a.stage1_epochs, a.stage2_epochs = (100 if e is None else e for e in (a.stage1_epochs, a.stage2_epochs))
        path = training_loop(data, a.out, **run, allow_changed_settings=tuple(a.allow_changed_settings), **_training_kwargs(a))
    else:
        from sdn.baselines.loop import gan_training_loop

        path = gan_training_loop(data, a.out, method=a.method, text_encoder=a.text_encoder, epochs=a.epochs, batch_size=a.batch_size,
                                 lr=a.lr, n_outputs=a.n_outputs, precision=a.precision, channels_last=a.channels_last, adam=a.adam,
                                 device=a.device, progress=a.progress, allow_changed_settings=tuple(a.allow_changed_settings), **run)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        print(f"wrote {path} and {path.parent / 'generator.safetensors'}")


def cmd_prepare(a) -> None:
    from sdn.cache import prepare
    from sdn.text import build_text_encoder

    encoder = None if a.text_encoder in ("none", "char-cnn-rnn-pickle") else build_text_encoder(a.text_encoder)
    out = prepare(a.dataset, a.root, a.out, a.size, a.strict, encoder, progress=a.progress)
    if a.stackgan_dir:
        from sdn.cache import add_stackgan_embeddings

        add_stackgan_embeddings(out, a.stackgan_dir)
    import json

    manifest = json.loads((out / "meta.json").read_text())["manifest"]
    print(f"{out}: {manifest['split_counts']['train']} train / {manifest['split_counts']['test']} test images, "
          f"{manifest['captions_per_image']} captions each, {manifest['skipped']} skipped, "
          f"{len(manifest['problems'])} problem(s) listed in meta.json")


def cmd_export(a) -> None:
    from sdn.checkpoint import export_generator, generator_from_checkpoint, load_checkpoint
    from sdn.utils import output_file

    output_file(a.out, (".safetensors",), ".safetensors")
    ckpt = load_checkpoint(a.checkpoint)
    path = export_generator(generator_from_checkpoint(ckpt), {**ckpt["config"], "step": ckpt["step"]}, a.out)
    print(f"wrote {path} and {path.with_suffix('.json')}")


def cmd_sample(a) -> None:
    from sdn.sampling import sample_split_grid, sample_to_file

    if bool(a.text) == bool(a.data):
        raise UserError("give either --text (one or more captions) or --data CACHE (captions of its images)")
    if a.data:
        sample_split_grid(_checkpoint(a), a.data, a.out, a.split, a.count, a.device)
    else:
        _one_thread()
        sample_to_file(_checkpoint(a), a.text, a.out, a.n, a.device)
    print(f"wrote {a.out}")


def _metric_names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split(","))


def cmd_evaluate(a) -> None:
    from sdn.evaluation import evaluate
    from sdn.metrics import METRICS

    result = evaluate(_checkpoint(a), a.data, a.out, a.split, _metric_names(a.metrics), a.classifier, a.classifier_weights,
                      a.captions_per_image, a.is_splits, a.feature_precision, a.batch_size, a.device, a.figures, a.progress,
                      save_drawings=a.save_drawings)
    m = result["metrics"]
    shown = [f"{k.upper()} {m[k]:.4f}" + (f" ± {m[k + '_std']:.4f}" if f"{k}_std" in m else "") for k in METRICS if k in m]
    print("; ".join(shown) + (f"  (IS by {m['is_classifier']})" if "is" in m else "") + ("  COLLAPSED" if m.get("collapsed") else ""))
    print(f"wrote {a.out}/metrics.json and {a.out}/report.html")


def cmd_figure(a) -> None:
    from sdn.evaluation import single_figure

    single_figure(a.kind, _checkpoint(a), a.data, a.out, a.split, a.count, a.classifier, a.classifier_weights, a.device)
    print(f"wrote {a.out}")


def cmd_interpolate(a) -> None:
    from sdn.evaluation import interpolate_captions

    if not a.text or len(a.text) != 2:
        raise UserError("give exactly two captions: --text A --text B")
    _one_thread()
    interpolate_captions(_checkpoint(a), a.text[0], a.text[1], a.steps, a.out, a.device)
    print(f"wrote {a.out}")


def cmd_models(a) -> None:
    from sdn.pretrained import model_card, models_table

    print(model_card(a.name) if a.name else models_table(), end="")


def cmd_ablate(a) -> None:
    from sdn.ablation import ablate

    ablate(a.data, a.out, tuple(a.runs.split(",")) if a.runs else None, a.teacher, a.vgg19_weights, a.stage1_epochs,
           a.stage2_epochs, a.tap_weights, a.pixel_weight, a.fc_dim, a.captions_per_image, a.classifier, a.batch_size, a.seed,
           a.device, a.progress, a.feature_precision, allow_changed_settings=tuple(a.allow_changed_settings))
    print((Path(a.out) / "ablation.md").read_text())
    print(f"wrote {a.out}/ablation.md, ablation.json, schemes.png, metrics.png, report.html")


def cmd_serve(a) -> None:
    from sdn.serve.app import serve

    serve(a.checkpoint or [], a.model or [], a.data, a.host, a.port, a.device, a.rank, a.rank_db, a.show_real, a.max_batch_size)


def cmd_rank_report(a) -> None:
    from sdn.serve.rank_report import rank_report

    print(rank_report(a.rank_db), end="")


def cmd_table1(a) -> None:
    from sdn.table1 import table1

    table1(a.data, a.out, a.budget_minutes, tuple(a.methods.split(",")), a.teacher, a.teacher_weights, a.pixel_weight, a.fc_dim,
           a.text_encoder, a.classifier, a.classifier_weights, a.captions_per_image, a.feature_precision, _metric_names(a.metrics),
           a.precision, a.seed, a.device, a.progress)
    print((Path(a.out) / "table1.md").read_text())
    print(f"wrote {a.out}/table1.md, table1.json, table1.png, report.html")


class _ListMetrics(argparse.Action):
    """`sdn evaluate --list-metrics`: the metric registry's names and descriptions, then exit."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        from sdn.metrics.registry import metrics_help

        parser.exit(0, metrics_help())


def build_parser() -> argparse.ArgumentParser:
    r = _registries()
    parser = _Parser(prog="sdn", description="Symmetrical Distillation Networks for text-to-image synthesis.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train on built-in coloured-shape data and draw unseen captions (under 10 minutes on 2 CPU cores)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    _add_training_args(p, demo=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a generator")
    p.add_argument("--data", default="demo", help="'demo' (built-in data) or a cache folder made by `sdn data prepare`")
    p.add_argument("--out", required=True, help="run folder (checkpoints, stats.jsonl)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="continue exactly where a run stopped: 'auto' (the newest readable checkpoint in --out, else start afresh), a checkpoint file or a run folder")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="STEPS", help="checkpoint every this many steps as well as at each epoch end (0: epoch ends only)")
    p.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="numbered checkpoints kept in --out")
    p.add_argument("--max-bad-steps", type=int, default=5, metavar="N", help="stop after N non-finite losses in a row (each is skipped)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a run folder that already holds a run")
    p.add_argument("--allow-changed-settings", nargs="+", default=[], metavar="KEY",
                   help="on resume, let these settings differ from the checkpoint's (training longer needs no permission); "
                        "any other difference is refused; changes are recorded in the run's config")
    p.add_argument("--method", default="sdn", choices=r.methods,
                   help="sdn (default), or a Table 1 baseline: gan-int-cls (Reed et al. 2016), stackgan1 (StackGAN Stage-I)")
    p.add_argument("--epochs", type=int, help="GAN baselines: epochs (default: the paper's 600; learning rates halve every 100 / 50)")
    p.add_argument("--max-minutes", type=float, help="stop at the first step boundary after this much wall time, with a checkpoint")
    _add_training_args(p, demo=False)
    p.set_defaults(func=cmd_train, batch_size=None, lr=None, stage1_epochs=None, stage2_epochs=None)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("prepare", help="read a dataset once into a cache for training and evaluation")
    p.add_argument("--dataset", required=True, choices=r.datasets)
    p.add_argument("--root", required=True, help="the dataset folder, as its downloads unpack")
    p.add_argument("--out", required=True, help="cache folder to create")
    p.add_argument("--size", type=int, default=64, help="image resolution (64, 128, 224...)")
    p.add_argument("--strict", action="store_true", help="stop at the first problem instead of skipping the item")
    p.add_argument("--stackgan-dir", help="StackGAN's folder with <split>/char-CNN-RNN-embeddings.pickle: import them (text encoder char-cnn-rnn-pickle)")
    p.add_argument("--text-encoder", default="all-minilm-l6-v2", **_one_of(["none", *r.text_encoders], "text encoder"),
                   help="caption encoder to precompute, or 'none'")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("export", help="write a checkpoint's generator as safetensors (training does this at its end)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder (its newest checkpoint)")
    p.add_argument("--out", required=True, help="file to write, e.g. generator.safetensors (the configuration goes beside it as .json)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sample", help="draw images for captions you type")
    _add_model_source(p, "checkpoint file, exported generator.safetensors, or run folder")
    p.add_argument("--text", action="append", help="a caption (repeat for several)")
    p.add_argument("--data", help="instead of --text: a prepared cache; draws its images' captions next to the real images")
    p.add_argument("--split", default="test", choices=["train", "test"], help="with --data: which split")
    p.add_argument("--count", type=int, default=12, help="with --data: how many images")
    p.add_argument("-n", type=int, default=None, help="images per caption (at most the model's outputs; default all)")
    p.add_argument("--out", required=True, help="image file for the grid (.png or .jpg)")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("evaluate", help="the paper's metrics (SSIM, FSIM, IS, FID) and figures on a cache split; metrics.json + report.html")
    _add_model_source(p)
    p.add_argument("--data", required=True, help="a cache made by `sdn data prepare` (same resolution and text encoder)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--metrics", help="comma-separated keys of the metric registry (default: its default ones; see --list-metrics)")
    p.add_argument("--list-metrics", action=_ListMetrics, help="list the metrics with their descriptions and exit")
    p.add_argument("--classifier", default="efficientnet-lite0", **_one_of(r.classifiers, "classifier"),
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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("figure", help="one of the paper's figures as an image file")
    p.add_argument("kind", choices=["compare", "diverse", "retrieval"],
                   help="compare: real vs generated (Figs. 3-4); diverse: n outputs per caption (Fig. 5); retrieval: nearest training images (Fig. 7)")
    _add_model_source(p)
    p.add_argument("--data", required=True, help="a prepared cache")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--count", type=int, default=8, help="captions to draw")
    p.add_argument("--classifier", default="efficientnet-lite0", **_one_of(r.classifiers, "classifier"), help="retrieval feature network")
    p.add_argument("--classifier-weights", metavar="PATH")
    p.add_argument("--out", required=True, help="image file (.png)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("interpolate", help="images along a line between two captions' embeddings (paper Fig. 8)")
    _add_model_source(p)
    p.add_argument("--text", action="append", help="caption A, then caption B")
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--out", required=True, help="image file (.png)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("models", help="the trained models that ship with sdn (use one with --model NAME)")
    p.add_argument("name", nargs="?", help="print this model's card")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("ablate", help="train and evaluate the paper's Table 3 schemes, teachers and loss balances alike")
    p.add_argument("--data", required=True, help="a prepared cache with all-minilm-l6-v2 embeddings")
    p.add_argument("--out", required=True, help="folder for the runs and the table")
    p.add_argument("--runs", help="comma-separated subset of: image,stage1,stage2,joint,sdn,diverse,sdn-equal-taps,"
                                  "sdn-efficientnet-lite0-random,sdn-vgg19-random,sdn-vgg19-imagenet")
    p.add_argument("--teacher", default="efficientnet-lite0", **_one_of(r.teachers, "teacher"), help="the base (pretrained) teacher")
    p.add_argument("--vgg19-weights", metavar="PATH", help="VGG19 ImageNet state dict for the sdn-vgg19-imagenet run")
    p.add_argument("--stage1-epochs", type=int, default=1, help="budget of every run, first part")
    p.add_argument("--stage2-epochs", type=int, default=1, help="budget of every run, second part")
    p.add_argument("--tap-weights", default="inverse-mean", choices=r.tap_weights)
    p.add_argument("--pixel-weight", type=float, default=10.0)
    p.add_argument("--fc-dim", type=int, default=1024)
    p.add_argument("--captions-per-image", type=int, default=1, help="evaluation drawings per test image")
    p.add_argument("--feature-precision", default="bf16", choices=r.precisions, help="IS/FID features (all runs alike)")
    p.add_argument("--classifier", default="efficientnet-lite0", **_one_of(r.classifiers, "classifier"))
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--allow-changed-settings", nargs="+", default=[], metavar="KEY",
                   help="reuse or resume runs in --out whose saved settings differ in these keys (recorded); otherwise refused")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_ablate)

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
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("rank-report", help="mean human rank of each model from a --rank-db file (paper Table 2)")
    p.add_argument("--rank-db", required=True, help="the SQLite file written by `sdn serve --rank`")
    p.set_defaults(func=cmd_rank_report)

    p = sub.add_parser("table1", help="the paper's Table 1: SDN, GAN-INT-CLS and StackGAN Stage-I under one wall-clock budget, scored alike")
    p.add_argument("--data", required=True, help="a prepared cache with the text encoder's embeddings")
    p.add_argument("--out", required=True, help="folder for the runs and the table (rerun: finished runs are reused, others continued)")
    p.add_argument("--budget-minutes", type=float, required=True, help="wall-clock training time of every method")
    p.add_argument("--methods", default="sdn,gan-int-cls,stackgan1")
    p.add_argument("--teacher", default="efficientnet-lite0", **_one_of(r.teachers, "teacher"),
                   help="SDN's teacher (vgg19 + --teacher-weights: the paper's)")
    p.add_argument("--teacher-weights", metavar="PATH")
    p.add_argument("--pixel-weight", type=float, default=10.0, help="SDN's image-term weight")
    p.add_argument("--fc-dim", type=int, default=1024, help="SDN's g-fc8/g-fc7 width")
    p.add_argument("--text-encoder", default="all-minilm-l6-v2", **_one_of(r.text_encoders, "text encoder"))
    p.add_argument("--classifier", default="efficientnet-lite0", **_one_of(r.classifiers, "classifier"), help="IS network (inception-v3 + --classifier-weights: comparable with published IS)")
    p.add_argument("--classifier-weights", metavar="PATH")
    p.add_argument("--captions-per-image", type=int, help="default: all (the paper's protocol)")
    p.add_argument("--feature-precision", default="fp32", choices=r.precisions)
    p.add_argument("--metrics", help="comma-separated keys of the metric registry (default: its default ones)")
    p.add_argument("--precision", default="bf16", choices=r.precisions, help="training precision of every method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_table1)
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
    except KeyboardInterrupt:
        print("sdn: interrupted; the last checkpoint is kept (continue with --resume auto)", file=sys.stderr)
        return 130
    return 0
