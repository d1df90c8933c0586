"""`sdn serve`: a Gradio page that draws typed captions with models loaded once at start.

Every model-using event shares one queue slot ("model"): the CPU or GPU is busy with one drawing at
a time anyway, and requests that wait in the queue are handed to `draw` together (Gradio's
batching), where they become one generator call per model. Gradio's HTTP API comes with the page
(endpoints /draw and /interpolate; see "Use via API" at the page's foot).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import torch

from sdn.errors import UserError
from sdn.serve.examples import CaptionSource
from sdn.serve.files import PngFiles
from sdn.serve.models import (
    MAX_CAPTIONS,
    MAX_CHARS,
    MAX_STEPS,
    LoadedModel,
    parse_captions,
    parse_pair,
    parse_steps,
)

DEFAULT_EXAMPLES = ("a flower with bright red petals", "this flower has large yellow petals and a dark center",
                    "the petals are white and the stamen is long and yellow")

PIXELATED = ("#gallery img, #strip img, .drawing img { image-rendering: pixelated; }\n"
             ".drawing img { width: 100%; height: 100%; object-fit: contain; }")


def _error(e: UserError) -> str:
    return f"**Cannot draw:** {' '.join(str(e).split())}"


class DrawPage:
    """The functions behind the page (and the API), kept apart from the widgets so they can be
    tested without a browser."""

    def __init__(self, models: list[LoadedModel], source: CaptionSource | None):
        self.models = {m.name: m for m in models}
        self.source = source
        self.files = PngFiles()

    def _model(self, name) -> LoadedModel:
        if name not in self.models:
            raise UserError(f"unknown model {name!r}; this server has: {', '.join(self.models)}")
        return self.models[name]

    def _gallery(self, model: LoadedModel, captions: list[str], images: torch.Tensor) -> list:
        items = []
        for caption, outputs in zip(captions, images):
            real = self.source.real_image(caption) if self.source else None
            if real is not None:
                items.append((self.files.save(real[0]), f"real image ({real[1]}): {caption}"))
            for p, image in enumerate(outputs):
                items.append((self.files.save(image), caption if model.n_outputs == 1 else f"{caption} (#{p + 1})"))
        return items

    def draw(self, captions: list, model: list) -> list[list]:
        """Gradio batch function: one caption-box text and model name per queued request; all
        requests for the same model become one call of its sampler."""
        galleries, messages = [[] for _ in captions], [""] * len(captions)
        jobs: dict[str, list[tuple[int, list[str]]]] = defaultdict(list)
        for i, (text, name) in enumerate(zip(captions, model)):
            try:
                request = (i, parse_captions(text))
                jobs[self._model(name).name].append(request)
            except UserError as e:
                messages[i] = _error(e)
        for name, requests in jobs.items():
            model = self.models[name]
            started = time.perf_counter()
            images = model.draw([c for _, captions in requests for c in captions])
            ms = (time.perf_counter() - started) * 1000
            start = 0
            for i, captions in requests:
                galleries[i] = self._gallery(model, captions, images[start : start + len(captions)])
                start += len(captions)
                messages[i] = f"Drew {len(captions)} caption(s) with {name} ({ms:.0f} ms, {len(requests)} request(s) in this batch)."
        return [galleries, messages]

    def interpolate(self, caption_a, caption_b, steps, model) -> tuple[list, str]:
        try:
            model = self._model(model)
            caption_a, caption_b = parse_pair(caption_a, caption_b)
            steps = parse_steps(steps)
        except UserError as e:
            return [], _error(e)
        images, weights = model.interpolate(caption_a, caption_b, steps)
        items = [(self.files.save(images[s, p]), f"{1 - w:.2f} A + {w:.2f} B" + (f" (#{p + 1})" if model.n_outputs > 1 else ""))
                 for p in range(model.n_outputs) for s, w in enumerate(weights)]
        return items, f"From A: {caption_a}  \nto B: {caption_b}"


def build_app(models: list[LoadedModel], source: CaptionSource | None = None, rank_db: str | None = None,
              show_real: bool = False, max_batch_size: int = 16):
    """The Gradio Blocks: the drawing page and, with `rank_db`, the ranking page at /rank."""
    import gradio as gr

    page = DrawPage(models, source)
    names = list(page.models)
    examples = source.examples() if source else list(DEFAULT_EXAMPLES)
    with gr.Blocks(title="sdn: text to image", delete_cache=(600, 3600), analytics_enabled=False) as demo:
        gr.Markdown("# Symmetrical Distillation Networks: draw your own sentences\n"
                    f"One caption per line (at most {MAX_CAPTIONS}, each up to {MAX_CHARS} characters)."
                    + (" A caption of the dataset is shown beside its real image." if source else ""))
        model = gr.Dropdown(names, value=names[0], label="model", elem_id="model")
        with gr.Row():
            captions = gr.Textbox(label="captions, one per line", lines=3, elem_id="captions", scale=4)
            draw = gr.Button("Draw", variant="primary", elem_id="draw", scale=1)
        message = gr.Markdown(label="message", elem_id="message")
        gallery = gr.Gallery(label="drawings", format="png", columns=6, fit_columns=False, height=None, object_fit="contain",
                             elem_id="gallery", buttons=["download", "fullscreen"])
        gr.Examples([[c] for c in examples], inputs=[captions], label="example captions"
                    + (" (unseen test classes)" if source else ""))
        gr.Markdown("## Sentence interpolation (the paper's Fig. 8)")
        with gr.Row():
            caption_a = gr.Textbox(label="caption A", value=examples[0], elem_id="caption-a")
            caption_b = gr.Textbox(label="caption B", value=examples[1 % len(examples)], elem_id="caption-b")
            steps = gr.Number(value=7, precision=0, label=f"steps (2 to {MAX_STEPS})", elem_id="steps")
            run_interpolation = gr.Button("Interpolate", elem_id="interpolate")
        strip_message = gr.Markdown(label="message", elem_id="strip-message")
        strip = gr.Gallery(label="interpolation strip", format="png", columns=8, fit_columns=False, height=220,
                           object_fit="contain", elem_id="strip", buttons=["download", "fullscreen"])
        # While a request waits or draws, Gradio shows its progress indicator (queue place, time) over the outputs.
        draw.click(page.draw, [captions, model], [gallery, message], api_name="draw", batch=True,
                   max_batch_size=max_batch_size, concurrency_id="model", concurrency_limit=1)
        run_interpolation.click(page.interpolate, [caption_a, caption_b, steps, model], [strip, strip_message],
                                api_name="interpolate", concurrency_id="model", concurrency_limit=1)
    if rank_db is not None:
        from sdn.serve.rank_page import add_rank_page

        add_rank_page(demo, models, source, rank_db, show_real)
    return demo


def launch(demo, host: str, port: int) -> None:
    """Start serving in a background thread (the page's drawings shown pixel for pixel, not blurred)."""
    try:
        demo.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                                                       run_history=False, footer_links=["api", "gradio", "settings"],
                                                       ssr_mode=False, show_error=False, css=PIXELATED)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e}") from None


