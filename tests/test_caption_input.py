"""The "paraphrase" text scaling: G reads a caption only along the directions in which different
images' captions differ more than one image's captions do (sdn.networks.caption_input)."""

import pytest
import torch

from sdn.data.demo_data import make_demo_data
from sdn.errors import UserError
from sdn.networks.caption_input import StandardisedCaptions, paraphrase_directions
from sdn.training.checkpoint import (
    export_generator,
    generator_from_checkpoint,
    load_checkpoint,
    load_export,
)
from sdn.training.loop import training_loop

# A bag of colour words: an image's captions agree on its colour, so there is a meaning to keep.
TINY = dict(teacher="efficientnet-lite0", text_encoder="test-colour", fc_dim=32, batch_size=8, progress=False)


def _paraphrased(images: int = 4000, captions: int = 4, seed: int = 0) -> torch.Tensor:
    """(images, captions, 6) vectors: dims 0-1 carry the image's meaning (shared by its captions), dims
    2-3 the wording (each caption its own), dims 4-5 never move. The wording is loud enough that even the
    image means vary more along it (9 / 4) than along the meaning (1): the image means' own principal
    axes would be the wording's."""
    g = torch.Generator().manual_seed(seed)
    meaning = torch.randn(images, 1, 2, generator=g).expand(images, captions, 2)
    wording = 3 * torch.randn(images, captions, 2, generator=g)
    return torch.cat([meaning, wording, torch.full((images, captions, 2), 7.0)], -1)


def test_paraphrase_directions_keep_the_meaning_and_drop_the_wording():
    x = _paraphrased()
    projection = paraphrase_directions(x)
    assert projection.shape == (6, 6)
    kept = projection.abs().sum(0) > 0
    assert kept.sum() == 2 and not projection[:, ~kept].any()  # two meaning directions, zero columns after them
    flat = x.flatten(0, 1)
    read = (flat - flat.mean(0)) @ projection[:, kept]
    assert read.std(0).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)  # unit spread over the training captions
    # A new wording moves the read vector little; a new meaning moves it a lot. So does a direction
    # no training caption ever moved (a word the training sentences never used): not at all.
    step = torch.eye(6)
    moved = step @ projection[:, kept]
    assert moved[2:4].norm(dim=1).max() < 0.2 * moved[:2].norm(dim=1).min()
    assert moved[4:].norm(dim=1).max() < 0.05 * moved[:2].norm(dim=1).min()
    with pytest.raises(ValueError, match="at least two captions per training image"):
        paraphrase_directions(x[:, :1])
    with pytest.raises(ValueError, match="found no direction in which different images' captions differ more"):
        paraphrase_directions(torch.randn(40, 4, 6, generator=torch.Generator().manual_seed(0)))  # captions unrelated to their image


def test_a_network_reads_captions_through_the_projection_only_when_built_for_it():
    x = _paraphrased()
    with_projection = StandardisedCaptions()
    with_projection.register_caption_statistics(6, projection=True)
    with_projection.set_text_statistics(x, "paraphrase")
    flat = x.flatten(0, 1)
    assert torch.allclose(with_projection.standardise_text(flat), (flat - flat.mean(0)) @ paraphrase_directions(x), atol=1e-5)
    plain = StandardisedCaptions()
    plain.register_caption_statistics(6)
    with pytest.raises(ValueError, match="does not fit a network built without"):
        plain.set_text_statistics(x, "paraphrase")
    with pytest.raises(ValueError, match="does not fit a network built with"):
        with_projection.set_text_statistics(x, "dimension")


def test_paraphrase_scaling_trains_saves_exports_and_refuses_what_it_cannot_use(tmp_path):
    data = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=3)
    data = data.take(list(range(0, len(data), 18)))
    path = training_loop(data, tmp_path / "run", stage1_epochs=1, stage2_epochs=0, text_scaling="paraphrase", **TINY)
    ckpt = load_checkpoint(path)
    assert ckpt["config"]["text_scaling"] == "paraphrase"
    assert ckpt["generator"]["text_projection"].abs().sum() > 0
    generator = generator_from_checkpoint(ckpt)
    text = torch.randn(2, ckpt["config"]["text_dim"])
    with torch.no_grad():
        drawn = generator(text)[0]
        exported = generator_from_checkpoint(load_export(export_generator(generator, ckpt["config"], tmp_path / "g.safetensors")))
        assert torch.equal(exported(text)[0], drawn)  # the projection travels with the export
    with pytest.raises(UserError, match="text_scaling='paraphrase' but this run has text_scaling='dimension'"):
        training_loop(data, tmp_path / "run", stage1_epochs=2, stage2_epochs=0, resume=path, text_scaling="dimension", **TINY)
    one_caption = make_demo_data(32, seed=0, backgrounds_per_layout=1, captions_per_image=1)
    with pytest.raises(UserError, match="needs at least two captions per training image"):
        training_loop(one_caption.take(list(range(0, len(one_caption), 18))), tmp_path / "one", text_scaling="paraphrase", **TINY)
