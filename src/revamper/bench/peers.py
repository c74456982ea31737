"""Other fast loaders as peers in ``revamper bench``: FFCV and NVIDIA DALI (CPU only).

Each peer runs its *own* fused pipeline, the work of the ``light`` pipeline: decode +
RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) to the bench pipeline's crop size, horizontal
flip, uint8 CHW tensor. Neither has RandAugment, so compare them with ``--pipeline light`` (or
read them as "the same loader without RandAugment").

- ``ffcv``: FFCV's ``Loader`` over a ``.beton`` written once from the image folder (JPEG mode,
  quality 90) and cached next to it, named by a digest of the folder's file list and sizes;
  ``num_workers`` threads.
- ``dali``: a DALI pipeline on the CPU (``device_id=None``): ``readers.file`` on the folder,
  ``decoders.image_random_crop`` (decodes only the crop's region), ``resize``,
  ``crop_mirror_normalize``; ``num_workers`` threads.

Both run in the bench's process, as threads; the CPU they use (all threads of the process, read
with ``time.process_time``) is reported as the ``partial`` stage. A peer that cannot be imported
is skipped with the one line :func:`missing` returns.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from revamper.loader.stats import EpochStats
from revamper.pipelines import Pipeline

PeerKind = Literal["ffcv", "dali"]
PEERS: tuple[PeerKind, ...] = ("ffcv", "dali")

_MODULES = {"ffcv": "ffcv.loader", "dali": "nvidia.dali"}
_INSTALL = {
    "ffcv": "FFCV is not installed: apt-get install pkg-config libturbojpeg0-dev libopencv-dev, "
    "then pip install ffcv (docs/benchmarks.md, section 10)",
    "dali": "NVIDIA DALI is not installed: pip install nvidia-dali-cuda120 "
    "(docs/benchmarks.md, section 10)",
}


def missing(kind: PeerKind) -> str | None:
    """``None`` when the peer can run here, else one line saying why not and how to install it."""
    try:
        importlib.import_module(_MODULES[kind])
    except ImportError:
        return _INSTALL[kind]
    except Exception as exc:  # a broken install (missing system library, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{kind} is installed but cannot be imported: {first}"
    return None


def crop_size(pipeline: Pipeline) -> tuple[int, int]:
    """The ``(height, width)`` of the pipeline's random-resized crop, else ``(224, 224)``."""
    from torchvision.transforms import RandomResizedCrop

    from revamper.fused_crop import FusedDecodeCrop

    for _, step in pipeline.steps:
        if isinstance(step, (RandomResizedCrop, FusedDecodeCrop)):
            return int(step.size[0]), int(step.size[1])
    return 224, 224


class PeerLoader:
    """A peer's loader with the face the bench harness uses: epochs, ``stats``, ``close``.

    Args:
        kind: ``"ffcv"`` or ``"dali"``.
        root: The image folder (class sub-folders of JPEGs).
        size: Output ``(height, width)``.
        batch_size: Samples per batch.
        num_workers: Threads of the peer.
        seed: Seed of its order and augmentations.
    """

    store = None  # no revamper cache

    def __init__(
        self,
        kind: PeerKind,
        root: Path,
        size: tuple[int, int],
        *,
        batch_size: int,
        num_workers: int,
        seed: int,
    ) -> None:
        self.kind = kind
        self._epoch = 0
        threads = max(num_workers, 1)
        if kind == "ffcv":
            self._loader: Any = _ffcv_loader(root, size, batch_size, threads, seed)
        else:
            self._loader = _dali_loader(root, size, batch_size, threads, seed)

    def __iter__(self) -> PeerEpoch:
        """One epoch."""
        epoch = PeerEpoch(self._loader, self._epoch, dali=self.kind == "dali")
        self._epoch += 1
        return epoch

    def close(self) -> None:
        """Let the peer's threads go."""
        close = getattr(self._loader, "close", None)
        if callable(close):
            close()
        self._loader = None