def serve(checkpoints: list[str], model_names: list[str], data: str | None = None, host: str = "127.0.0.1", port: int = 7860,
          device: str | None = None, rank: bool = False, rank_db: str = "ranks.sqlite", show_real: bool = False,
          max_batch_size: int = 16) -> None:
    """Load everything, start the server, print where it listens, serve until interrupted."""
    from sdn.serve import ranking_db
    from sdn.serve.models import load_models

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool; before gradio's import
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("sdn serve needs Gradio: pip install 'sdn-t2i[web]'") from None
    if not 1 <= max_batch_size <= 256:
        raise UserError("--max-batch-size must be between 1 and 256")
    if rank and not data:
        raise UserError("--rank needs --data CACHE: the captions to rank come from its unseen test classes")
    if rank and len(checkpoints) + len(model_names) < 2:
        raise UserError("--rank compares models: give at least two (--checkpoint A --checkpoint B ...)")
    if rank:
        ranking_db.create(rank_db)
    source = CaptionSource(data) if data else None
    demo = build_app(load_models(checkpoints, model_names, device), source, rank_db if rank else None, show_real, max_batch_size)
    launch(demo, host, port)
    local_only = host in ("127.0.0.1", "localhost", "::1")
    print(f"sdn serve: listening on http://{host}:{port}/" + (" (this machine only; --host 0.0.0.0 opens it to the network)"
                                                             if local_only else " (OPEN TO THE NETWORK: anyone who reaches it can draw)"), flush=True)
    if rank:
        print(f"sdn serve: ranking page http://{host}:{port}/rank, answers saved to {rank_db}", flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
