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
