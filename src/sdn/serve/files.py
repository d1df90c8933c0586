"""Drawings handed to Gradio as PNG files written atomically.

Gradio saves an image it is given as an array to a file named by the hash of its bytes, with a
plain truncating write: when two requests draw the same caption at once (a deterministic model
draws identical images), one request can be served the file while the other rewrites it, and the
browser or client gets a truncated PNG (seen with 16 concurrent API clients). A file given by its
path is instead copied into Gradio's cache under a temporary name and renamed, so this module
writes each PNG the same way and hands Gradio the path. The files are needed only until Gradio has
copied them; each `save` removes those unused for a while.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from sdn.utils import atomic_write

from sdn.sampling import to_uint8


def to_pixels(image: torch.Tensor):
    """(3, H, W) floats in [0, 1] -> (H, W, 3) uint8 array, quantised as every file sdn writes."""
    return to_uint8(image).permute(1, 2, 0).numpy()


class PngFiles:
    def __init__(self, max_age_s: float = 300.0):
        self.dir = Path(tempfile.mkdtemp(prefix="sdn-serve-"))
        self.max_age_s = max_age_s
        self._last_prune = time.monotonic()
        atexit.register(shutil.rmtree, self.dir, True)

    def save(self, image: torch.Tensor) -> str:
        """(3, H, W) image in [0, 1] -> path of its PNG (one file per distinct image)."""
        buffer = io.BytesIO()
        Image.fromarray(to_pixels(image)).save(buffer, format="png")
        data = buffer.getvalue()
        path = self.dir / f"{hashlib.sha256(data).hexdigest()[:20]}.png"
        self._prune()
        if path.exists():
            os.utime(path)  # in use again: not to be pruned now
        else:
            atomic_write(path, lambda f: f.write(data))
        return str(path)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.max_age_s / 4:
            return
        self._last_prune = now
        cutoff = time.time() - self.max_age_s
        for p in self.dir.iterdir():
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except FileNotFoundError:
                pass
