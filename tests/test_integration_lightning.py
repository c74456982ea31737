"""A RevamperLoader under a real Lightning 2.x Trainer on CPU (one process).

- Lightning calls ``iter()`` on the loader once before training to check that it is iterable;
  that must not use up an epoch: trainer epoch e runs loader epoch e's plan, and the epochs
  after the first have no unplanned misses.
- Resuming with ``ckpt_path`` yields exactly the uninterrupted run's batches, from end-of-epoch
  checkpoints (with ``RevamperCallback``) and from mid-epoch ones (Lightning restores the loader's
  ``state_dict`` itself).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from revamper import RevamperLoader, plan_epoch
from tests.helpers import IndexDataset

L = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from revamper.integrations.lightning import RevamperCallback, revamper_loaders  # noqa: E402

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's advice on workers, logging
]


class CountCalls:
    """Partial transform that appends a byte to a file per call (counts across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with open(self.path, "ab") as file:
            file.write(b".")
        return x

    def count(self) -> int:
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0


class Recorder(L.LightningModule):  # type: ignore[misc]
    """Trains a 1-parameter model; records (trainer epoch, sample indices) of every batch."""

    def __init__(self, make_loader: Callable[[], RevamperLoader]) -> None:
        super().__init__()
        self.make_loader = make_loader
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[tuple[int, list[int]]] = []
        self.loaders: list[RevamperLoader] = []

    def train_dataloader(self) -> RevamperLoader:
        loader = self.make_loader()
        self.loaders.append(loader)
        return loader

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.seen.append((self.current_epoch, y.tolist()))
        return self.layer(x.float()).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_trainer(root: Path, epochs: int, callbacks: list[Any], max_steps: int = -1) -> Any:
    return L.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=callbacks,
        default_root_dir=str(root),
    )


def fit(module: Recorder, trainer: Any, ckpt_path: str | None = None) -> None:
    try:
        trainer.fit(module, ckpt_path=ckpt_path)
    finally:
        for loader in module.loaders:
            loader.close()


@pytest.mark.slow
def test_trainer_epochs_are_loader_epochs(tmp_path: Path) -> None:
    size, r, epochs = 40, 2, 3
    counter = CountCalls(tmp_path / "partial-calls")
    module = Recorder(
        lambda: RevamperLoader(
            IndexDataset(size),
            batch_size=8,
            shuffle=True,
            partial_transform=counter,
            reuse_factor=r,
            seed=11,
            num_workers=1,
        )
    )
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    fit(module, trainer)
    (loader,) = module.loaders
    assert [s.epoch for s in loader.stats] == list(range(epochs))  # no epoch used up
    for epoch in range(epochs):
        batches = [indices for e, indices in module.seen if e == epoch]
        plan = plan_epoch(loader.plan_config, epoch)
        assert [i for b in batches for i in b] == plan.indices.tolist()
        stats = loader.stats[epoch]
        assert stats.samples == size and stats.unplanned_misses == 0
    expected = size + (epochs - 1) * size // r  # epoch 0 computes all, then N/r per epoch
    assert abs(counter.count() - expected) <= epochs
    assert counter.count() == sum(s.misses for s in loader.stats)


SIZE, BATCH, EPOCHS, R, SEED = 30, 4, 4, 3, 5  # 8 batches per epoch, the last one of 2 samples


def resumable_loader() -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(SIZE), batch_size=BATCH, shuffle=True, reuse_factor=R, seed=SEED
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], Path]:
    """The whole run's batches, and a checkpoint after every step and every epoch."""
    root = tmp_path_factory.mktemp("lightning-run")
    checkpoints = [
        ModelCheckpoint(root / "steps", "{step}", every_n_train_steps=1, save_top_k=-1),
        ModelCheckpoint(root / "epochs", "{epoch}", every_n_epochs=1, save_top_k=-1),
    ]
    module = Recorder(resumable_loader)
    fit(module, make_trainer(root, EPOCHS, [RevamperCallback(), *checkpoints]))
    assert len(module.seen) == EPOCHS * 8
    return module.seen, root


