"""The fused decode + RandomResizedCrop step: torchvision's draws, close output, cheaper decode."""

from __future__ import annotations

import functools
import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T

from revamper import fused_crop
from revamper.fused_crop import FusedDecodeCrop, dct_scale, draft_request
from revamper.pipelines import (
    Decode,
    fuse_decode_crop,
    light_pipeline,
    load_pipeline,
    pipeline_from,
)
from revamper.store.transform_identity import transform_identity

PSNR_BAR_DB = 30.0
"""Fused vs full-resolution output, per image. Quality-90 JPEG itself is about 40 dB from its
source and the fused step measured 35-44 dB on the built-in photos (docs/benchmarks.md,
section 9); below 30 dB the difference would be visible, i.e. the step would be wrong."""


def photo(width: int = 500, height: int = 375, seed: int = 0) -> Image.Image:
    """A photo-like image: smooth gradients, hard edges and a little grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 37 + seed),
            128 + 100 * np.cos(y / 23),
            255 * (x + y) / (width + height),
        ],
        axis=-1,
    )
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(1))
    pixels = np.asarray(image).astype(np.float32)
    for _ in range(6):  # a few flat discs with sharp borders
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 60)
        disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        pixels[disc] = rng.integers(0, 256, 3)
    pixels += rng.normal(0, 3, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **({"quality": 90} if format == "JPEG" else {}))
    return buffer.getvalue()


TORCH_RESIZE_MAX_ABS = 2
"""The torch resize against Pillow's, per pixel: torch's antialiased uint8 kernel follows
Pillow's filter and rounding, and measured at most 2 grey levels apart on 300 photos (PSNR 55 dB
or more; docs/benchmarks.md, section 9b)."""


def plain(data: bytes | Image.Image, size: int | tuple[int, int], mode: str = "RGB") -> Image.Image:
    result: Image.Image = T.RandomResizedCrop(size)(Decode(mode)(data))
    return result


def on_tensor(data: bytes | Image.Image, size: int) -> Image.Image:
    """torchvision.transforms.v2's RandomResizedCrop on the decoded image as a uint8 tensor."""
    from torchvision.transforms import v2

    tensor = T.functional.pil_to_tensor(Decode()(data))
    result: Image.Image = T.functional.to_pil_image(v2.RandomResizedCrop(size)(tensor))
    return result


def max_abs(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * float(np.log10(255**2 / mse))


@pytest.mark.parametrize(
    ("width", "height"), [(500, 375), (375, 500), (64, 64), (3000, 40), (40, 3000), (1, 1)]
)
def test_params_are_torchvisions_draws_for_the_same_rng_state(width: int, height: int) -> None:
    # (3000, 40) and (40, 3000) force the central fallback after 10 rejected tries.
    step = FusedDecodeCrop(224)
    image = Image.new("RGB", (width, height))
    for seed in range(200):
        torch.manual_seed(seed)
        ours = step.params(width, height)
        after_ours = torch.get_rng_state()
        torch.manual_seed(seed)
        theirs = T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        assert ours == theirs
        assert torch.equal(after_ours, torch.get_rng_state())  # same number of draws


def test_identical_to_torchvision_when_no_dct_scale_fits_with_the_pil_resize() -> None:
    data = encoded(photo())  # 500x375: a crop is never 448 px high, so never scaled
    step = FusedDecodeCrop(224, resize="pil")
    for seed in range(20):
        torch.manual_seed(seed)
        ours = step(data)
        torch.manual_seed(seed)
        assert np.array_equal(np.asarray(ours), np.asarray(plain(data, 224)))


@pytest.mark.parametrize("decoder", ["pillow", "auto"])
@pytest.mark.parametrize("source", [(500, 375), (40, 30), (1, 1), (3, 700)])
def test_the_torch_resize_is_torchvision_v2s_on_a_tensor_and_within_two_levels_of_pillow(
    decoder: str, source: tuple[int, int]
) -> None:
    # Down- and upscaled crops, a single pixel, and a sliver that forces the central fallback.
    data = encoded(photo(*source))
    step = FusedDecodeCrop(224, decoder=decoder)
    for seed in range(20):
        torch.manual_seed(seed)
        ours = step(data)
        torch.manual_seed(seed)
        assert np.array_equal(np.asarray(ours), np.asarray(on_tensor(data, 224))), seed
        torch.manual_seed(seed)
        assert max_abs(ours, plain(data, 224)) <= TORCH_RESIZE_MAX_ABS, seed


@functools.cache
def jpeg_variants() -> dict[str, bytes]:
    """JPEGs libjpeg-turbo decodes along different paths (sampling, progressive, grey, CMYK)."""
    image = photo(333, 251, seed=3)  # odd sizes: partial MCUs on both sides
    out = {}
    for name, options in {
        "420": {"subsampling": 2},
        "444": {"subsampling": 0},
        "422": {"subsampling": 1},
        "progressive": {"progressive": True},
        "restart markers": {"restart_marker_blocks": 4},
    }.items():
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85, **options)  # type: ignore[arg-type]
        out[name] = buffer.getvalue()
    out["grey"] = encoded(image.convert("L"))
    out["cmyk"] = encoded(image.convert("CMYK"))
    return out


