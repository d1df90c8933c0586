"""What each `sdn` subcommand does, given its parsed arguments (sdn.cli parses; the work is in the
modules each command imports when it runs, so that a command loads only what it uses)."""

from __future__ import annotations

import os
from pathlib import Path

from sdn.training.config import PAPER
from sdn.errors import UserError


def _training_kwargs(a) -> dict:
    return dict(
        teacher=a.teacher, teacher_weights=a.teacher_weights, teacher_init=a.teacher_init, teacher_pooling=a.teacher_pooling,
        text_encoder=a.text_encoder, scheme=a.scheme, n_outputs=a.n_outputs, stage1_epochs=a.stage1_epochs, stage2_epochs=a.stage2_epochs,
        batch_size=a.batch_size, lr=a.lr, fc_dim=a.fc_dim, caption_film=a.caption_film,
        pair_preactivation={"auto": None, "pre-relu": True, "post-relu": False}[a.pairing],
        tap_weights=a.tap_weights, loss_reduction=a.loss_reduction, tap_distance=a.tap_distance, pixel_distance=a.pixel_distance, pixel_weight=a.pixel_weight,
        diverse_mean_weight=a.diverse_mean_weight, ema_decay=a.ema_decay, lr_decay=a.lr_decay, caption_noise=a.caption_noise, caption_mix=a.caption_mix, text_scaling=a.text_scaling,
        adversarial_weight=a.adversarial_weight, critic_lr=a.critic_lr,
        critic_wrong_captions=a.critic_wrong_captions, stage2_pixel_weight=a.stage2_pixel_weight, tap_profile=a.tap_profile,
        teacher_input_size=a.teacher_input_size, stage1_inputs=a.stage1_inputs,
        precision=a.precision, channels_last=a.channels_last, device=a.device, progress=a.progress,
        adam=a.adam, compile=a.compile, grad_checkpointing=a.grad_checkpointing,
        teacher_fusion=a.teacher_fusion, fused_l1=a.fused_l1, matmul_convs=a.matmul_convs, retain_freed_memory=a.retain_freed_memory,
    )


def _checkpoint(a) -> str:
    from sdn.pretrained import resolve_checkpoint

    return resolve_checkpoint(a.checkpoint, a.model)


def _one_thread() -> None:
    """For a few drawings: hundreds of tiny operations, where OpenMP's barriers between 2 threads
    cost seconds on a busy machine and save nothing on an idle one (measured: docs/models.md)."""
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


def _free_cores_only() -> None:
    """Without OMP_NUM_THREADS, use only the cores other processes leave free (the 1-minute load
    average), at least one. OpenMP threads that share a core with another job wait at every barrier:
    `sdn demo` from a fresh clone took 936 s with torch's 2 threads and 462 s with 1 while another
    training used the other of 2 cores (this machine, one run each)."""
    if "OMP_NUM_THREADS" not in os.environ and hasattr(os, "getloadavg"):
        import torch

        free = (os.cpu_count() or 1) - round(os.getloadavg()[0])
        torch.set_num_threads(max(1, min(torch.get_num_threads(), free)))


def cmd_demo(a) -> None:
    from sdn.demo import run_demo
    from sdn.networks.teachers import check_resolution

    check_resolution(a.size)
    _free_cores_only()
    report = run_demo(a.out, resolution=a.size, seed=a.seed, baseline=a.baseline, background=a.background, **_training_kwargs(a))
    runs = [r for r in ("sdn", "image_baseline") if r in report]
    print(f"{'accuracy':<24}" + "".join(f"{r.replace('_', ' '):>30}" for r in runs))
    for part in ("unseen_pairs", "training_pairs", "held_out_phrasings"):
        cells = ["  ".join(f"{k[0]} {report[r][part][k]:6.1%}" for k in ("colour", "shape", "position")) for r in runs]
        print(f"{part.replace('_', ' '):<24}" + "".join(f"{c:>30}" for c in cells))
    print("(c colour, s shape, p position; real unseen-pair images: shape classifier "
          f"{report['real_unseen_pair_images']['shape_classifier_accuracy']:.1%})")
    missed = [k for k, g in report["goals"].items() if not g["met"]]
    print("goals of issue 12: " + ("all met" if not missed else "missed " + ", ".join(missed)) + f"; wall time {report['wall_seconds']:.0f} s")
    print(f"wrote {a.out}/samples.png, loss.png, metrics.json, checkpoints, generator.safetensors")


