"""The demo's measurements: the shape classifier (real images, blobs, empty images), position accuracy, and the
held-out phrasings (really absent from every training caption)."""

import pytest
import torch

from sdn.data.demo_data import COLOURS, POSITIONS, make_demo_data
from sdn.data.demo_phrasings import HELD_OUT_SHAPE_WORDS, held_out_captions, phrases_found_in
from sdn.evaluation.metrics import object_centres, position_accuracy, shape_accuracy
from sdn.networks.shape_classifier import CLASSES, NO_SHAPE, classify_shapes, empty_images, gaussian_blobs, load_or_train


@pytest.fixture(scope="module")
def classifier(module_tmp):
    folder = module_tmp("cache")
    net, record = load_or_train(folder)
    return net, record, folder


@pytest.fixture(scope="module")
def test_split():
    return make_demo_data(64, seed=0).subset("test")


def test_shape_classifier_names_the_shapes_of_real_unseen_pair_images(classifier, test_split):
    net, _, _ = classifier
    names, _ = classify_shapes(net, test_split.images.float() / 255)
    hits = sum(n == a["shape"] for n, a in zip(names, test_split.attributes))
    assert hits / len(names) >= 0.97  # images of a seed it never trained on, colour-shape pairs as in the demo's test split
    assert names.count(NO_SHAPE) <= 0.01 * len(names)  # a real shape is not refused
    # shape_accuracy scores real images as the classifier's own accuracy
    result = shape_accuracy((test_split.images.float() / 255)[:, None], test_split, net)
    assert result["shape_accuracy"] == result["shape_accuracy_of_real_images"] == hits / len(names)


def test_shape_classifier_calls_gaussian_blobs_of_every_colour_and_empty_images_no_shape(classifier):
    net, record, _ = classifier
    blobs, colours = gaussian_blobs(60, seed=123)  # a seed neither training nor the recorded check used
    names, _ = classify_shapes(net, blobs.float() / 255)
    for colour in COLOURS:
        mine = [n for n, c in zip(names, colours) if c == colour]
        assert mine.count(NO_SHAPE) >= 0.9 * len(mine), (colour, mine)
    check = record["no_shape_check"]
    assert check["blobs_called_no_shape"] >= 0.95 and set(check["per_colour"]) == set(COLOURS)
    empty, _ = classify_shapes(net, empty_images(40, seed=123).float() / 255)
    assert empty.count(NO_SHAPE) >= 36 and check["empty_or_noise_called_no_shape"] >= 0.9
    # as drawings, blobs score no shape at all
    data = make_demo_data(64, seed=0).take(list(range(60)))
    assert shape_accuracy((blobs.float() / 255)[:, None], data, net)["called_no_shape"] >= 0.9


def test_shape_classifier_is_cached_and_reloaded(classifier):
    net, record, folder = classifier
    again, record_again = load_or_train(folder)  # from the cache: no training
    assert record_again == record and CLASSES[-1] == NO_SHAPE
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_position_accuracy_of_real_and_mirrored_images(test_split):
    real = (test_split.images.float() / 255)[:, None]
    assert position_accuracy(real, test_split)["position_accuracy"] == 1.0
    # Mirrored left-right, only the middle column's objects stay in their cells: 3 of the 9 positions.
    mirrored = position_accuracy(real.flip(-1), test_split)["position_accuracy"]
    assert mirrored == pytest.approx(3 / len(POSITIONS))
    assert position_accuracy(torch.full_like(real, 0.5), test_split)["position_accuracy"] == 0.0
    assert object_centres(torch.full((1, 3, 64, 64), 0.5)) == [None]


def test_held_out_phrasings_never_occur_in_training_captions():
    for seed in (0, 1, 2):
        data = make_demo_data(32, seed=seed)
        every_caption = [c for caps in data.captions for c in caps]
        assert phrases_found_in(every_caption) == []
        test = data.subset("test")
        held_out, synonym = held_out_captions(test.attributes, seed)
        assert not set(held_out) & set(every_caption)
        assert all(a["colour"] in c.lower() for c, a in zip(held_out, test.attributes))
        assert 0.4 < sum(synonym) / len(synonym) < 0.6
        for c, a, s in zip(held_out, test.attributes, synonym):
            assert (HELD_OUT_SHAPE_WORDS[a["shape"]] in c) == s
    # the check can fail: a caption using held-out words is caught
    found = phrases_found_in(["A red rhombus in the centre of the image", "a box"])
    assert {"rhombus", "in the centre of the image", "box"} <= set(found)
