"""Train a small CNN with Hugging Face Accelerate, fed by RevamperLoader (one cache per machine).

    accelerate launch --multi_gpu --num_processes 2 examples/accelerate_train.py    # GPUs
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 \\
        examples/accelerate_train.py                                              # CPUs

On CPUs, ``--multi_gpu`` is what starts the processes (through torchrun) and
``ACCELERATE_USE_CPU=1`` keeps them on the CPU (gloo). ``accelerate launch --cpu
--num_processes 2`` starts ONE process: with ``--cpu`` Accelerate uses its single-process
launcher unless ``--mpirun_hostfile`` hands the processes to mpirun.

Create the ``Accelerator`` first (it initialises the process group), then the loader on every
rank; pass only the model and the optimizer to ``accelerator.prepare``: the loader shards the
data itself and must not be wrapped or re-sharded (no ``prepare(loader)``).
"""

from __future__ import annotations

import argparse
import logging

import torch
from accelerate import Accelerator
from torch import nn

from revamper import RevamperLoader
from revamper.datasets.builtin import builtin_data_dir
from revamper.datasets.folder import image_folder
from revamper.pipelines import imagenet_pipeline

logger = logging.getLogger("accelerate_train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=200, help="size of the built-in data set")
    parser.add_argument("--size", type=int, default=64, help="crop size in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    accelerator = Accelerator()  # first: it initialises torch.distributed
    rank = accelerator.process_index
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(message)s")
    with accelerator.main_process_first():  # rank 0 generates the data set on first use
        dataset = image_folder(builtin_data_dir(num_images=args.images, progress=False))

    partial, final = imagenet_pipeline(size=args.size).split()  # decode+crop | flip+RandAugment
    loader = RevamperLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        seed=0,  # the same on every rank
        partial_transform=partial,
        final_transform=final,
        reuse_factor=3,
        num_workers=1,
        persistent_workers=True,
    )
    logger.info("%s; cache %r", loader.distributed.describe(), loader.store)

    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, len(dataset.classes)),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = accelerator.prepare(model, optimizer)  # not the loader
    for epoch in range(args.epochs):
        for images, targets in loader:
            images = images.to(accelerator.device).float().div_(255)
            loss = nn.functional.cross_entropy(model(images), targets.to(accelerator.device))
            optimizer.zero_grad()
            accelerator.backward(loss)
            optimizer.step()
        stats = loader.stats[epoch]
        logger.info(
            "epoch %d: %d samples, %d computed, %d from the cache, loss %.3f",
            epoch,
            stats.samples,
            stats.misses,
            stats.hits,
            loss.item(),
        )
    accelerator.wait_for_everyone()  # every rank is done reading before rank 0 removes the cache
    loader.close()
    accelerator.end_training()


if __name__ == "__main__":
    main()