class PeerEpoch:
    """One epoch of a peer: yields ``(images, labels)`` and fills :class:`EpochStats`."""

    def __init__(self, loader: Any, epoch: int, *, dali: bool) -> None:
        self.stats = EpochStats(epoch=epoch)
        self._dali = dali
        self._batches: Iterator[Any] = iter(loader)
        self._start = time.perf_counter()
        self._cpu = time.process_time()

    def __iter__(self) -> PeerEpoch:
        return self

    def __next__(self) -> tuple[Any, Any]:
        """The next batch; at the end, the epoch's wall and CPU time go into ``stats``."""
        try:
            batch = next(self._batches)
        except StopIteration:
            self.stats.wall_seconds = time.perf_counter() - self._start
            self.stats.cpu_partial = time.process_time() - self._cpu
            self.stats.planned_batches = self.stats.batches
            raise
        images, labels = (batch[0]["images"], batch[0]["labels"]) if self._dali else batch[:2]
        self.stats.samples += len(images)
        self.stats.batches += 1
        return images, labels


def beton_path(root: Path) -> Path:
    """Where the ``.beton`` of ``root`` is cached: next to it, named by its files and sizes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\n".encode())
    return root.parent / f"{root.name}.ffcv-q90-{digest.hexdigest()[:16]}.beton"


def write_beton(root: Path, num_workers: int = 2) -> Path:
    """Convert the image folder to FFCV's format once (JPEG, quality 90); return the path."""
    path = beton_path(root)
    if path.is_file():
        return path
    import numpy as np

    from revamper.datasets.folder import image_folder
    from revamper.pipelines import Decode

    folder = image_folder(root)
    decode = Decode("RGB")

    class Decoded:
        def __len__(self) -> int:
            return len(folder)

        def __getitem__(self, index: int) -> tuple[Any, int]:
            data, label = folder[index]
            return np.asarray(decode(data)), int(label)

    fd, temporary = tempfile.mkstemp(dir=root.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fields, writer = _module("ffcv.fields"), _module("ffcv.writer")
        layout = {
            "image": fields.RGBImageField(write_mode="jpg", jpeg_quality=90),
            "label": fields.IntField(),
        }
        writer.DatasetWriter(
            temporary, layout, num_workers=max(num_workers, 1)
        ).from_indexed_dataset(Decoded())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _module(name: str) -> Any:
    # The peers are optional and untyped: imported by name, they type as Any.
    return importlib.import_module(name)


def _ffcv_loader(root: Path, size: tuple[int, int], batch: int, threads: int, seed: int) -> Any:
    decoders, loader = _module("ffcv.fields.decoders"), _module("ffcv.loader")
    ops = _module("ffcv.transforms")
    return loader.Loader(
        str(write_beton(root, threads)),
        batch_size=batch,
        num_workers=threads,
        order=loader.OrderOption.RANDOM,
        seed=seed,
        drop_last=False,
        os_cache=True,
        pipelines={
            "image": [
                decoders.RandomResizedCropRGBImageDecoder(size),
                ops.RandomHorizontalFlip(),
                ops.ToTensor(),
                ops.ToTorchImage(),
            ],
            "label": [decoders.IntDecoder(), ops.ToTensor(), ops.Squeeze()],
        },
    )


def _dali_loader(root: Path, size: tuple[int, int], batch: int, threads: int, seed: int) -> Any:
    dali, fn, types = (
        _module("nvidia.dali"),
        _module("nvidia.dali.fn"),
        _module("nvidia.dali.types"),
    )
    base, plugin = (
        _module("nvidia.dali.plugin.base_iterator"),
        _module("nvidia.dali.plugin.pytorch"),
    )

    def graph() -> tuple[Any, Any]:
        jpegs, labels = fn.readers.file(
            file_root=str(root), random_shuffle=True, name="Reader", seed=seed
        )
        images = fn.decoders.image_random_crop(
            jpegs,
            device="cpu",
            output_type=types.RGB,
            random_area=[0.08, 1.0],
            random_aspect_ratio=[3 / 4, 4 / 3],
            num_attempts=10,
        )
        images = fn.resize(images, resize_x=size[1], resize_y=size[0], antialias=True)
        images = fn.crop_mirror_normalize(
            images, dtype=types.UINT8, output_layout="CHW", mirror=fn.random.coin_flip()
        )
        return images, labels

    built = dali.pipeline_def(graph)(
        batch_size=batch, num_threads=threads, device_id=None, seed=seed
    )
    built.build()
    return plugin.DALIGenericIterator(
        built,
        ["images", "labels"],
        reader_name="Reader",
        last_batch_policy=base.LastBatchPolicy.PARTIAL,
        auto_reset=True,
    )
