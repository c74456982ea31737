"""The CNN and its recipe: shapes, determinism and the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from revamper.experiments.model import Recipe, SmallCNN
from revamper.experiments.train import evaluate


def test_model_shape_and_size() -> None:
    model = SmallCNN()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert 150_000 < sum(p.numel() for p in model.parameters()) < 250_000


def test_same_seed_same_initial_weights() -> None:
    def weights() -> torch.Tensor:
        torch.manual_seed(4)
        model, _, _ = Recipe().build(steps_per_epoch=10, epochs=2)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(), weights())


def test_warmup_then_cosine_to_zero() -> None:
    recipe = Recipe(learning_rate=0.1, warmup_epochs=1)
    _, optimizer, scheduler = recipe.build(steps_per_epoch=10, epochs=5)
    rates = []
    for _ in range(50):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.01) and rates[9] == pytest.approx(0.1)
    assert rates[:10] == sorted(rates[:10])
    assert rates[10:] == sorted(rates[10:], reverse=True)
    assert rates[-1] < 0.001


def test_evaluate_counts_correct_answers() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        model[1].bias.zero_()
    inputs = torch.tensor([[[1.0, 0, 0, 0]], [[0, 1.0, 0, 0]], [[1.0, 0, 0, 0]]])
    accuracy, loss = evaluate(model, inputs, torch.tensor([0, 1, 1]), batch_size=2)
    assert accuracy == pytest.approx(2 / 3) and loss > 0
    assert not model.training
