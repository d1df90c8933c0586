"""The models a server draws with: loaded once at start, each through `sdn.sampling.Sampler`.

Also the checks every request passes before it reaches a model, shared by the page and the API:
one caption per line, at most MAX_CAPTIONS of them, each at most MAX_CHARS characters of valid
text, and at most MAX_STEPS interpolation steps.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from sdn.errors import UserError
from sdn.networks.text import TextEncoder, build_text_encoder, check_captions
from sdn.sampling import Sampler
from sdn.training.checkpoint import generator_from_checkpoint, load_checkpoint
from sdn.utils import default_device

MAX_CAPTIONS = 16
MAX_CHARS = 300
MAX_STEPS = 16
# Every drawing runs on this one thread, whichever server thread asked for it. Run on the web
# server's many worker threads, each gets its own malloc arena for the tensors, and the server's
# resident memory kept growing under load (+44 % after 3 x 12 s of 32 clients with a tiny model,
# against +3 % for the same requests answered without a model; on this one thread, +5 %). It also
# makes the models safe to call from several requests at once.
_MODEL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdn-model")


@dataclass
class LoadedModel:
    name: str  # what the page and the ranking database call it
    sampler: Sampler
    encoder: TextEncoder
    config: dict

    @property
    def n_outputs(self) -> int:
        return self.sampler.n_outputs

    def draw(self, captions: list[str]) -> torch.Tensor:
        """Checked captions -> (N, n_outputs, 3, H, W) images in [0, 1]."""
        return _MODEL_THREAD.submit(lambda: self.sampler(self.encoder.encode(captions))).result()

    def interpolate(self, caption_a: str, caption_b: str, steps: int) -> tuple[torch.Tensor, list[float]]:
        """Images on the line from caption A's embedding to caption B's (the paper's Fig. 8):
        ((steps, n_outputs, 3, H, W), the weight of B at each step)."""
        weights = torch.linspace(0, 1, steps)

        def run():
            a, b = self.encoder.encode([caption_a, caption_b])
            return self.sampler(torch.stack([torch.lerp(a, b, w) for w in weights]))

        return _MODEL_THREAD.submit(run).result(), weights.tolist()


def _packaged_model_path(name: str) -> Path:
    try:
        from sdn import pretrained  # packaged models: not in every version of sdn
    except ImportError:
        raise UserError(f"--model {name}: this version of sdn has no packaged models; give --checkpoint PATH instead") from None
    known = pretrained.list_models()
    if name not in known:
        raise UserError(f"--model {name!r} is not a packaged model; choose from: {', '.join(known) or 'none'}")
    return Path(pretrained.model_path(name))


def _label(path: str) -> str:
    """A run folder or file as the user typed it, without a trailing slash."""
    return str(Path(path))


def load_models(checkpoints: list[str], model_names: list[str], device: str | None = None) -> list[LoadedModel]:
    """Each given model once, with its text encoder (one instance per encoder name)."""
    sources = [(name, _packaged_model_path(name)) for name in model_names] + [(_label(p), Path(p)) for p in checkpoints]
    if not sources:
        raise UserError("give at least one model: --checkpoint PATH (run folder, .pt or generator.safetensors) or --model NAME")
    names = [name for name, _ in sources]
    if len(set(names)) != len(names):
        raise UserError(f"a model is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    dev = default_device(device)
    encoders: dict[str, TextEncoder] = {}
    models = []
    for name, path in sources:
        ckpt = load_checkpoint(path)
        config = ckpt["config"]
        if config["text_encoder"] not in encoders:
            encoders[config["text_encoder"]] = build_text_encoder(config["text_encoder"])
        encoder = encoders[config["text_encoder"]]
        if encoder.dim != config["text_dim"]:
            raise UserError(f"{name}: text encoder {encoder.name} gives {encoder.dim}-d vectors, the model expects {config['text_dim']}")
        generator = generator_from_checkpoint(ckpt).to(dev)
        models.append(LoadedModel(name, Sampler(generator, config.get("precision", "fp32"), True), encoder, config))
    return models


def _check_text(caption, what: str) -> str:
    if not isinstance(caption, str):
        raise UserError(f"{what} must be text")
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: what undecodable bytes become on the way in
        raise UserError(f"{what} is not valid UTF-8 text") from None
    if len(caption) > MAX_CHARS:
        raise UserError(f"{what} has {len(caption)} characters; at most {MAX_CHARS} are allowed")
    return caption


def parse_captions(text) -> list[str]:
    """The caption box: one caption per line, blank lines ignored."""
    if not isinstance(text, str):
        raise UserError("the captions must be text")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError("type a caption first: the caption box is empty")
    if len(lines) > MAX_CAPTIONS:
        raise UserError(f"{len(lines)} captions: at most {MAX_CAPTIONS} at a time (one per line)")
    return check_captions([_check_text(line, f"caption {i + 1}") for i, line in enumerate(lines)])


def parse_pair(caption_a, caption_b) -> tuple[str, str]:
    pair = []
    for what, caption in (("caption A", caption_a), ("caption B", caption_b)):
        caption = _check_text(caption, what)
        if not caption.strip():
            raise UserError(f"{what} is empty: interpolation needs two captions")
        pair.append(check_captions([caption])[0])
    return pair[0], pair[1]


def parse_steps(steps) -> int:
    try:
        value = float(steps)
    except (TypeError, ValueError):
        raise UserError("steps must be a whole number") from None
    if value != int(value):
        raise UserError("steps must be a whole number")
    if not 2 <= value <= MAX_STEPS:
        raise UserError(f"steps must be between 2 and {MAX_STEPS}, not {int(value)}")
    return int(value)
