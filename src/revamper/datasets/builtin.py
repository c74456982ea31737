"""The built-in ImageNet-like JPEG data set, generated from photographs that packages ship.

``revamper bench`` must run on a fresh machine with no internet, yet measure a realistic loader:
JPEG files of ImageNet's typical size (most are 500x375), decoded and augmented by the CPU. The
built-in set is therefore *generated* from real colour photographs that installed packages ship
(scikit-image's bundled sample images and scikit-learn's two sample photos; both come with the
``bench`` extra: ``pip install 'revamper[bench]'``). Each of the 10 photographs is one class; each
image is a random crop of its class's photo (20-100 % of its area), resized to an ImageNet-like
size, randomly flipped, slightly jittered in brightness and colour so that repeated crops differ,
given a light sensor-like grain (so that decoding costs about what it costs for real photos),
and JPEG-encoded at about quality 90.

Output sizes (width x height), drawn per image:

======================  ======  =========================================================
size                    share   note
======================  ======  =========================================================
500x375                 62 %    ImageNet's most common size (4:3 landscape)
500x333                 10 %    3:2 landscape
375x500                 12 %    3:4 portrait
500x500                  6 %    square
random                  10 %    shorter side 300-500 px, width/height 3:4 to 16:9
======================  ======  =========================================================

So every image has a shorter side of 300-500 px and a width/height ratio between 3/4 and 16/9.

Every random choice of image ``k`` of class ``c`` comes from its own generator, seeded with
``(seed, c, k)``: a generation is byte-identical for a given seed on a given machine (same
Pillow/libjpeg), whatever the number of threads, and a smaller set holds the same first images of
each class as a larger one.

The set is written in torchvision's ``ImageFolder`` layout (``<root>/<class>/<file>.jpg``) into a
temporary sibling folder that is renamed into place only when complete, with a manifest
(``revamper-data.json``) that :func:`builtin_data_dir` checks before reusing a cached set.

Read it with :func:`revamper.datasets.folder.image_folder`, whose items are raw JPEG bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    pass

__all__ = ["CLASSES", "GENERATOR_VERSION", "MANIFEST_NAME", "builtin_data_dir", "generate_builtin"]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 2
"""Bumped whenever the generator's output changes, so that stale cached sets are not reused."""

MANIFEST_NAME = "revamper-data.json"
"""The manifest written last into a generated set; its presence means the set is complete."""

_MANIFEST_FORMAT = "revamper-builtin-data"
_STREAM_TAG = 0x52455641  # "REVA": keeps these random streams apart from others seeded alike
_EXTRA_HINT = "pip install 'revamper[bench]'"

# (width, height, probability); the rest of the mass goes to a random size.
_FIXED_SIZES: tuple[tuple[int, int, float], ...] = (
    (500, 375, 0.62),
    (500, 333, 0.10),
    (375, 500, 0.12),
    (500, 500, 0.06),
)
MIN_SHORT_SIDE = 300
MAX_SHORT_SIDE = 500
MIN_ASPECT = 3 / 4
MAX_ASPECT = 16 / 9
_MIN_AREA = 0.20
_CROP_ASPECT_JITTER = 1.10  # the crop's aspect is the output's times up to this factor or 1/it
_BRIGHTNESS = (0.85, 1.15)
_CHANNEL_GAIN = (0.93, 1.07)
_QUALITY_JITTER = 2
_GRAIN_STD = 4.0
_DEFAULT_QUALITY = 90
_STALE_TMP_S = 3600  # a temporary folder this old was left by a killed generation


# --------------------------------------------------------------------------------------------
# Source photographs


# Class name -> (package, photo). Only photos that the packages bundle: scikit-image downloads
# some of its other data sets with pooch, and those must never be used here.
_SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut"),
    "chelsea": ("skimage", "chelsea"),
    "china": ("sklearn", "china.jpg"),
    "coffee": ("skimage", "coffee"),
    "flower": ("sklearn", "flower.jpg"),
    "hubble": ("skimage", "hubble_deep_field"),
    "ihc": ("skimage", "immunohistochemistry"),
    "motorcycle": ("skimage", "stereo_motorcycle"),  # the left view of the stereo pair
    "retina": ("skimage", "retina"),
    "rocket": ("skimage", "rocket"),
}
CLASSES: tuple[str, ...] = tuple(sorted(_SOURCES))
"""The built-in set's class names, in class-index order."""


