"""The worker processes: torch's ``DataLoader`` that runs them, and their ``worker_init_fn``.

The loader hands torch's public ``DataLoader`` its executing data set, its plan-carrying batch
sampler and its collate function; everything else is the user's ``DataLoader`` options.

torch's ``get_worker_info().dataset`` is the data set the ``DataLoader`` was given, which for
a :class:`RevamperLoader` is its
:class:`~revamper.loader.batch_execution.RefurbishingDataset`. A user's ``worker_init_fn``
that sets something on it (a per-worker file handle, a connection, a shard) must reach the
user's own data set, as it does with a plain ``DataLoader``. So the loader's own
``worker_init_fn`` first points the worker's :class:`~torch.utils.data.WorkerInfo` at the
wrapper's data set (the very object the worker's ``__getitem__`` calls use: its copy of the
user's data set in this process), then calls the user's function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch.utils.data
from torch.utils.data import DataLoader, default_collate

from revamper.loader.batch_execution import CollateWithStats, RefurbishingDataset
from revamper.loader.sampler import PlanBatchSampler
from revamper.loader.worker_start import StartLog


def build_dataloader(
    executor: RefurbishingDataset,
    sampler: PlanBatchSampler,
    *,
    collate_fn: Callable[[list[Any]], Any] | None,
    worker_init_fn: Callable[[int], None] | None,
    **options: Any,
) -> DataLoader[Any]:
    """The ``DataLoader`` that executes the plan: ``options`` are the user's ``DataLoader`` options.

    Its batches are ``(batch, stats, note, (epoch, number))`` (see :class:`CollateWithStats`).
    """
    return DataLoader(
        executor,
        batch_sampler=sampler,  # type: ignore[arg-type]
        collate_fn=cast(Any, CollateWithStats(collate_fn or default_collate)),
        worker_init_fn=WorkerInit(
            worker_init_fn, StartLog(options["num_workers"]) if options.get("num_workers") else None
        ),
        **options,
    )


class WorkerInit:
    """The loader's ``worker_init_fn``: show the user's data set, then run the user's function.

    Picklable (for the ``spawn`` and ``forkserver`` start methods) when ``user_fn`` is.

    Args:
        user_fn: The user's ``worker_init_fn``, or ``None``.
        start_log: Where the worker notes that it started, first of all (see
            :mod:`revamper.loader.worker_start`), or ``None``.
    """

    def __init__(
        self, user_fn: Callable[[int], None] | None, start_log: StartLog | None = None
    ) -> None:
        self.user_fn = user_fn
        self.start_log = start_log

    def __call__(self, worker_id: int) -> None:
        """Runs in worker ``worker_id`` once, before its first batch."""
        if self.start_log is not None:
            self.start_log.record(worker_id)
        info = torch.utils.data.get_worker_info()
        if info is not None and isinstance(info.dataset, RefurbishingDataset):
            # WorkerInfo is frozen once made (a frozen dataclass in recent torch, a guarded
            # __setattr__ before): object.__setattr__ is how its own constructor sets it.
            object.__setattr__(info, "dataset", info.dataset.dataset)
        if self.user_fn is not None:
            self.user_fn(worker_id)