def cmd_train(a) -> None:
    from sdn.data.demo_data import make_demo_data
    from sdn.networks.teachers import check_resolution
    from sdn.training.loop import training_loop

    if a.method == "sdn" and a.epochs is not None:
        raise UserError("--epochs is for the GAN baselines; SDN takes --stage1-epochs and --stage2-epochs")
    if a.method != "sdn" and (a.stage1_epochs is not None or a.stage2_epochs is not None or a.scheme != "sdn"):
        raise UserError(f"--scheme, --stage1-epochs and --stage2-epochs are SDN's; {a.method} takes --epochs")

    if a.data == "demo":
        check_resolution(a.size or 64)
        data = make_demo_data(a.size or 64, a.seed, background=a.background)
    else:
        from sdn.data.cache import load_cache

        if a.size is not None:
            check_resolution(a.size)
        data = load_cache(a.data, a.text_encoder)
        if a.size is not None and a.size != data.resolution:
            raise UserError(f"--size {a.size} but the cache {a.data} holds {data.resolution} px images")
    run = dict(seed=a.seed, resume=a.resume, overwrite=a.overwrite, checkpoint_every=a.checkpoint_every or None, checkpoint_epochs=a.checkpoint_epochs,
               keep_checkpoints=a.keep_checkpoints, max_bad_steps=a.max_bad_steps, max_seconds=None if a.max_minutes is None else a.max_minutes * 60)
    if a.method == "sdn":
        a.batch_size, a.lr = a.batch_size or PAPER.batch_size, a.lr or PAPER.lr
        a.stage1_epochs = PAPER.stage1_epochs if a.stage1_epochs is None else a.stage1_epochs
        a.stage2_epochs = PAPER.stage2_epochs if a.stage2_epochs is None else a.stage2_epochs
        path = training_loop(data, a.out, **run, allow_changed_settings=tuple(a.allow_changed_settings), **_training_kwargs(a))
    else:
        from sdn.baselines.loop import gan_training_loop

        path = gan_training_loop(data, a.out, method=a.method, text_encoder=a.text_encoder, epochs=a.epochs, batch_size=a.batch_size,
                                 lr=a.lr, n_outputs=a.n_outputs, precision=a.precision, channels_last=a.channels_last, adam=a.adam,
                                 device=a.device, progress=a.progress, allow_changed_settings=tuple(a.allow_changed_settings), **run)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        print(f"wrote {path} and {path.parent / 'generator.safetensors'}")


def cmd_prepare(a) -> None:
    from sdn.data.cache import prepare
    from sdn.networks.text import build_text_encoder

    encoder = None if a.text_encoder in ("none", "char-cnn-rnn-pickle") else build_text_encoder(a.text_encoder)
    out = prepare(a.dataset, a.root, a.out, a.size, a.strict, encoder, progress=a.progress)
    if a.stackgan_dir:
        from sdn.data.cache import add_stackgan_embeddings

        add_stackgan_embeddings(out, a.stackgan_dir)
    import json

    manifest = json.loads((out / "meta.json").read_text())["manifest"]
    print(f"{out}: {manifest['split_counts']['train']} train / {manifest['split_counts']['test']} test images, "
          f"{manifest['captions_per_image']} captions each, {manifest['skipped']} skipped, "
          f"{len(manifest['problems'])} problem(s) listed in meta.json")


