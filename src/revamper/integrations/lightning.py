"""PyTorch Lightning: keep every RevamperLoader's epoch equal to the trainer's.

A RevamperLoader counts its epochs itself (one iterator that yields a batch is one epoch), which
is right for a plain loop and for an uninterrupted Lightning run, but a new process resuming
from a checkpoint starts counting at 0. What Lightning does about loaders on resume (2.x):

- it saves ``loader.state_dict()`` in every checkpoint (the fit loop's ``combined_loader``
  entry: Lightning sees the loader's ``state_dict``/``load_state_dict``), but calls
  ``load_state_dict`` only when the checkpoint was taken inside an epoch (the loop is
  "restarting"); from an end-of-epoch checkpoint (what ``ModelCheckpoint`` saves by default) the
  loader state is ignored;
- it tells samplers the epoch through ``loader.sampler.set_epoch`` only, which a RevamperLoader
  does not have (it is not a ``DataLoader``; the order is its own plan);
- it calls ``train_dataloader()`` before it has counted the finished epoch, so
  ``trainer.current_epoch`` there is still the checkpoint's last epoch, not the one to run.

So from an end-of-epoch checkpoint the resumed run would replay epoch 0's plan (order and miss
plan) instead of epoch k's. :class:`RevamperCallback` sets the epoch at the start of training
and of every training epoch, when ``trainer.current_epoch`` is the epoch about to run; from a
mid-epoch checkpoint Lightning itself restores the loader's position, which setting the same
epoch keeps (and from a checkpoint taken after an epoch's last batch, which Lightning resumes
with the next epoch, the callback moves the loader on to it). Either way the resumed run yields
exactly the batches (samples and miss plan) of the uninterrupted run.

Under DDP there is one more gap: Lightning writes the checkpoint on rank 0 only, with rank 0's
loader state, and on resume hands that state to every rank; a RevamperLoader refuses another
rank's state (its plan differs), so a mid-epoch resume would fail on rank 1. The callback
therefore gathers every rank's loader states into the checkpoint when it is saved (Lightning
builds checkpoints on every rank, so this all-gather is safe) and gives each rank its own back
before Lightning restores its loops.

Usage::

    from revamper.integrations.lightning import RevamperCallback

    trainer = Trainer(callbacks=[RevamperCallback()], use_distributed_sampler=False, ...)
    trainer.fit(model, ckpt_path=...)   # model.train_dataloader() returns a RevamperLoader
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback  # pip install "revamper[integrations]"

from revamper.loader import RevamperLoader

logger = logging.getLogger(__name__)

__all__ = ["RevamperCallback", "revamper_loaders"]

STATES_KEY = "revamper_loader_states"
"""The checkpoint entry with every rank's loader states (``[rank] -> list``)."""


def revamper_loaders(loaders: Any) -> Iterator[RevamperLoader]:
    """Every RevamperLoader in ``loaders`` (one loader, or lists, tuples and dicts of them)."""
    if isinstance(loaders, RevamperLoader):
        yield loaders
    elif isinstance(loaders, Mapping):
        for value in loaders.values():
            yield from revamper_loaders(value)
    elif isinstance(loaders, (list, tuple)):
        for value in loaders:
            yield from revamper_loaders(value)


def _loader_states(checkpoint: Mapping[str, Any]) -> Any:
    """The training loaders' states that Lightning put in ``checkpoint`` (``None`` if none)."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
    return loop.get("combined_loader") if isinstance(loop, Mapping) else None


class RevamperCallback(Callback):
    """Keeps every training RevamperLoader at the trainer's epoch and position, on every rank.

    - At each training epoch's start, sets the loaders' epoch to ``trainer.current_epoch``:
      resuming from an end-of-epoch checkpoint then runs the right epoch's plan (a mid-epoch
      checkpoint's position is restored by Lightning itself, through the loader's
      ``state_dict``). In an uninterrupted run the loader is already there.
    - Under DDP, stores every rank's loader states in the checkpoint and gives each rank its
      own on resume (Lightning alone would give every rank rank 0's).
    """

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Gather every rank's loader states into the checkpoint (a collective under DDP)."""
        states = _loader_states(checkpoint)
        if int(getattr(trainer, "world_size", 1)) > 1 and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
        else:
            gathered = [states]
        if any(rank_states is not None for rank_states in gathered):
            checkpoint[STATES_KEY] = gathered

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Put this rank's own loader states where Lightning will restore them from."""
        gathered = checkpoint.get(STATES_KEY)
        rank = int(getattr(trainer, "global_rank", 0))
        if not isinstance(gathered, list) or _loader_states(checkpoint) is None:
            return
        if len(gathered) != int(getattr(trainer, "world_size", 1)):
            logger.warning(
                "RevamperCallback: the checkpoint holds loader states of %d ranks, this run has "
                "%d; the loaders keep Lightning's (a RevamperLoader refuses another rank's)",
                len(gathered),
                getattr(trainer, "world_size", 1),
            )
            return
        checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] = gathered[rank]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Before the first (or resumed) epoch: the loaders' epoch must be the trainer's.

        Covers the one resume that starts no new epoch through ``on_train_epoch_start``: a
        checkpoint taken after an epoch's last batch (``every_n_train_steps``). Lightning then
        restores the loader's "epoch e, all batches done" state but continues with epoch e+1.
        From any other mid-epoch checkpoint the loader's epoch already is the trainer's, and
        setting it keeps the restored position.
        """
        self._set_epoch(trainer)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Set the epoch of the trainer's RevamperLoaders to ``trainer.current_epoch``."""
        self._set_epoch(trainer)

    @staticmethod
    def _set_epoch(trainer: Any) -> None:
        epoch = int(trainer.current_epoch)
        for loader in revamper_loaders(trainer.train_dataloader):
            if loader.epoch != epoch:
                logger.info("RevamperCallback: loader epoch %d -> %d", loader.epoch, epoch)
            loader.set_epoch(epoch)
