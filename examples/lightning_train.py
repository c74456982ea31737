"""Train a small CNN with PyTorch Lightning, fed by RevamperLoader, on 1 or more devices.

    python examples/lightning_train.py --devices 2 [--accelerator cpu] [--epochs 3] [--images 200]

With ``--devices 2`` Lightning's DDP strategy starts a second process; the loader shards the data
itself (hence ``use_distributed_sampler=False``) and the two ranks share one cache: the loader
finds which ranks share a machine from the process group (Lightning does not set torchrun's
``LOCAL_WORLD_SIZE``). ``RevamperCallback`` keeps the loader's epoch equal to the trainer's, so
``--resume CKPT`` continues exactly as the uninterrupted run would. The data is revamper's
built-in ImageNet-like JPEG set, generated on first use.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import lightning.pytorch as L
import torch
from torch import nn

from revamper import RevamperLoader
from revamper.datasets.builtin import builtin_data_dir
from revamper.datasets.folder import image_folder
from revamper.integrations.lightning import RevamperCallback
from revamper.pipelines import imagenet_pipeline

logger = logging.getLogger("lightning_train")


class Classifier(L.LightningModule):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.dataset = image_folder(builtin_data_dir(num_images=args.images, progress=False))
        self.model = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, len(self.dataset.classes)),
        )
        self.loader: RevamperLoader | None = None

    def train_dataloader(self) -> RevamperLoader:
        # Called on every rank once the process group exists (building the loader is a
        # collective under DDP). decode + crop are cached; flip + RandAugment run on every use.
        partial, final = imagenet_pipeline(size=self.args.size).split()
        self.loader = RevamperLoader(
            self.dataset,
            batch_size=self.args.batch_size,
            shuffle=True,
            partial_transform=partial,
            final_transform=final,
            reuse_factor=self.args.reuse_factor,
            seed=0,  # the same on every rank
            num_workers=1,
            persistent_workers=True,
        )
        logger.info("[rank %d] %s", self.global_rank, self.loader.distributed.describe())
        logger.info("[rank %d] cache %r", self.global_rank, self.loader.store)
        return self.loader

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        loss = nn.functional.cross_entropy(self.model(images.float().div_(255)), targets)
        return loss

    def on_train_epoch_end(self) -> None:
        assert self.loader is not None
        stats = self.loader.stats[self.current_epoch]
        logger.info(
            "[rank %d] epoch %d: loader epoch %d, %d samples, %d computed, %d from the cache",
            self.global_rank,
            self.current_epoch,
            stats.epoch,
            stats.samples,
            stats.misses,
            stats.hits,
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, ... (default: auto)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=200, help="size of the built-in data set")
    parser.add_argument("--size", type=int, default=64, help="crop size in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reuse-factor", type=int, default=3)
    parser.add_argument("--resume", default=None, help="a checkpoint to resume from")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    builtin_data_dir(num_images=args.images)  # generate once, before Lightning starts ranks
    model = Classifier(args)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        use_distributed_sampler=False,  # the loader shards the data itself
        callbacks=[RevamperCallback()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, ckpt_path=args.resume)
    trainer.strategy.barrier()  # every rank is done reading before rank 0 removes the cache
    if model.loader is not None:
        model.loader.close()


if __name__ == "__main__":
    main()