def _load_photo(package: str, photo: str) -> Image.Image:
    """Load one source photograph as an RGB Pillow image."""
    if package == "sklearn":
        from sklearn.datasets import load_sample_image  # type: ignore[import-untyped]

        array = load_sample_image(photo)
    else:
        import skimage.data

        array = getattr(skimage.data, photo)()
        if photo == "stereo_motorcycle":
            array = array[0]
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).convert("RGB")
    image.load()
    return image


def _load_photos() -> dict[str, Image.Image]:
    """Load every class's source photograph, or say which extra is missing."""
    try:
        import skimage.data  # noqa: F401
        import sklearn.datasets  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"the built-in benchmark data set is made from photographs that scikit-image and "
            f"scikit-learn ship, and {exc.name or 'one of them'} is not installed: {_EXTRA_HINT}",
            name=exc.name,
        ) from exc
    return {name: _load_photo(*_SOURCES[name]) for name in CLASSES}


# --------------------------------------------------------------------------------------------
# Generation


@dataclasses.dataclass(frozen=True)
class _ImageParams:
    """Every random choice for one generated image."""

    size: tuple[int, int]
    box: tuple[float, float, float, float]
    flip: bool
    gains: tuple[float, float, float]
    quality: int
    grain_seed: int


def _image_rng(seed: int, class_index: int, k: int) -> np.random.Generator:
    return np.random.default_rng([_STREAM_TAG, seed, class_index, k])


def _draw_size(rng: np.random.Generator) -> tuple[int, int]:
    """Draw an ImageNet-like (width, height); see the module docstring for the distribution."""
    probabilities = [p for _w, _h, p in _FIXED_SIZES]
    choice = int(rng.choice(len(_FIXED_SIZES) + 1, p=[*probabilities, 1 - sum(probabilities)]))
    if choice < len(_FIXED_SIZES):
        width, height, _p = _FIXED_SIZES[choice]
        return width, height
    short = int(rng.integers(MIN_SHORT_SIDE, MAX_SHORT_SIDE + 1))
    aspect = math.exp(rng.uniform(math.log(MIN_ASPECT), math.log(MAX_ASPECT)))
    if aspect >= 1:
        return round(short * aspect), short
    return short, round(short / aspect)


def _draw_params(
    rng: np.random.Generator, photo_size: tuple[int, int], quality: int
) -> _ImageParams:
    """Draw the output size, crop box, flip, colour gains and JPEG quality of one image."""
    width, height = _draw_size(rng)
    photo_w, photo_h = photo_size
    area = rng.uniform(_MIN_AREA, 1.0) * photo_w * photo_h
    jitter = math.log(_CROP_ASPECT_JITTER)
    aspect = width / height * math.exp(rng.uniform(-jitter, jitter))
    crop_w, crop_h = math.sqrt(area * aspect), math.sqrt(area / aspect)
    shrink = min(1.0, photo_w / crop_w, photo_h / crop_h)  # keep the aspect, fit in the photo
    crop_w, crop_h = min(photo_w, crop_w * shrink), min(photo_h, crop_h * shrink)
    left = rng.uniform(0.0, photo_w - crop_w)
    top = rng.uniform(0.0, photo_h - crop_h)
    flip = bool(rng.random() < 0.5)
    brightness = rng.uniform(*_BRIGHTNESS)
    r, g, b = (brightness * rng.uniform(*_CHANNEL_GAIN, size=3)).tolist()
    q = quality + int(rng.integers(-_QUALITY_JITTER, _QUALITY_JITTER + 1))
    return _ImageParams(
        size=(width, height),
        box=(left, top, left + crop_w, top + crop_h),
        flip=flip,
        gains=(r, g, b),
        quality=min(100, max(1, q)),
        grain_seed=int(rng.integers(2**62)),
    )


