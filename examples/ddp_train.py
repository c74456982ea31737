"""Train a small CNN with DistributedDataParallel, fed by RevamperLoader with one cache per machine.

    torchrun --nproc_per_node=2 examples/ddp_train.py [--epochs 4] [--images 2000] [--size 64]

Each rank gets its share of every epoch (like DistributedSampler); the ranks of a machine share
one cache of decoded, cropped images in /dev/shm (torchrun's LOCAL_WORLD_SIZE says how many ranks
a machine has; under launchers that do not set it, the loader finds out from the process group).
Runs on CPUs (gloo) or GPUs (nccl). The data is revamper's
built-in ImageNet-like JPEG set, generated on first use.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from revamper import RevamperLoader
from revamper.datasets.builtin import builtin_data_dir
from revamper.datasets.folder import image_folder
from revamper.pipelines import imagenet_pipeline

logger = logging.getLogger("ddp_train")


def small_cnn(num_classes: int) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16),
        *block(16, 32),
        *block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=2000, help="size of the built-in data set")
    parser.add_argument("--size", type=int, default=64, help="crop size in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reuse-factor", type=int, default=3)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)  # before the loader: its handshake uses the process group
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(message)s")

    # Rank 0 generates the data set on first use; the others wait for it.
    if rank == 0:
        root = builtin_data_dir(num_images=args.images)
    dist.barrier()
    if rank != 0:
        root = builtin_data_dir(num_images=args.images, progress=False)
    dataset = image_folder(root)  # items: (JPEG bytes, class)

    # decode + RandomResizedCrop are cached; flip + RandAugment + PILToTensor run on every use.
    partial, final = imagenet_pipeline(size=args.size).split()
    loader = RevamperLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        partial_transform=partial,
        final_transform=final,
        reuse_factor=args.reuse_factor,
        seed=0,  # the same on every rank (with seed=None, rank 0 draws one for everybody)
        num_workers=1,
        persistent_workers=True,
    )
    logger.info("%d batches per epoch on every rank", len(loader))

    model = DistributedDataParallel(small_cnn(len(dataset.classes)).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        model.train()
        loss_sum, batches = 0.0, 0
        for images, targets in loader:  # one pass = one epoch; the loader counts epochs itself
            images = images.to(device, non_blocking=True).float().div_(255)
            loss = loss_fn(model(images), targets.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP's all-reduce: every rank runs len(loader) steps
            optimizer.step()
            loss_sum, batches = loss_sum + loss.item(), batches + 1
        stats = loader.stats[epoch]
        logger.info(
            "epoch %d: loss %.3f | %d samples: %d computed, %d from the cache | %.0f samples/s "
            "| machine's cache holds %.1f MB",
            epoch,
            loss_sum / max(batches, 1),
            stats.samples,
            stats.misses,
            stats.hits,
            stats.samples_per_second,
            stats.bytes_cached / 1e6,
        )

    dist.barrier()  # the machine's first rank removes the shared cache when it closes
    loader.close()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
