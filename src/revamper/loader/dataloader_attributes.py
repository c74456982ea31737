"""The attributes of torch's ``DataLoader`` that code reads from a loader, on a RevamperLoader.

Frameworks and training scripts read a loader's settings: ``loader.batch_size`` for logging or
a learning-rate rule, ``loader.num_workers``, ``loader.collate_fn`` ... A drop-in replacement
answers them as ``DataLoader`` does. They are read-only: the loader builds its worker-running
``DataLoader`` when it is made, so a value set later would change nothing (an error says so,
where a ``DataLoader`` would let some be set before its first epoch).

Not offered: ``worker_init_fn`` and ``generator``, which frameworks set or read to seed the
workers (Lightning's ``seed_everything(workers=True)`` sets a ``worker_init_fn`` it finds to be
``None``); the loader seeds its workers and transforms itself, from its ``seed``. Reading
them raises an ``AttributeError`` (so ``hasattr`` is false and such code leaves the loader
alone), and so does setting them, which a ``DataLoader`` would honour at its next epoch and
the loader would silently ignore: pass them when the loader is made. And
``sampler`` and ``batch_sampler``: the loader's plan orders and batches the samples, so there
is no sampler that code could reuse (Accelerate's ``skip_first_batches`` builds a new
``DataLoader`` from it, which would bypass the cache); they raise an ``AttributeError`` that
says what to do instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NoReturn

from torch.utils.data import DataLoader

__all__ = ["DataLoaderAttributes", "DataLoaderSettings"]

_NO_SAMPLER = (
    "RevamperLoader has no {name}: its plan orders and batches the samples (shuffle, seed, "
    "the reuse plan), and a DataLoader built from a sampler would bypass the cache. To resume "
    "mid-epoch use loader.state_dict() / load_state_dict() (not skip_first_batches); under "
    "torch.distributed the loader shards by rank itself (no DistributedSampler needed)."
)

_NOT_AN_ATTRIBUTE = (
    "RevamperLoader's {name} is neither readable nor settable: the loader seeds its workers and "
    "its transforms itself, from its seed, when it is made; pass {name}= to RevamperLoader "
    "instead (a value set afterwards would be ignored)"
)


@dataclasses.dataclass(frozen=True)
class DataLoaderSettings:
    """The user's ``DataLoader`` options as the worker-running ``DataLoader`` took them."""

    batch_size: int
    drop_last: bool
    num_workers: int
    collate_fn: Callable[[list[Any]], Any]
    pin_memory: bool
    timeout: float
    multiprocessing_context: Any
    prefetch_factor: int | None
    persistent_workers: bool
    pin_memory_device: str

    @classmethod
    def of(
        cls,
        dataloader: DataLoader[Any],
        *,
        batch_size: int,
        drop_last: bool,
        collate_fn: Callable[[list[Any]], Any],
    ) -> DataLoaderSettings:
        """Read them from ``dataloader``; the first three are the user's own (it wraps them)."""
        return cls(
            batch_size=batch_size,
            drop_last=drop_last,
            num_workers=dataloader.num_workers,
            collate_fn=collate_fn,
            pin_memory=dataloader.pin_memory,
            timeout=dataloader.timeout,
            multiprocessing_context=dataloader.multiprocessing_context,
            prefetch_factor=dataloader.prefetch_factor,
            persistent_workers=dataloader.persistent_workers,
            pin_memory_device=dataloader.pin_memory_device,
        )


class _Withheld:
    """A DataLoader attribute the loader neither shows nor takes: reading and setting it raise.

    Reading raises ``AttributeError``, so ``hasattr`` is false and frameworks leave it alone;
    setting raises too, since a value set after construction would be ignored (see the module).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        raise AttributeError(_NOT_AN_ATTRIBUTE.format(name=self.name))

    def __set__(self, instance: object, value: Any) -> NoReturn:
        raise AttributeError(_NOT_AN_ATTRIBUTE.format(name=self.name))


class DataLoaderAttributes:
    """``DataLoader``'s read-only attributes, from the loader's :class:`DataLoaderSettings`."""

    _settings: DataLoaderSettings

    @property
    def batch_size(self) -> int:
        """Samples per batch."""
        return self._settings.batch_size

    @property
    def drop_last(self) -> bool:
        """Whether an epoch's last, short batch is dropped."""
        return self._settings.drop_last

    @property
    def num_workers(self) -> int:
        """Worker processes (0: batches are built in this process)."""
        return self._settings.num_workers

    @property
    def collate_fn(self) -> Callable[[list[Any]], Any]:
        """The collate function (``default_collate`` unless one was given)."""
        return self._settings.collate_fn

    @property
    def pin_memory(self) -> bool:
        """Whether batches are copied into pinned memory."""
        return self._settings.pin_memory

    @property
    def timeout(self) -> float:
        """Seconds to wait for a batch from a worker (0: no limit)."""
        return self._settings.timeout

    @property
    def multiprocessing_context(self) -> Any:
        """The workers' start method, as ``DataLoader`` reports it."""
        return self._settings.multiprocessing_context

    @property
    def prefetch_factor(self) -> int | None:
        """Batches each worker builds ahead (``None`` without workers)."""
        return self._settings.prefetch_factor

    @property
    def persistent_workers(self) -> bool:
        """Whether the workers stay alive between epochs."""
        return self._settings.persistent_workers

    @property
    def pin_memory_device(self) -> str:
        """The device pinned memory is for (``""``: the current accelerator)."""
        return self._settings.pin_memory_device

    worker_init_fn = _Withheld("worker_init_fn")
    generator = _Withheld("generator")

    @property
    def sampler(self) -> NoReturn:
        """Not available: see the module (an ``AttributeError`` saying what to do)."""
        raise AttributeError(_NO_SAMPLER.format(name="sampler"))

    @property
    def batch_sampler(self) -> NoReturn:
        """Not available: see the module (an ``AttributeError`` saying what to do)."""
        raise AttributeError(_NO_SAMPLER.format(name="batch_sampler"))