def cmd_export(a) -> None:
    from sdn.training.checkpoint import export_generator, generator_from_checkpoint, load_checkpoint
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
    from sdn.evaluation.evaluate import evaluate
    from sdn.evaluation.metrics import METRICS

    result = evaluate(_checkpoint(a), a.data, a.out, split=a.split, metrics=_metric_names(a.metrics), classifier=a.classifier,
                      classifier_weights=a.classifier_weights, captions_per_image=a.captions_per_image, is_splits=a.is_splits,
                      feature_precision=a.feature_precision, batch_size=a.batch_size, device=a.device, with_figures=a.figures,
                      progress=a.progress, save_drawings=a.save_drawings)
    m = result["metrics"]
    shown = [f"{k.upper()} {m[k]:.4f}" + (f" ± {m[k + '_std']:.4f}" if f"{k}_std" in m else "") for k in METRICS if k in m]
    print("; ".join(shown) + (f"  (IS by {m['is_classifier']})" if "is" in m else "") + ("  COLLAPSED" if m.get("collapsed") else ""))
    print(f"wrote {a.out}/metrics.json and {a.out}/report.html")


def cmd_figure(a) -> None:
    from sdn.evaluation.figure_commands import single_figure

    single_figure(a.kind, _checkpoint(a), a.data, a.out, a.split, a.count, a.classifier, a.classifier_weights, a.device)
    print(f"wrote {a.out}")


def cmd_interpolate(a) -> None:
    from sdn.evaluation.figure_commands import interpolate_captions

    if not a.text or len(a.text) != 2:
        raise UserError("give exactly two captions: --text A --text B")
    _one_thread()
    interpolate_captions(_checkpoint(a), a.text[0], a.text[1], a.steps, a.out, a.device)
    print(f"wrote {a.out}")


def cmd_models(a) -> None:
    from sdn.pretrained import model_card, models_table

    print(model_card(a.name) if a.name else models_table(), end="")


def cmd_ablate(a) -> None:
    from sdn.evaluation.ablation import ablate

    ablate(a.data, a.out, runs=tuple(a.runs.split(",")) if a.runs else None, teacher=a.teacher, vgg19_weights=a.vgg19_weights,
           stage1_epochs=a.stage1_epochs, stage2_epochs=a.stage2_epochs, tap_weights=a.tap_weights, pixel_weight=a.pixel_weight,
           fc_dim=a.fc_dim, captions_per_image=a.captions_per_image, classifier=a.classifier, batch_size=a.batch_size, seed=a.seed,
           device=a.device, progress=a.progress, feature_precision=a.feature_precision,
           allow_changed_settings=tuple(a.allow_changed_settings))
    print((Path(a.out) / "ablation.md").read_text())
    print(f"wrote {a.out}/ablation.md, ablation.json, schemes.png, metrics.png, report.html")


def cmd_serve(a) -> None:
    from sdn.serve.app import serve

    serve(a.checkpoint or [], a.model or [], a.data, a.host, a.port, a.device, a.rank, a.rank_db, a.show_real, a.max_batch_size)


def cmd_rank_report(a) -> None:
    from sdn.serve.rank_report import rank_report

    print(rank_report(a.rank_db), end="")


def cmd_table1(a) -> None:
    from sdn.evaluation.table1 import table1

    table1(a.data, a.out, a.budget_minutes, methods=tuple(a.methods.split(",")), teacher=a.teacher, teacher_weights=a.teacher_weights,
           pixel_weight=a.pixel_weight, fc_dim=a.fc_dim, text_encoder=a.text_encoder, classifier=a.classifier,
           classifier_weights=a.classifier_weights, captions_per_image=a.captions_per_image, feature_precision=a.feature_precision,
           metrics=_metric_names(a.metrics), precision=a.precision, seed=a.seed, device=a.device, progress=a.progress)
    print((Path(a.out) / "table1.md").read_text())
    print(f"wrote {a.out}/table1.md, table1.json, table1.png, report.html")