def resume(tmp_path: Path, checkpoint: Path, callback: bool = True) -> list[Any]:
    module = Recorder(resumable_loader)
    callbacks = [RevamperCallback()] if callback else []
    fit(module, make_trainer(tmp_path, EPOCHS, callbacks), ckpt_path=str(checkpoint))
    return module.seen


def steps_done(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, weights_only=False)["global_step"])


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_resume_from_an_end_of_epoch_checkpoint(
    uninterrupted: tuple[list[Any], Path], tmp_path: Path, epoch: int
) -> None:
    seen, root = uninterrupted
    checkpoint = root / "epochs" / f"epoch={epoch}.ckpt"
    assert steps_done(checkpoint) == (epoch + 1) * 8
    assert resume(tmp_path, checkpoint) == seen[(epoch + 1) * 8 :]


@pytest.mark.parametrize("step", [3, 11, 16, 21])  # 16: after the last batch of epoch 1
def test_resume_from_a_mid_epoch_checkpoint(
    uninterrupted: tuple[list[Any], Path], tmp_path: Path, step: int
) -> None:
    seen, root = uninterrupted
    checkpoint = root / "steps" / f"step={step}.ckpt"
    assert steps_done(checkpoint) == step
    assert resume(tmp_path, checkpoint) == seen[step:]


def test_resume_is_exact_in_step_based_training(tmp_path: Path) -> None:
    # With max_steps Lightning treats every checkpoint as a restart (it restores the loader
    # state even at an epoch's end).
    checkpoints = [
        ModelCheckpoint(tmp_path / "steps", "{step}", every_n_train_steps=1, save_top_k=-1),
        ModelCheckpoint(tmp_path / "epochs", "{epoch}", every_n_epochs=1, save_top_k=-1),
    ]
    full = Recorder(resumable_loader)
    trainer = make_trainer(tmp_path, -1, [RevamperCallback(), *checkpoints], max_steps=28)
    fit(full, trainer)
    assert len(full.seen) == 28
    for checkpoint in ("epochs/epoch=1.ckpt", "steps/step=11.ckpt", "steps/step=24.ckpt"):
        module = Recorder(resumable_loader)
        trainer = make_trainer(tmp_path / "resumed", -1, [RevamperCallback()], max_steps=28)
        fit(module, trainer, ckpt_path=str(tmp_path / checkpoint))
        assert module.seen == full.seen[steps_done(tmp_path / checkpoint) :], checkpoint


def test_without_the_callback_an_end_of_epoch_resume_replays_epoch_0(
    uninterrupted: tuple[list[Any], Path], tmp_path: Path
) -> None:
    # Why RevamperCallback exists: Lightning restores no loader state from this checkpoint.
    seen, root = uninterrupted
    resumed = resume(tmp_path, root / "epochs" / "epoch=1.ckpt", callback=False)
    assert resumed != seen[16:]
    assert [b for _, b in resumed[:8]] == [b for _, b in seen[:8]]


def test_revamper_loaders_finds_nested_loaders() -> None:
    with resumable_loader() as a, resumable_loader() as b:
        assert list(revamper_loaders({"a": a, "rest": [b, "not a loader"]})) == [a, b]
        assert list(revamper_loaders(None)) == []


def test_seed_everything_with_workers_and_a_datamodule_that_deep_copies_its_loader(
    tmp_path: Path,
) -> None:
    # Found in review of the DataLoader attributes: seed_everything(workers=True) makes Lightning
    # set a worker_init_fn it finds to be None (a read-only property failed the fit), and
    # save_hyperparameters() deep-copies a loader passed to a module (a weakly held method of
    # the loader could not be copied).
    L.seed_everything(0, workers=True)
    loader = RevamperLoader(IndexDataset(16), batch_size=4, seed=0, num_workers=1)
    try:
        copied = copy.deepcopy(loader)
        assert sum(1 for _ in copied) == 4
        copied.close()
        module = Recorder(lambda: loader)
        fit(module, make_trainer(tmp_path, 1, []))
        assert sorted(i for _, batch in module.seen for i in batch) == list(range(16))
    finally:
        os.environ.pop("PL_SEED_WORKERS", None)
        loader.close()
