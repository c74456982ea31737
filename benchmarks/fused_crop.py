"""Fused decode + RandomResizedCrop: speed per image and closeness to the full-resolution path.

For every JPEG of 500x375 in the built-in data set (the first ``--images``), and every output
size, each backend takes the same crop (the same torch seed per image, hence the same
``RandomResizedCrop`` parameters) and its output is compared with the plain path's (decode at
full resolution, crop, resize: ``Decode`` + ``RandomResizedCrop``):

- ``plain``: the plain path itself (the reference);
- ``pillow``: :class:`revamper.fused_crop.FusedDecodeCrop` with ``resize="pil"`` (Pillow's
  ``draft``: 1/2, 1/4, 1/8, and Pillow's resize);
- ``pillow+torch``: the same with ``resize="torch"`` (the default): a crop decoded at full
  resolution is resized by torch's antialiased uint8 kernel;
- ``simplejpeg+torch``: the default with ``decoder="simplejpeg"`` (if simplejpeg is installed):
  such a crop's JPEG is decoded by simplejpeg straight into the array the resize reads;
- ``simplejpeg``: ``simplejpeg.decode_jpeg`` with the same power-of-two scale, then Pillow's
  crop + resize (if simplejpeg is installed);
- ``simplejpeg-m8``: the same with libjpeg-turbo's finer scales M/8 (M = 1..8);
- ``turbojpeg-m8``: PyTurboJPEG (if installed and its libturbojpeg loads) with scales M/8.

Timing is single-threaded, one image at a time, the backends alternating image by image; each
image's time is its best of ``--repeats`` rounds and "vs plain" is the median over images of the
per-image ratio (the machine may be shared: these choices keep bursts of load out of the ratio).

Run: ``python benchmarks/fused_crop.py [--images 300] [--repeats 5] [--sizes 224,160,128,112]``.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from revamper.datasets.builtin import builtin_data_dir
from revamper.fused_crop import FusedDecodeCrop, dct_scale
from revamper.pipelines import Decode

Backend = Callable[[bytes], Image.Image]
NOT_MEASURED: list[str] = []


def _eighths(crop: tuple[int, int], output: tuple[int, int]) -> int:
    """The smallest M (1..8) with ``crop * M / 8 >= output`` on both sides."""
    need = max(output[0] / crop[0], output[1] / crop[1])
    return min(max(math.ceil(8 * need - 1e-9), 1), 8)


def _finish(array: Any, params: tuple[int, int, int, int], factor: float, size: int) -> Image.Image:
    top, left, h, w = params
    image = Image.fromarray(array)
    box = (left * factor, top * factor, (left + w) * factor, (top + h) * factor)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box)


def backends(size: int) -> dict[str, Backend]:
    """Every backend that can run here, for output ``size``."""
    from torchvision import transforms as T

    decode, crop = Decode(), T.RandomResizedCrop(size)
    fused = FusedDecodeCrop(size, resize="pil", decoder="pillow")
    made: dict[str, Backend] = {
        "plain": lambda data: crop(decode(data)),
        "pillow": fused,
        "pillow+torch": FusedDecodeCrop(size, decoder="pillow"),
    }
    try:
        import simplejpeg
    except ImportError:
        simplejpeg = None
    if simplejpeg is not None:
        made["simplejpeg+torch"] = FusedDecodeCrop(size, decoder="simplejpeg")

        def simple(data: bytes, *, eighths: bool) -> Image.Image:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            params = fused.params(width, height)
            crop_size = (params[3], params[2])
            m = _eighths(crop_size, (size, size)) if eighths else 0
            factor = m / 8 if eighths else 1 / dct_scale(crop_size, (size, size))
            array = simplejpeg.decode_jpeg(
                data,
                colorspace="RGB",
                min_width=math.ceil(width * factor),
                min_height=math.ceil(height * factor),
            )
            return _finish(array, params, array.shape[1] / width, size)

        made["simplejpeg"] = lambda data: simple(data, eighths=False)
        made["simplejpeg-m8"] = lambda data: simple(data, eighths=True)
    turbo = _turbojpeg()
    if turbo is not None:
        jpeg, pixel_format = turbo

        def turbo_decode(data: bytes) -> Image.Image:
            width, height, _, _ = jpeg.decode_header(data)
            params = fused.params(width, height)
            m = _eighths((params[3], params[2]), (size, size))
            array = jpeg.decode(
                data,
                pixel_format=pixel_format,
                scaling_factor=(m // math.gcd(m, 8), 8 // math.gcd(m, 8)),
            )
            return _finish(array, params, array.shape[1] / width, size)

        made["turbojpeg-m8"] = turbo_decode
    return made


def _turbojpeg() -> tuple[Any, int] | None:
    try:
        import turbojpeg

        return turbojpeg.TurboJPEG(), turbojpeg.TJPF_RGB
    except (ImportError, OSError, RuntimeError) as exc:
        NOT_MEASURED.append(f"turbojpeg: not measured ({str(exc).splitlines()[0]})")
        return None


def psnr(a: Image.Image, b: Image.Image) -> tuple[float, int]:
    """PSNR in dB (inf when equal) and the maximum absolute difference."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mse = float((diff**2).mean())
    return (math.inf if mse == 0 else 10 * math.log10(255**2 / mse)), int(np.abs(diff).max())