def _render(photo: Image.Image, params: _ImageParams) -> bytes:
    """Crop, resize, flip, colour-jitter and JPEG-encode one image."""
    image = photo.resize(params.size, Image.Resampling.BICUBIC, box=params.box)
    if params.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    ramp = np.arange(256, dtype=np.float64)
    lut = np.concatenate([np.clip(np.rint(ramp * gain), 0, 255) for gain in params.gains])
    image = image.point(lut.astype(np.uint8).tolist())
    # Sensor-like grain: enlarged crops of small photos are smoother than real photographs and
    # would make JPEG decoding (the work refurbishing saves) unrealistically cheap.
    pixels = np.asarray(image, dtype=np.int16)
    grain = np.random.default_rng(params.grain_seed).normal(0.0, _GRAIN_STD, pixels.shape)
    pixels = np.clip(pixels + np.rint(grain).astype(np.int16), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=params.quality, optimize=False)
    return buffer.getvalue()


def _class_counts(num_images: int) -> dict[str, int]:
    """Spread ``num_images`` evenly over the classes; the last classes take the remainder."""
    base, remainder = divmod(num_images, len(CLASSES))
    first_bigger = len(CLASSES) - remainder
    return {name: base + (i >= first_bigger) for i, name in enumerate(CLASSES)}


def _manifest(*, seed: int, num_images: int, quality: int) -> dict[str, Any]:
    return {
        "format": _MANIFEST_FORMAT,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "num_images": num_images,
        "quality": quality,
        "classes": list(CLASSES),
        "counts": _class_counts(num_images),
        "sources": {name: ":".join(_SOURCES[name]) for name in CLASSES},
    }


def _file_name(name: str, k: int) -> str:
    return f"{name}_{k:05d}.jpg"


def _check_params(*, num_images: int, seed: int, quality: int) -> None:
    if num_images < len(CLASSES):
        raise ValueError(
            f"num_images must be at least {len(CLASSES)} (one per class), got {num_images}"
        )
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")


def generate_builtin(
    dest: Path, *, num_images: int = 2000, seed: int = 0, quality: int = 90, progress: bool = True
) -> Path:
    """Generate the built-in benchmark data set into ``dest`` (``ImageFolder`` layout).

    Writes ``dest/<class>/<class>_<k:05d>.jpg`` for the 10 classes, ``num_images`` in all (the
    last classes take the remainder), and ``dest/revamper-data.json``. The files are written into
    a temporary sibling folder, which is renamed to ``dest`` only once complete, so an interrupted
    generation never leaves a set that looks complete (the temporary folder is removed on an
    exception; one left by a killed process is hidden and never accepted).

    Args:
        dest: The folder to create; it must not exist yet.
        num_images: How many images to generate, at least 10.
        seed: The seed of every random choice; the same seed gives byte-identical files.
        quality: The JPEG quality; each image uses it plus or minus up to 2.
        progress: Show a progress bar on stderr.

    Returns:
        ``dest``.

    Raises:
        FileExistsError: ``dest`` already exists.
        ModuleNotFoundError: scikit-image or scikit-learn (the ``bench`` extra) is missing.
        ValueError: A parameter is out of range.
    """
    _check_params(num_images=num_images, seed=seed, quality=quality)
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"cannot generate the built-in data set into {dest}: it exists")
    photos = _load_photos()
    manifest = _manifest(seed=seed, num_images=num_images, quality=quality)
    counts: dict[str, int] = manifest["counts"]
    jobs = [(c, name, k) for c, name in enumerate(CLASSES) for k in range(counts[name])]

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))

    def make(job: tuple[int, str, int]) -> None:
        c, name, k = job
        photo = photos[name]
        params = _draw_params(_image_rng(seed, c, k), photo.size, quality)
        (tmp / name / _file_name(name, k)).write_bytes(_render(photo, params))

    try:
        os.chmod(tmp, 0o755)
        for name in CLASSES:
            (tmp / name).mkdir()
        # Pillow and numpy release the GIL while resizing and encoding: threads scale.
        pool = ThreadPoolExecutor(min(4, os.cpu_count() or 1))
        try:
            with _progress_bar(progress, len(jobs)) as advance:
                for _ in pool.map(make, jobs):
                    advance()
        finally:  # on an error or Ctrl-C, stop at once rather than render the rest
            pool.shutdown(wait=True, cancel_futures=True)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            if dest.exists():
                raise FileExistsError(
                    f"cannot generate the built-in data set into {dest}: it appeared meanwhile"
                ) from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    """A ``rich`` progress bar on stderr (or nothing); yields the function that advances it."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("generating benchmark images"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("generate", total=total)
        yield lambda: bar.advance(task)


# --------------------------------------------------------------------------------------------
# The cached built-in set


def _cache_root(cache_dir: Path | None) -> Path:
    """Resolve revamper's cache folder: argument, ``$REVAMPER_CACHE_DIR``, XDG, ``~/.cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if env := os.environ.get("REVAMPER_CACHE_DIR"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: ignore an empty or relative value
        return Path(xdg) / "revamper"
    return Path.home() / ".cache" / "revamper"


