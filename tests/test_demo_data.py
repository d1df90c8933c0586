import pytest
import torch

from sdn.data.demo_data import COLOURS, SHAPES, make_demo_data, held_out_classes
from sdn.evaluation.metrics import colour_accuracy


def test_demo_data_is_deterministic_and_class_disjoint():
    a, b = make_demo_data(32, seed=3), make_demo_data(32, seed=3)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert not torch.equal(a.images, make_demo_data(32, seed=4).images)
    train, test = a.subset("train"), a.subset("test")
    assert set(train.labels).isdisjoint(test.labels)
    assert set(test.labels) == held_out_classes()
    # zero-shot but learnable: every colour and every shape is seen in training
    assert {l.split()[0] for l in train.labels} == set(COLOURS)
    assert {l.split()[1] for l in train.labels} == set(SHAPES)
    for caps, attrs in zip(a.captions, a.attributes):
        assert len(caps) == 5 and len(set(caps)) > 1
        assert all(attrs["colour"] in c and attrs["shape"] in c for c in caps)


def test_colour_accuracy_scores_real_images_1_and_wrong_colours_0():
    data = make_demo_data(32, seed=0).subset("test")
    real = (data.images.float() / 255).unsqueeze(1)
    assert colour_accuracy(real, data)["colour_accuracy"] == 1.0
    grey = torch.full_like(real, 0.5)
    assert colour_accuracy(grey, data)["colour_accuracy"] == 0.0
    # paint every object with the next colour in the palette: all wrong
    names = list(COLOURS)
    wrong = real.clone()
    for i, attrs in enumerate(data.attributes):
        rgb = torch.tensor(COLOURS[names[(names.index(attrs["colour"]) + 1) % len(names)]]) / 255
        wrong[i, 0][:, data.masks[i]] = rgb[:, None]
    assert colour_accuracy(wrong, data)["colour_accuracy"] == 0.0


def test_flat_backgrounds_are_mid_grey_and_leave_objects_and_captions_as_they_were():
    flat, gradient = make_demo_data(32, seed=1, background="flat"), make_demo_data(32, seed=1)
    # the same objects, shades, places and captions: only the background differs
    assert flat.captions == gradient.captions and torch.equal(flat.masks, gradient.masks)
    # away from the objects' anti-aliased edges, flat backgrounds are exactly the grey and gradient ones are not
    # (Lanczos reaches 3 pixels past an edge at the drawn size)
    near_object = torch.nn.functional.max_pool2d(flat.masks[:, None].float(), 7, 1, 3)[:, 0].bool()
    far = ~near_object
    assert (flat.images.permute(0, 2, 3, 1)[far] == 128).all()
    assert (gradient.images.permute(0, 2, 3, 1)[far] != 128).float().mean() > 0.9
    # inside the objects, the same shades (Lanczos's ringing from the background reaches a few pixels in)
    inside = (-torch.nn.functional.max_pool2d(-flat.masks[:, None].float(), 7, 1, 3))[:, 0].bool()
    for i in range(0, len(flat), 7):
        a, b = (d.images[i].permute(1, 2, 0)[inside[i]] for d in (flat, gradient))
        if len(a):
            assert torch.equal(a.median(0).values, b.median(0).values)
    with pytest.raises(ValueError, match="background must be one of"):
        make_demo_data(32, background="noise")