def measure(datas: list[bytes], size: int, repeats: int) -> list[dict[str, Any]]:
    """One row per backend: ms per image, speed-up, PSNR and max abs error against ``plain``.

    Backends alternate image by image (in a rotating order), so a burst of load from other
    processes hits them all alike; each image's time is its best over ``repeats`` rounds, and
    the speed-up is the median over images of ``plain``'s time over the backend's.
    """
    made = backends(size)
    names = list(made)
    for backend in made.values():  # first calls import and set up: not part of the cost
        backend(datas[0])
    times = {name: [math.inf] * len(datas) for name in names}
    for round_ in range(repeats):
        for k, data in enumerate(datas):
            shift = (k + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                torch.manual_seed(k)
                start = time.perf_counter()
                made[name](data)
                elapsed = time.perf_counter() - start
                times[name][k] = min(times[name][k], elapsed)
    rows = []
    scales = [dct_scale(_crop_of(k), (size, size)) for k in range(len(datas))]
    for name, backend in made.items():
        quality = []
        for k, data in enumerate(datas):
            torch.manual_seed(k)
            reference = made["plain"](data)
            torch.manual_seed(k)
            quality.append(psnr(backend(data), reference))
        values = sorted(q[0] for q in quality)
        ratios = [p / t for p, t in zip(times["plain"], times[name], strict=True)]
        rows.append(
            {
                "size": size,
                "backend": name,
                "ms": sum(times[name]) / len(datas) * 1e3,
                "speedup": float(np.median(ratios)),
                "psnr_p1": values[len(values) // 100],
                "psnr_median": values[len(values) // 2],
                "max_abs": max(q[1] for q in quality),
                "scaled_share": sum(s > 1 for s in scales) / len(scales),
            }
        )
    return rows


def breakdown(datas: list[bytes], sizes: list[int], repeats: int) -> list[str]:
    """Where the plain path's time goes: header, full decode, and crop + resize per size."""
    from torchvision.transforms import functional as F

    decoded = [Decode()(data) for data in datas]
    crop = FusedDecodeCrop(1)
    steps: dict[str, Callable[[int], Any]] = {
        "header only (Image.open + size)": lambda k: Image.open(io.BytesIO(datas[k])).size,
        "full decode (Decode)": lambda k: Decode()(datas[k]),
    }
    for size in sizes:

        def resize(k: int, size: int = size) -> Any:
            torch.manual_seed(k)
            top, left, h, w = crop.params(*decoded[k].size)
            return F.resized_crop(decoded[k], top, left, h, w, [size, size], antialias=True)

        steps[f"crop + resize to {size}"] = resize
    times = {name: [math.inf] * len(datas) for name in steps}
    for _ in range(repeats):  # interleaved image by image, best per image (as in measure)
        for k in range(len(datas)):
            for name, step in steps.items():
                start = time.perf_counter()
                step(k)
                times[name][k] = min(times[name][k], time.perf_counter() - start)
    return [f"| {name} | {sum(t) / len(t) * 1e3:.3f} |" for name, t in times.items()]


def _crop_of(seed: int) -> tuple[int, int]:
    torch.manual_seed(seed)
    _, _, h, w = FusedDecodeCrop(1).params(500, 375)
    return w, h


def main() -> None:
    """Print the table (markdown) for docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="224,160,128,112")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(builtin_data_dir(num_images=2000, progress=False))
    datas = []
    for path in sorted(root.glob("*/*.jpg")):
        data = path.read_bytes()
        if Image.open(io.BytesIO(data)).size == (500, 375):
            datas.append(data)
        if len(datas) == args.images:
            break
    lines = [f"{len(datas)} JPEGs of 500x375 (quality 90) from {root}"]
    lines.append(
        "| output | backend | ms/img | vs plain | scaled share | PSNR p1 | PSNR median | max abs |"
    )
    lines.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in (int(s) for s in args.sizes.split(",")):
        for row in measure(datas, size, args.repeats):
            lines.append(
                f"| {size} | {row['backend']} | {row['ms']:.2f} | {row['speedup']:.2f}x | "
                f"{row['scaled_share']:.0%} | {row['psnr_p1']:.1f} | {row['psnr_median']:.1f} | "
                f"{row['max_abs']} |"
            )
    sizes = [int(s) for s in args.sizes.split(",")]
    lines += ["", "| plain path, one step | ms/img |", "| --- | ---: |"]
    lines += breakdown(datas, sizes, args.repeats)
    print("\n".join(NOT_MEASURED + lines))


if __name__ == "__main__":
    main()