@pytest.mark.parametrize("variant", sorted(jpeg_variants()))
def test_simplejpeg_and_pillow_decode_to_the_same_result(variant: str) -> None:
    pytest.importorskip("simplejpeg")
    data = jpeg_variants()[variant]
    with_simplejpeg = FusedDecodeCrop(160, decoder="simplejpeg")
    with_pillow = FusedDecodeCrop(160, decoder="pillow")
    for seed in range(8):
        torch.manual_seed(seed)
        ours = with_simplejpeg(data)
        torch.manual_seed(seed)
        assert np.array_equal(np.asarray(ours), np.asarray(with_pillow(data))), seed


def test_auto_decodes_full_resolution_rgb_jpegs_with_simplejpeg_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    simplejpeg = pytest.importorskip("simplejpeg")
    calls: list[dict[str, object]] = []

    class Spy:
        def decode_jpeg(self, data: bytes, **options: object) -> object:
            calls.append(options)
            return simplejpeg.decode_jpeg(data, **options)

    monkeypatch.setattr(fused_crop, "simplejpeg_module", lambda: Spy())
    data = encoded(photo())
    FusedDecodeCrop(224)(data)  # 500x375 at 224: full resolution, simplejpeg decodes
    assert calls == [{"colorspace": "RGB"}]
    FusedDecodeCrop(224, decoder="pillow")(data)
    FusedDecodeCrop(224, resize="pil")(data)
    FusedDecodeCrop(224)(encoded(photo().convert("L")))  # grey: Pillow converts it
    FusedDecodeCrop(32)(data)  # a DCT scale applies: Pillow's draft
    assert len(calls) == 1


