"""Seed policy: where a loader's seed comes from, and when it may give way to another.

In order, the first that applies:

1. an explicit ``seed`` argument (the workers' generator is then seeded from it, and from the
   rank under distributed training, so that ranks draw different augmentations);
2. under distributed training, rank 0's seed for every rank (carried by the agreement's
   all-gather);
3. with a persistent cache (``cache="disk"``), the seed of a matching cache already in
   ``cache_dir``, so that a restart keeps the cache (torch's RNG is still drawn from, so what
   the program draws next stays repeatable);
4. a seed drawn from ``generator`` or torch's global RNG (as torch's ``RandomSampler`` draws
   one, so ``torch.manual_seed()`` makes runs without a seed repeatable).

Later, :meth:`RevamperLoader.load_state_dict` may adopt a loaded state's seed
(:meth:`SeedPolicy.may_adopt`): only a drawn seed, before the loader ran an epoch, and not with a
persistent cache (its entries belong to the seed they were made with).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from revamper.distributed import agree
from revamper.loader.config import LoaderConfig
from revamper.loader.store_setup import is_persistent, persisted_seed, persists
from revamper.plan.seeding import Purpose, derive_seed
from revamper.store.base import CacheStore

logger = logging.getLogger(__name__)


def draw_seed(generator: torch.Generator | None) -> int:
    """A seed from ``generator`` or torch's global RNG (as torch's ``RandomSampler`` draws one)."""
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


@dataclasses.dataclass(frozen=True)
class SeedChoice:
    """The run's seed and the workers' generator."""

    seed: int
    generator: torch.Generator | None


class SeedPolicy:
    """Settles a loader's seed (at construction) and says when a state's seed may replace it.

    Args:
        generator: The loader's ``generator`` argument.
        given: Whether the user passed the seed (a drawn one may give way to a loaded state's).
    """

    def __init__(self, generator: torch.Generator | None, *, given: bool) -> None:
        self._generator = generator
        self.given = given

    def settle(self, config: LoaderConfig, cache: Any) -> SeedChoice:
        """The run's seed for ``config``; under ``torch.distributed``, also check the ranks agree.

        Under ``torch.distributed`` this is a collective: the ranks compare ``config``'s
        agreement record.

        Args:
            config: The run's identity, with the ``seed`` argument (``None`` or an int).
            cache: The ``cache`` argument (a kind, or a store).

        Raises:
            ValueError: Without a seed, with ``rank`` and ``world_size`` but no process group.
            DistributedSetupError: On every rank, if the ranks disagree.
        """
        setup, seed, generator = config.setup, config.seed, self._generator
        found: list[int | None] = [None]  # the seed of a matching persistent cache, if read
        if setup.communicate:
            fields, group = config.agreement()
            drawn = self._default(config, cache, found) if seed is None else 0
            seed = agree(setup, fields, group, drawn_seed=drawn)
        elif seed is None and setup.distributed:
            raise ValueError(
                "seed is required with rank and world_size but no torch.distributed process "
                "group (the ranks must share it, and cannot agree on one without communicating)"
            )
        if seed is None:
            seed = self._default(config, cache, found)
        elif generator is None:
            generator = torch.Generator()
            generator.manual_seed(
                derive_seed(seed, Purpose.RANK, setup.rank) if setup.distributed else seed
            )
        if not self.given and seed == found[0]:
            logger.info(
                "seed=None: reusing seed %d, that of the disk cache in %s", seed, config.cache_dir
            )
        return SeedChoice(seed, generator)

    def _default(self, config: LoaderConfig, cache: Any, found: list[int | None]) -> int:
        """A persistent cache's seed (kept in ``found``), else a drawn one."""
        # NOTE: draw even when a cache's seed is reused: torch's RNG then advances as it always
        # does, and model initialisation after this stays repeatable.
        drawn = draw_seed(self._generator)
        if persists(cache) and config.cache_dir is not None:
            found[0] = persisted_seed(config.cache_dir, config.cache_identity(seed=0), config.setup)
        return drawn if found[0] is None else found[0]

    def may_adopt(self, *, epochs_run: int, store: CacheStore | None) -> bool:
        """Whether a loaded state's (other) seed may replace the loader's.

        Only a seed the loader drew itself (``seed=None``) gives way, before the loader ran any
        epoch (its cache would hold another plan's entries), and not when a persistent cache
        was made for it (likewise).
        """
        return not self.given and epochs_run == 0 and not is_persistent(store)
