"""The ranking page (`sdn serve --rank`), the paper's Table 2 protocol: for a random caption of an
unseen test class, every loaded model's drawing side by side in a random order, labelled only A, B,
C...; the rater gives each a rank (1 = best) by image quality or by match to the caption, and the
answer is stored (see sdn.serve.ranking_db). Which model drew which image stays on the server, in
the session's state, so the page cannot reveal it."""

from __future__ import annotations

import random
import secrets
import string

from sdn.errors import UserError
from sdn.serve import ranking_db
from sdn.serve.examples import CaptionSource
from sdn.serve.files import PngFiles
from sdn.serve.models import LoadedModel


class Ranking:
    def __init__(self, models: list[LoadedModel], source: CaptionSource, db: str, show_real: bool, seed: int | None = None):
        self.models, self.source, self.db, self.show_real = models, source, db, show_real
        self.rng = random.Random(seed if seed is not None else secrets.randbits(64))
        self.letters = list(string.ascii_uppercase[: len(models)])
        self.files = PngFiles()

    def new_trial(self, state: dict | None) -> list:
        """Next caption: (state, caption text, real image, one drawing per model, cleared ranks)."""
        state = dict(state or {})
        state.setdefault("rater", secrets.token_hex(8))  # one per browser session, tied to nobody
        index, caption = self.source.random_test_caption(self.rng)
        order = self.rng.sample(range(len(self.models)), len(self.models))
        drawings = [self.files.save(self.models[m].draw([caption])[0, 0]) for m in order]
        state.update(index=index, caption=caption, order=[self.models[m].name for m in order])
        real = self.files.save(self.source.image(index)) if self.show_real else None
        return [state, f"### {caption}", real, *drawings, *[None] * len(self.models)]

    def submit(self, state: dict | None, criterion: str, *ranks) -> list:
        """Store the answer, then show the next caption; on a bad answer, only a message."""
        import gradio as gr

        keep = [gr.skip()] * (3 + 2 * len(self.models))
        if not state or "order" not in state:
            return keep + ["Press **Next caption** first."]
        try:
            if any(r in (None, "") for r in ranks):
                raise UserError(f"give every drawing a rank from 1 to {len(self.models)} (1 = best)")
            row = ranking_db.add_answer(self.db, state["rater"], criterion, state["caption"], state["index"],
                                        state["order"], [int(r) for r in ranks], self.show_real)
        except UserError as e:
            return keep + [f"**Not saved:** {' '.join(str(e).split())}"]
        return self.new_trial(state) + [f"Saved answer {row}. Here is the next caption."]


def add_rank_page(demo, models: list[LoadedModel], source: CaptionSource, db: str, show_real: bool, seed: int | None = None):
    import gradio as gr

    ranking = Ranking(models, source, db, show_real, seed)
    k = len(models)
    with demo.route("Rank", "rank"):
        gr.Markdown(f"# Rank the drawings (the paper's Table 2)\nEach drawing is by a different model, in a random order. "
                    f"Give each a different rank from 1 (best) to {k}, then save.")
        state = gr.State(None)
        caption = gr.Markdown(elem_id="rank-caption")
        criterion = gr.Radio([(label, key) for key, label in ranking_db.CRITERIA.items()], value="quality",
                             label="rank by", elem_id="rank-criterion")
        with gr.Row():
            real = gr.Image(label="real image (not ranked)", visible=show_real, interactive=False, height=240,
                            buttons=["fullscreen"], elem_id="rank-real", elem_classes="drawing")
            images = [gr.Image(label=f"drawing {letter}", interactive=False, height=240, buttons=["fullscreen"],
                               elem_id=f"rank-image-{letter}", elem_classes="drawing") for letter in ranking.letters]
        with gr.Row():
            ranks = [gr.Radio([str(r) for r in range(1, k + 1)], value=None, label=f"rank of {letter}",
                              elem_id=f"rank-{letter}") for letter in ranking.letters]
        with gr.Row():
            next_caption = gr.Button("Next caption", elem_id="rank-next")
            save = gr.Button("Save ranking", variant="primary", elem_id="rank-save")
        status = gr.Markdown(elem_id="rank-status")
        trial_outputs = [state, caption, real, *images, *ranks]
        next_caption.click(ranking.new_trial, [state], trial_outputs, api_visibility="private",
                           concurrency_id="model", concurrency_limit=1)
        demo.load(ranking.new_trial, [state], trial_outputs, api_visibility="private", concurrency_id="model", concurrency_limit=1)
        save.click(ranking.submit, [state, criterion, *ranks], trial_outputs + [status], api_visibility="private",
                   concurrency_id="model", concurrency_limit=1)
    return ranking