def test_a_damaged_jpeg_fails_as_it_does_with_pillow() -> None:
    data = encoded(photo())
    for broken in (data[: len(data) // 2], data[:2] + b"\x00" * 64 + data[66:], data[:20]):
        outcomes = []
        for decoder in ("pillow", "auto"):
            torch.manual_seed(0)
            try:
                outcomes.append(np.asarray(FusedDecodeCrop(224, decoder=decoder)(broken)))
            except Exception as exc:  # the comparison is the point
                outcomes.append(type(exc))
        if isinstance(outcomes[0], np.ndarray):
            assert isinstance(outcomes[1], np.ndarray) and np.array_equal(*outcomes)
        else:
            assert outcomes[0] is outcomes[1]


def test_without_simplejpeg_auto_falls_back_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(photo())
    torch.manual_seed(1)
    expected = np.asarray(FusedDecodeCrop(224, decoder="pillow")(data))
    monkeypatch.setattr(fused_crop, "simplejpeg_module", lambda: None)
    torch.manual_seed(1)
    assert np.array_equal(np.asarray(FusedDecodeCrop(224)(data)), expected)
    with pytest.raises(ImportError, match=r"revamper\[jpeg\]"):
        FusedDecodeCrop(224, decoder="simplejpeg")


def test_scaled_decode_is_close_to_the_full_resolution_path() -> None:
    data = encoded(photo())
    step = FusedDecodeCrop(64)
    scaled = 0
    for seed in range(40):
        torch.manual_seed(seed)
        _, _, h, w = step.params(500, 375)
        scaled += dct_scale((w, h), (64, 64)) > 1
        torch.manual_seed(seed)
        ours = step(data)
        after = torch.get_rng_state()
        torch.manual_seed(seed)
        theirs = plain(data, 64)
        assert torch.equal(after, torch.get_rng_state())
        assert psnr(ours, theirs) > PSNR_BAR_DB, seed
    assert scaled >= 20  # the bar was tested on scaled decodes, not only on identical ones


@pytest.mark.parametrize(("size", "mode"), [(224, "RGB"), ((100, 150), "RGB"), (32, "L")])
def test_output_size_and_mode(size: int | tuple[int, int], mode: str) -> None:
    step = FusedDecodeCrop(size, mode=mode)
    expected = (size, size) if isinstance(size, int) else (size[1], size[0])
    for data in (encoded(photo()), encoded(photo().convert("L")), encoded(photo(), "PNG")):
        out = step(data)
        assert out.size == expected and out.mode == mode


@pytest.mark.parametrize("kind", ["png", "pil"])
@pytest.mark.parametrize("resize", ["pil", "torch"])
def test_png_and_pil_inputs_take_the_plain_path(kind: str, resize: str) -> None:
    image = photo(300, 200)
    data: bytes | Image.Image = encoded(image, "PNG") if kind == "png" else image
    step = FusedDecodeCrop(48, resize=resize)  # small: a JPEG would be decoded scaled
    for seed in range(10):
        torch.manual_seed(seed)
        ours = step(data)
        torch.manual_seed(seed)
        if resize == "pil":
            assert np.array_equal(np.asarray(ours), np.asarray(plain(data, 48)))
        else:
            assert np.array_equal(np.asarray(ours), np.asarray(on_tensor(data, 48)))


def test_dct_scale_and_the_draft_request_give_exactly_that_scale() -> None:
    assert dct_scale((500, 375), (224, 224)) == 1
    assert dct_scale((448, 448), (224, 224)) == 2
    assert dct_scale((447, 448), (224, 224)) == 1
    assert dct_scale((1800, 1800), (224, 224)) == 8
    for width in range(8, 700, 7):
        for height in (8, 9, 15, 333, 375, 500):
            for scale in (2, 4, 8):
                image = Image.open(io.BytesIO(encoded(Image.new("RGB", (width, height)))))
                drafted = image.draft(None, draft_request((width, height), scale))
                assert drafted is not None
                assert image.size == (-(-width // scale), -(-height // scale)), (width, height)


def test_pickles_with_its_arguments_and_draws_alike() -> None:
    step = FusedDecodeCrop((80, 60), scale=(0.5, 1.0), ratio=(0.9, 1.1), mode="L")
    copy = pickle.loads(pickle.dumps(step))
    assert repr(copy) == repr(step)
    data = encoded(photo())
    torch.manual_seed(5)
    first = np.asarray(step(data))
    torch.manual_seed(5)
    assert np.array_equal(np.asarray(copy(data)), first)


def test_a_step_pickled_before_the_resize_option_keeps_resizing_with_pillow() -> None:
    state = dict(FusedDecodeCrop(224).__dict__)
    del state["resize"], state["decoder"]
    old = FusedDecodeCrop.__new__(FusedDecodeCrop)
    old.__setstate__(state)
    data = encoded(photo())
    torch.manual_seed(3)
    ours = old(data)
    torch.manual_seed(3)
    assert np.array_equal(np.asarray(ours), np.asarray(plain(data, 224)))


def test_rejects_nonsense_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        FusedDecodeCrop(0)
    with pytest.raises(ValueError, match="increasing"):
        FusedDecodeCrop(10, scale=(1.0, 0.5))
    with pytest.raises(ValueError, match="resize must be one of torch, pil, got 'cv2'"):
        FusedDecodeCrop(10, resize="cv2")
    with pytest.raises(ValueError, match="decoder must be one of auto, pillow, simplejpeg"):
        FusedDecodeCrop(10, decoder="turbo")


@pytest.mark.parametrize(
    "interpolation",
    [0, Image.Resampling.NEAREST, 3, Image.Resampling.BICUBIC, T.InterpolationMode.BOX],
)
def test_interpolation_as_an_int_or_a_pil_enum_means_what_it_means_to_torchvision(
    interpolation: object,
) -> None:
    # Found in review: `interpolation or BILINEAR` made NEAREST (0) bilinear, and the other
    # ints crashed on the DCT-scaled path and in the repr (the step's cache identity).
    step = FusedDecodeCrop(64, interpolation=interpolation, resize="pil")
    reference = T.RandomResizedCrop(64, interpolation=interpolation)  # type: ignore[arg-type]
    assert step.interpolation == reference.interpolation
    assert f"interpolation={reference.interpolation.value}" in repr(step)
    for width, height in ((500, 375), (100, 80)):  # scaled (crop >= 128 px) and full size
        data = encoded(photo(width, height))
        for seed in range(4):
            torch.manual_seed(seed)
            ours = step(data)
            torch.manual_seed(seed)
            theirs = reference(Decode()(data))
            assert ours.size == theirs.size == (64, 64)
            if width == 100:
                assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("bad", [7, -1, "bilinear", True, 2.0])
def test_an_interpolation_pillow_cannot_resize_with_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="interpolation must be"):
        FusedDecodeCrop(64, interpolation=bad)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(32, (32, 32)), (np.int64(32), (32, 32)), (32.0, (32, 32)), ([5], (5, 5)), ((3, 4), (3, 4))],
)
def test_sizes_are_taken_as_torchvision_takes_them(size: object, expected: tuple[int, int]) -> None:
    assert FusedDecodeCrop(size).size == T.RandomResizedCrop(size).size == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [(32, 32, 32), (), "ab", None, ("a", 2)])
