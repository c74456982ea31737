"""Which items to measure, and random state that measuring leaves as it found it.

Profiling applies random transforms hundreds of times. Run from
:meth:`~revamper.loader.RevamperLoader.from_pipeline`, that must not advance the user's random
streams (their training run would change) and should give the same recommendation for the same
seed, so every measurement runs inside :func:`isolated_rng`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and torch's global generators, and restore them afterwards.

    Args:
        seed: The seed for the duration of the block.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, as DataLoader workers do, and restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sample_indices(num_samples: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices of ``range(num_samples)`` drawn with ``seed`` (all, if fewer).

    Raises:
        ValueError: If ``num_samples`` or ``count`` is below 1.
    """
    if num_samples < 1:
        raise ValueError("the data set is empty: there is nothing to measure")
    if count < 1:
        raise ValueError(f"the number of items to measure must be at least 1, got {count}")
    if count >= num_samples:
        return list(range(num_samples))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(num_samples, size=count, replace=False))
