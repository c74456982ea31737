"""A batch's augmentations are a pure function of its place in the run.

The transforms' generators are seeded for every batch from the run's seed, the epoch, the rank
and the batch's position, so the augmented batches do not depend on the number of workers, on
persistent workers, or on a resume; in the main process the training loop's generators are
left as they were.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from revamper import RevamperLoader

N, BATCH, EPOCHS = 24, 4, 3


def draw(x: int) -> tuple[int, float, float, int]:
    """A final transform drawing from all three global generators."""
    return (x, torch.rand(()).item(), float(np.random.random()), random.randrange(10**9))


def run(
    num_workers: int, *, persistent: bool = False, resume_after: int | None = None
) -> list[list[tuple[int, float, float, int]]]:
    def make() -> RevamperLoader:
        return RevamperLoader(
            list(range(N)),
            batch_size=BATCH,
            shuffle=True,
            seed=7,
            reuse_factor=2,
            final_transform=draw,
            collate_fn=list,
            num_workers=num_workers,
            persistent_workers=persistent and num_workers > 0,
        )

    batches: list[list[tuple[int, float, float, int]]] = []
    loader = make()
    try:
        for _ in range(EPOCHS):
            for batch in loader:
                batches.append(batch)
                if resume_after is not None and len(batches) == resume_after:
                    state = loader.state_dict()
                    loader.close()
                    loader = make()
                    loader.load_state_dict(state)
                    break
            if resume_after is not None and len(batches) == resume_after:
                for batch in loader:  # the rest of the interrupted epoch
                    batches.append(batch)
    finally:
        loader.close()
    return batches


@pytest.mark.slow
def test_augmentations_do_not_depend_on_workers_or_a_resume() -> None:
    reference = run(0)
    assert len(reference) == EPOCHS * N // BATCH
    assert len({sample[1] for batch in reference for sample in batch}) == EPOCHS * N  # random
    assert run(2) == reference
    assert run(2, persistent=True) == reference
    assert run(2, resume_after=8) == reference  # mid-epoch (epoch 1, batch 2)
    assert run(0, resume_after=6) == reference  # after an epoch's last batch


def test_the_main_process_keeps_its_own_randomness() -> None:
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    run(0)
    assert torch.equal(torch.rand(3), expected)
