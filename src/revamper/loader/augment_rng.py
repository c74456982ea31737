"""The random generators the transforms draw from, seeded once per batch.

With a plain ``DataLoader`` the augmentations a sample gets depend on which worker happens to
process it and on how many batches that worker processed before, so they change with
``num_workers``, with ``persistent_workers`` and after a resume. revamper seeds torch's, numpy's
and Python's global generators at the start of every batch from
:func:`~revamper.plan.seeding.batch_seed` (the run's seed, the epoch, the rank and the batch's
position), so a batch's augmentations are a pure function of its place in the run: a resumed run
yields exactly the batches of the uninterrupted one, augmentations included.

In a worker process the generators belong to the loader, as they belong to DataLoader's worker
loop. In the main process (``num_workers=0``) they belong to the training loop (dropout, random
initialisation): there the previous states are put back after the batch, so the loader neither
consumes nor resets the training loop's randomness.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.utils.data

_NUMPY_SEED_MODULUS = 2**32


def _seed_all(seed: int) -> None:
    # The CPU generator only: torch.manual_seed would also reset the accelerators' generators,
    # which belong to the training loop (dropout on the GPU) and are not saved and restored.
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % _NUMPY_SEED_MODULUS)


@contextlib.contextmanager
def seeded_augmentation(seed: int | None) -> Iterator[None]:
    """Run the body with the global generators seeded with ``seed`` (``None``: untouched)."""
    if seed is None:
        yield
        return
    if torch.utils.data.get_worker_info() is not None:
        _seed_all(seed)
        yield
        return
    saved = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    _seed_all(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])