def test_a_size_of_no_two_sides_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="size must be an int or a sequence of one or two"):
        FusedDecodeCrop(bad)  # type: ignore[arg-type]


def test_ratios_that_differ_past_four_digits_are_different_steps() -> None:
    # Found in review: the repr (the disk cache's identity of the step) printed the ratio to
    # four digits, so a cache built for one ratio was served to another.
    one = FusedDecodeCrop(224, ratio=(0.75, 4 / 3))
    other = FusedDecodeCrop(224, ratio=(0.7500049, 1.3334))
    assert repr(one) != repr(other)
    assert transform_identity(one) != transform_identity(other)


def test_the_resize_is_part_of_the_steps_identity() -> None:
    # A cache keyed on the partial transform must not serve Pillow-resized crops to a
    # torch-resized pipeline or back.
    assert repr(FusedDecodeCrop(224)) != repr(FusedDecodeCrop(224, resize="pil"))
    assert "resize='torch'" in repr(FusedDecodeCrop(224))


def test_fuse_decode_crop_keeps_the_crop_arguments_and_moves_the_split() -> None:
    pipeline = load_pipeline("imagenet")
    fused = fuse_decode_crop(pipeline)
    assert fused is not None and fused.name == "imagenet-fused"
    assert fused.step_names[0] == "decode_random_resized_crop"
    assert fused.step_names[1:] == pipeline.step_names[2:]
    assert fused.default_split == 1 and fused.simplified is not None
    assert load_pipeline("imagenet-fused").describe_split() == fused.describe_split()
    custom = pipeline_from(
        [Decode("L"), T.RandomResizedCrop((30, 40), scale=(0.2, 0.3), ratio=(1.0, 2.0))],
        name="custom",
    )
    step = fuse_decode_crop(custom)
    assert step is not None
    assert repr(step.steps[0][1]) == repr(
        FusedDecodeCrop((30, 40), scale=(0.2, 0.3), ratio=(1.0, 2.0), mode="L")
    )
    assert fuse_decode_crop(pipeline_from([Decode(), T.CenterCrop(10)], name="x")) is None
    assert fuse_decode_crop(pipeline_from((Decode(), Decode()), name="pair")) is None


class JpegDataset(torch.utils.data.Dataset[tuple[bytes, int]]):
    """Items are ``(JPEG bytes, index)``, like the built-in data set's."""

    def __init__(self, count: int, width: int, height: int) -> None:
        self.items = [encoded(photo(width, height, seed=k)) for k in range(count)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[bytes, int]:
        return self.items[index], index


def _batches(dataset: JpegDataset, size: int, *, fused: bool) -> list[torch.Tensor]:
    from revamper.loader import RevamperLoader

    partial, final = light_pipeline(size, fused=fused).split()
    loader = RevamperLoader(
        dataset,
        batch_size=4,
        shuffle=True,
        partial_transform=partial,
        final_transform=final,
        reuse_factor=2,
        num_workers=2,
        seed=7,
    )
    try:
        return [images for _ in range(2) for images, _ in loader]
    finally:
        loader.close()


@pytest.mark.slow
def test_through_the_loader_with_two_workers() -> None:
    # 200x150 with output 100: never scaled, so fused and plain differ only by the resize.
    dataset = JpegDataset(12, 200, 150)
    fused = _batches(dataset, 100, fused=True)
    assert len(fused) == 6 and all(b.shape[1:] == (3, 100, 100) for b in fused)
    plain_batches = _batches(dataset, 100, fused=False)
    for a, b in zip(fused, plain_batches, strict=True):
        assert int((a.to(torch.int16) - b.to(torch.int16)).abs().max()) <= TORCH_RESIZE_MAX_ABS
    # Output 32: most decodes are scaled; the loader's seeding still makes runs repeatable.
    again = zip(_batches(dataset, 32, fused=True), _batches(dataset, 32, fused=True), strict=True)
    assert all(torch.equal(a, b) for a, b in again)
