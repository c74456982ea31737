"""A Lightning DDP run (2 CPU processes) over IndexDataset, for test_integration_lightning_ddp.

    python tests/lightning_ddp_script.py OUT_DIR [--resume CKPT] [--no-callback]

Lightning's DDP launcher starts rank 1 by running this file again. Every rank writes
``OUT_DIR/<run>-rank<r>.json``: its (trainer epoch, sample indices) per batch and its cache's
path; the first run also saves a checkpoint after every step and every epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from revamper import RevamperLoader
from revamper.integrations.lightning import RevamperCallback
from tests.helpers import IndexDataset

SIZE, BATCH, EPOCHS, R, SEED = 36, 4, 3, 3, 2  # 18 samples per rank: 5 batches per epoch


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[tuple[int, list[int]]] = []
        self.loader: RevamperLoader | None = None

    def train_dataloader(self) -> RevamperLoader:
        self.loader = RevamperLoader(
            IndexDataset(SIZE),
            batch_size=BATCH,
            shuffle=True,
            reuse_factor=R,
            seed=SEED,
            num_workers=1,
        )
        return self.loader

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.seen.append((self.current_epoch, y.tolist()))
        return self.layer(x.float()).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--no-callback", action="store_true")
    args = parser.parse_args()
    run = "full" if args.resume is None else Path(args.resume).stem
    callbacks: list[Any] = [] if args.no_callback else [RevamperCallback()]
    if args.resume is None:
        steps = ModelCheckpoint(args.out / "steps", "{step}", every_n_train_steps=1, save_top_k=-1)
        epochs = ModelCheckpoint(args.out / "epochs", "{epoch}", every_n_epochs=1, save_top_k=-1)
        callbacks += [steps, epochs]
    module = Recorder()
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        use_distributed_sampler=False,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=args.resume is None,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(args.out),
    )
    trainer.fit(module, ckpt_path=args.resume)
    trainer.strategy.barrier()
    assert module.loader is not None
    store = module.loader.store
    report = {"seen": module.seen, "store": str(getattr(store, "path", ""))}
    (args.out / f"{run}-rank{trainer.global_rank}.json").write_text(json.dumps(report))
    trainer.strategy.barrier()
    module.loader.close()


if __name__ == "__main__":
    main()