def _is_valid(folder: Path, expected: dict[str, Any]) -> bool:
    """Whether ``folder`` is a complete generated set whose manifest matches ``expected``."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    keys = ("format", "generator_version", "seed", "num_images", "quality", "classes", "counts")
    if not isinstance(manifest, dict) or any(manifest.get(k) != expected[k] for k in keys):
        return False
    try:
        return all(
            sum(1 for _ in os.scandir(folder / name)) == count
            for name, count in expected["counts"].items()
        )
    except OSError:
        return False


def builtin_data_dir(
    *,
    num_images: int = 2000,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Return the built-in benchmark data set's folder, generating it on first use.

    The set lives in ``<cache>/data/builtin-v<version>-seed<seed>-n<num_images>``, where
    ``<cache>`` is ``cache_dir``, else ``$REVAMPER_CACHE_DIR``, else ``$XDG_CACHE_HOME/revamper``,
    else ``~/.cache/revamper``. A folder there is reused when its manifest matches these
    parameters and its class folders hold the expected number of files; otherwise it is removed
    and generated again (see :func:`generate_builtin`).

    Args:
        num_images: How many images, at least 10.
        seed: The generation seed.
        cache_dir: The cache folder to use instead of the default.
        progress: Show a progress bar on stderr while generating.

    Returns:
        The folder, in ``ImageFolder`` layout, ready for :func:`image_folder`.

    Raises:
        ModuleNotFoundError: Generation is needed and the ``bench`` extra is missing.
        ValueError: A parameter is out of range.
    """
    quality = _DEFAULT_QUALITY
    _check_params(num_images=num_images, seed=seed, quality=quality)
    expected = _manifest(seed=seed, num_images=num_images, quality=quality)
    folder = (
        _cache_root(cache_dir) / "data" / f"builtin-v{GENERATOR_VERSION}-seed{seed}-n{num_images}"
    )
    if _is_valid(folder, expected):
        logger.debug("reusing the built-in benchmark data set in %s", folder)
        return folder
    if folder.exists() or folder.is_symlink():
        logger.warning("removing an incomplete or outdated built-in data set in %s", folder)
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    _remove_stale_temporaries(folder)
    logger.info(
        "generating the built-in benchmark data set (%d images, seed %d) in %s",
        num_images,
        seed,
        folder,
    )
    start = time.perf_counter()
    try:
        generate_builtin(
            folder, num_images=num_images, seed=seed, quality=quality, progress=progress
        )
    except FileExistsError:
        # Another process generated it at the same time; use theirs if it is sound.
        if not _is_valid(folder, expected):
            raise
    else:
        logger.info("generated %d images in %.1f s", num_images, time.perf_counter() - start)
    return folder


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary folders that killed generations of ``folder`` left behind."""
    with contextlib.suppress(OSError):
        for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
            if time.time() - tmp.stat().st_mtime > _STALE_TMP_S:
                logger.info("removing %s, left by an interrupted generation", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
