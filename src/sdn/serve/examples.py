"""Captions and real images from a prepared cache (`sdn serve --data CACHE`): example captions of
the unseen test classes, the real image of a caption drawn from the cache, random test captions
for the ranking page."""

from __future__ import annotations

import random

import torch

from sdn.data.cache import load_cache
from sdn.errors import UserError
from sdn.sampling import one_per_class


def _normal(caption: str) -> str:
    return " ".join(caption.split()).lower()


class CaptionSource:
    def __init__(self, cache: str):
        self.data = load_cache(cache)  # images memory-mapped: only those shown are read
        self.test = [i for i, s in enumerate(self.data.split) if s == "test"]
        if not self.test:
            raise UserError(f"the cache {cache} has no test (unseen-class) images")
        # Every caption of the cache, so that any caption typed or picked finds its image.
        self.by_caption = {}
        for i, captions in enumerate(self.data.captions):
            for c in captions:
                self.by_caption.setdefault(_normal(c), i)

    def examples(self, count: int = 8) -> list[str]:
        """The first caption of test images, one class after another."""
        labels = [self.data.labels[i] for i in self.test]
        return [self.data.captions[self.test[j]][0] for j in one_per_class(labels, count)]

    def real_image(self, caption: str) -> tuple[torch.Tensor, str] | None:
        """((3, H, W) floats in [0, 1], its class) for a caption of the cache, else None."""
        i = self.by_caption.get(_normal(caption))
        return None if i is None else (self.image(i), self.data.labels[i])

    def image(self, index: int) -> torch.Tensor:
        return self.data.images[index].float() / 255

    def random_test_caption(self, rng: random.Random) -> tuple[int, str]:
        """(image index, one of its captions) from the unseen test classes."""
        index = rng.choice(self.test)
        return index, rng.choice(self.data.captions[index])
