"""Quick start: a small CNN on revamper's built-in JPEGs, refurbishing at r = 3, CPU or GPU.

    python examples/quickstart.py [--epochs 3] [--images 400]
The built-in data set (an ImageFolder of JPEGs) is generated on first use.
"""

import argparse

import torch
from torch import nn
from torchvision import transforms as T

from revamper import RevamperLoader
from revamper.datasets.builtin import builtin_data_dir  # ImageNet-like JPEGs, made on first use
from revamper.datasets.folder import image_folder  # ImageFolder(root, loader=read_bytes)
from revamper.pipelines import Decode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()

    # Items are (raw JPEG bytes, class): decoding happens in the cached partial transform.
    # For your own data: ImageFolder("path/to/train", loader=revamper.pipelines.read_bytes).
    dataset = image_folder(builtin_data_dir(num_images=args.images))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, len(dataset.classes)),
    ).to(device)  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    with RevamperLoader(
        dataset,
        batch_size=32,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        partial_transform=T.Compose([Decode(), T.RandomResizedCrop(64)]),  # cached
        final_transform=T.Compose(
            [T.RandomHorizontalFlip(), T.RandAugment(2, 9), T.PILToTensor()]
        ),  # re-run on every use
        reuse_factor=3,
    ) as loader:
        for epoch in range(args.epochs):
            for images, targets in loader:  # one pass over the loader = one epoch
                images = images.to(device, non_blocking=True).float().div_(255)
                loss = nn.functional.cross_entropy(model(images), targets.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            s = loader.stats[epoch]  # computed vs. cached samples, CPU time per stage, ...
            print(f"epoch {epoch}: loss {loss.item():.3f}, {s.misses} computed, {s.hits} cached")


if __name__ == "__main__":  # worker processes may re-import this file
    main()
