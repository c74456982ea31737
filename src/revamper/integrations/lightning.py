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
plan) instead of epoch k's. :class:`RevamperCallback` sets the epoch at the start of every
training epoch, when ``trainer.current_epoch`` is the epoch about to run; from a mid-epoch
checkpoint Lightning itself restores the loader's position, and Lightning does not start a new
epoch there, so the callback leaves that position alone. Either way the resumed run yields
exactly the batches (samples and miss plan) of the uninterrupted run.

Usage::

    from revamper.integrations.lightning import RevamperCallback

    trainer = Trainer(callbacks=[RevamperCallback()], use_distributed_sampler=False, ...)
    trainer.fit(model, ckpt_path=...)   # model.train_dataloader() returns a RevamperLoader
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from lightning.pytorch import Callback  # pip install "revamper[integrations]"

from revamper.loader import RevamperLoader

logger = logging.getLogger(__name__)

__all__ = ["RevamperCallback", "revamper_loaders"]


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


class RevamperCallback(Callback):
    """Sets every training RevamperLoader's epoch to the trainer's at each epoch's start.

    Makes resuming exact under Lightning from end-of-epoch checkpoints (mid-epoch checkpoints
    are restored by Lightning itself through the loader's ``state_dict``). Harmless otherwise:
    in an uninterrupted run the loader is already at the trainer's epoch.
    """

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Set the epoch of the trainer's RevamperLoaders to ``trainer.current_epoch``."""
        epoch = int(trainer.current_epoch)
        for loader in revamper_loaders(trainer.train_dataloader):
            if loader.epoch != epoch:
                logger.info("RevamperCallback: loader epoch %d -> %d", loader.epoch, epoch)
            loader.set_epoch(epoch)
