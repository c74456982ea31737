"""The model and its training recipe: identical in every arm.

A small CNN (two 3x3 conv blocks with batch norm and max pooling, then a 128-unit hidden layer
with dropout; about 207k parameters), trained with SGD (Nesterov momentum 0.9, weight decay
5e-4) at batch size 64, with a one-epoch linear warm-up to the peak learning rate and a cosine
decay to zero at the end of the last epoch. One training step on a batch of 64 costs about
20 ms on one core of the reference machine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(16) - BN - ReLU - pool - conv(32) - BN - ReLU - pool - fc(128) - dropout - fc(10)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) for a batch of ``(n, 1, 28, 28)`` images."""
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


def _digits_cnn(dropout: float) -> nn.Module:
    return SmallCNN(dropout=dropout)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the model is trained (the same for every arm).

    Attributes:
        batch_size: Samples per step.
        learning_rate: Peak learning rate.
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 weight decay.
        warmup_epochs: Epochs of linear warm-up from 0 to the peak learning rate.
        dropout: Dropout before the last layer.
        warmup_steps: Warm-up length in steps instead of epochs, when set (the sweep keeps it
            fixed while the epochs change with the training-set size).
    """

    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    dropout: float = 0.25
    warmup_steps: int | None = None

    def build(
        self,
        steps_per_epoch: int,
        epochs: int,
        model_factory: Callable[[float], nn.Module] | None = None,
    ) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """A fresh model, its optimiser and its per-step learning-rate schedule.

        Seed torch's RNG first (the initial weights are drawn from it).

        Args:
            steps_per_epoch: Optimisation steps per epoch.
            epochs: Epochs of the run.
            model_factory: Builds the model from the dropout rate (the digits' CNN by default).
        """
        model = (model_factory or _digits_cnn)(self.dropout)
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=self.learning_rate,
            momentum=self.momentum,
            nesterov=True,
            weight_decay=self.weight_decay,
        )
        total = max(1, steps_per_epoch * epochs)
        wanted = self.warmup_steps
        if wanted is None:
            wanted = round(self.warmup_epochs * steps_per_epoch)
        warmup = min(total - 1, wanted)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return model, optimizer, scheduler
