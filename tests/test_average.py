"""The moving average of the generator's weights (sdn.training.average)."""

import pytest
import torch

from sdn.training.average import average_entries, drawing_generator, weight_average


def test_the_average_copies_first_then_moves_one_minus_decay_of_the_way():
    model = torch.nn.Linear(1, 1, bias=False)
    assert weight_average(model, 0.0) is None and drawing_generator(model, None) is model  # the paper: no average
    average = weight_average(model, 0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update_parameters(model)
    assert average.module.weight.item() == pytest.approx(1.0)
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update_parameters(model)
    assert average.module.weight.item() == pytest.approx(1.0 + 0.1 * (3.0 - 1.0))
    assert drawing_generator(model, average) is average.module
    restored = weight_average(torch.nn.Linear(1, 1, bias=False), 0.9, average_entries(average))
    assert restored.module.weight.item() == pytest.approx(1.2) and int(restored.n_averaged) == 2
