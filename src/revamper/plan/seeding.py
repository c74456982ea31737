"""Independent random streams derived from (seed, epoch, purpose).

Every random decision of the planner draws from its own stream, keyed by the run's seed, the epoch
and a constant *tag* naming the purpose. A plan is therefore a pure function of (config, epoch),
and changing how one purpose consumes randomness never shifts the draws of another.

The key is laid out as fixed-width 32-bit words (seed: 2 words, epoch: 2 words, tag: 1 word)
before it reaches :class:`numpy.random.SeedSequence`. Passing the Python ints directly would let
two different keys collide, because ``SeedSequence`` splits each int into as many 32-bit words as
it needs and pads short entropy with zeros (``[s, 0]`` and ``[s]`` seed the same stream).
"""

from __future__ import annotations

import enum

import numpy as np

_WORD = 2**32
_SEED_MODULUS = 2**64


class Purpose(enum.IntEnum):
    """The tag of each random stream. Values are part of the plan's definition: never reuse one."""

    EVICTION = 1
    """The run-wide permutation that assigns samples to eviction chunks (no epoch)."""
    DROP = 2
    """Which samples an epoch drops under ``drop_last``."""
    ORDER = 3
    """The epoch's order of consumption."""
    PARTITION = 4
    """The run-wide split of the data set between cache groups (machines or ranks)."""
    GROUP = 5
    """A cache group's own seed, from which its eviction chunks and streams derive."""
    RANK = 6
    """A rank's own seed, from which its order derives."""
    PAD = 7
    """Which samples a cache group repeats to give every rank the same number of samples."""
    DEAL = 8
    """How a cache group deals its epoch's samples to its ranks."""
    AUGMENT = 9
    """The random augmentations of one batch (the transforms' RNGs, seeded per batch)."""


def normalise_seed(seed: int) -> int:
    """Reduce any Python int to the 64-bit seed actually used (``seed mod 2**64``)."""
    return seed % _SEED_MODULUS


def generator(seed: int, purpose: Purpose, epoch: int = 0) -> np.random.Generator:
    """Return a fresh generator for one purpose of one epoch of a run.

    Args:
        seed: The run's seed, any Python int (reduced modulo 2**64).
        purpose: What the stream is for.
        epoch: The epoch, 0 to 2**64 - 1; run-wide purposes pass 0.

    Returns:
        A PCG64 generator; equal arguments always give identical streams.
    """
    s = normalise_seed(seed)
    entropy = [s % _WORD, s // _WORD, epoch % _WORD, (epoch // _WORD) % _WORD, int(purpose)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def derive_seed(seed: int, purpose: Purpose, number: int) -> int:
    """A 64-bit seed for one member (a group, a rank) of a run, independent of the others.

    Args:
        seed: The run's seed, any Python int.
        purpose: :attr:`Purpose.GROUP` or :attr:`Purpose.RANK`.
        number: The group or rank number (>= 0).
    """
    s = normalise_seed(seed)
    entropy = [s % _WORD, s // _WORD, number % _WORD, number // _WORD, int(purpose)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int(state[0]) | int(state[1]) << 32


def batch_seed(seed: int, epoch: int, rank: int, batch: int) -> int:
    """A 64-bit seed for the augmentations of one batch of one rank in one epoch.

    The transforms of a batch draw from RNGs seeded with it, so what a batch holds is a pure
    function of the run's seed and the batch's place in the run: the same with any number of
    workers, persistent or not, and after a resume.

    Args:
        seed: The run's seed, any Python int.
        epoch: The epoch (0 to 2**64 - 1).
        rank: The rank (>= 0).
        batch: The batch's position in the epoch (>= 0).
    """
    s = normalise_seed(seed)
    entropy = [
        s % _WORD,
        s // _WORD,
        epoch % _WORD,
        (epoch // _WORD) % _WORD,
        batch % _WORD,
        (batch // _WORD) % _WORD,
        rank % _WORD,
        int(Purpose.AUGMENT),
    ]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int(state[0]) | int(state[1]) << 32
