"""The benchmark's data: the generated built-in set, its cache, and checks of a user's folder."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from revamper.datasets import builtin as data
from revamper.datasets.builtin import CLASSES, MANIFEST_NAME, builtin_data_dir, generate_builtin
from revamper.datasets.folder import DataError, image_folder, read_bytes, scan_image_folder

SMALL = 30


@pytest.fixture(scope="module")
def bench_extra() -> None:
    # The dev extra installs the bench extra: a missing package is a failure, not a skip.
    import skimage  # noqa: F401
    import sklearn  # noqa: F401


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory, bench_extra: None) -> Path:
    """One generated set of 30 images (seed 0), shared by the read-only tests."""
    return generate_builtin(tmp_path_factory.mktemp("gen") / "set", num_images=SMALL, seed=0)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def write_jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 100, 50)).save(path, format="JPEG", quality=90)
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------
# Generation


def test_layout_counts_and_manifest(small_set: Path) -> None:
    assert sorted(p.name for p in small_set.iterdir() if p.is_dir()) == list(CLASSES)
    assert len(CLASSES) == 10
    for name in CLASSES:
        files = sorted(p.name for p in (small_set / name).iterdir())
        assert files == [f"{name}_{k:05d}.jpg" for k in range(3)]
    manifest = json.loads((small_set / MANIFEST_NAME).read_text())
    assert manifest["generator_version"] == data.GENERATOR_VERSION
    assert manifest["seed"] == 0
    assert manifest["num_images"] == SMALL
    assert manifest["quality"] == 90
    assert manifest["classes"] == list(CLASSES)
    assert manifest["counts"] == dict.fromkeys(CLASSES, 3)
    # nothing left beside it: the temporary folder was renamed into place
    assert [p.name for p in small_set.parent.iterdir()] == [small_set.name]


def test_every_file_is_a_jpeg_of_an_imagenet_like_size(small_set: Path) -> None:
    files = sorted(small_set.rglob("*.jpg"))
    assert len(files) == SMALL
    for path in files:
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            image.load()
            width, height = image.size
        assert data.MIN_SHORT_SIDE <= min(width, height) <= data.MAX_SHORT_SIDE
        assert data.MIN_ASPECT - 0.01 <= width / height <= data.MAX_ASPECT + 0.01
    sizes = Counter(Image.open(path).size for path in files)
    assert sizes[(500, 375)] >= SMALL // 3


def test_size_distribution_is_mostly_500x375() -> None:
    sizes = Counter(data._draw_size(data._image_rng(0, 0, k)) for k in range(2000))
    assert sizes[(500, 375)] / 2000 > 0.55
    portrait = sum(n for (w, h), n in sizes.items() if h > w)
    square = sum(n for (w, h), n in sizes.items() if h == w)
    assert portrait / 2000 > 0.10
    assert square / 2000 > 0.03
    assert len(sizes) > 50  # the random tail
    for w, h in sizes:
        assert data.MIN_SHORT_SIDE <= min(w, h) <= data.MAX_SHORT_SIDE
        assert data.MIN_ASPECT - 0.01 <= w / h <= data.MAX_ASPECT + 0.01


def test_crops_stay_inside_the_photo_and_cover_at_least_a_fifth() -> None:
    for photo_size in [(512, 512), (451, 300), (1411, 1411), (640, 427)]:
        for k in range(300):
            params = data._draw_params(data._image_rng(0, 0, k), photo_size, 90)
            left, top, right, bottom = params.box
            assert 0 <= left < right <= photo_size[0]
            assert 0 <= top < bottom <= photo_size[1]
            area = (right - left) * (bottom - top) / math.prod(photo_size)
            assert 0.2 - 1e-9 <= area <= 1 + 1e-9
            assert 88 <= params.quality <= 92


def test_remainder_goes_to_the_last_classes() -> None:
    counts = data._class_counts(35)
    assert list(counts.values()) == [3] * 5 + [4] * 5
    assert sum(data._class_counts(2000).values()) == 2000


def test_same_seed_is_byte_identical_and_another_seed_differs(
    small_set: Path, tmp_path: Path
) -> None:
    again = generate_builtin(tmp_path / "again", num_images=SMALL, seed=0, progress=False)
    assert tree_bytes(again) == tree_bytes(small_set)
    other = generate_builtin(tmp_path / "other", num_images=SMALL, seed=1, progress=False)
    first, second = tree_bytes(small_set), tree_bytes(other)
    assert first.keys() == second.keys()
    differing = [name for name in first if name.endswith(".jpg") and first[name] != second[name]]
    assert len(differing) == SMALL


def test_a_smaller_set_holds_the_same_first_images(small_set: Path, tmp_path: Path) -> None:
    smaller = tree_bytes(generate_builtin(tmp_path / "s", num_images=10, progress=False))
    full = tree_bytes(small_set)
    for name, content in smaller.items():
        if name.endswith(".jpg"):
            assert full[name] == content


def test_generation_refuses_an_existing_folder_and_bad_parameters(
    tmp_path: Path, bench_extra: None
) -> None:
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        generate_builtin(tmp_path / "exists", num_images=10, progress=False)
    with pytest.raises(ValueError, match="at least 10"):
        generate_builtin(tmp_path / "few", num_images=9, progress=False)
    with pytest.raises(ValueError, match="seed"):
        generate_builtin(tmp_path / "neg", num_images=10, seed=-1, progress=False)
    with pytest.raises(ValueError, match="quality"):
        generate_builtin(tmp_path / "q", num_images=10, quality=0, progress=False)


def test_an_interrupted_generation_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_extra: None
) -> None:
    real_render = data._render
    calls = 0

    def failing_render(*args: object) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return real_render(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(data, "_render", failing_render)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        builtin_data_dir(num_images=20, cache_dir=cache, progress=False)
    parent = cache / "data"
    assert list(parent.iterdir()) == []  # neither the set nor its temporary folder
    monkeypatch.setattr(data, "_render", real_render)
    folder = builtin_data_dir(num_images=20, cache_dir=cache, progress=False)
    assert scan_image_folder(folder).num_images == 20


def test_builtin_data_dir_removes_temporaries_of_killed_generations(
    tmp_path: Path, bench_extra: None
) -> None:
    parent = tmp_path / "data"
    name = f"builtin-v{data.GENERATOR_VERSION}-seed0-n10"
    stale, fresh = parent / f".{name}.tmp-stale", parent / f".{name}.tmp-fresh"
    write_jpeg(stale / "astronaut" / "astronaut_00000.jpg")
    fresh.mkdir()  # maybe another process generating right now: left alone
    old = stale.stat().st_mtime - 2 * data._STALE_TMP_S
    os.utime(stale, (old, old))
    folder = builtin_data_dir(num_images=10, cache_dir=tmp_path, progress=False)
    assert sorted(p.name for p in parent.iterdir()) == sorted([folder.name, fresh.name])


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'revamper\[bench\]'"):
        generate_builtin(tmp_path / "x", num_images=10, progress=False)
    assert not (tmp_path / "x").exists()


def test_progress_bar_goes_to_stderr_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bench_extra: None
) -> None:
    generate_builtin(tmp_path / "p", num_images=10, progress=True)
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------------------------
# The cached built-in set


def test_builtin_data_dir_generates_once_then_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="revamper.datasets.builtin"):
        folder = builtin_data_dir(num_images=10, seed=3, cache_dir=tmp_path, progress=False)
    assert folder == tmp_path / "data" / f"builtin-v{data.GENERATOR_VERSION}-seed3-n10"
    assert any("generating" in record.getMessage() for record in caplog.records)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    def no_generation(*args: object, **kwargs: object) -> Path:
        raise AssertionError("regenerated a valid set")

    monkeypatch.setattr(data, "generate_builtin", no_generation)
    assert builtin_data_dir(num_images=10, seed=3, cache_dir=tmp_path) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == mtimes


@pytest.mark.parametrize("damage", ["no-manifest", "other-manifest", "missing-file", "garbage"])
def test_builtin_data_dir_regenerates_a_damaged_set(
    tmp_path: Path, damage: str, bench_extra: None
) -> None:
    folder = builtin_data_dir(num_images=10, cache_dir=tmp_path, progress=False)
    good = tree_bytes(folder)
    manifest = folder / MANIFEST_NAME
    if damage == "no-manifest":  # what a killed generation would look like if renamed early
        manifest.unlink()
    elif damage == "other-manifest":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "seed": 5}))
    elif damage == "missing-file":
        next(folder.rglob("*.jpg")).unlink()
    else:
        manifest.write_text("{not json")
    assert builtin_data_dir(num_images=10, cache_dir=tmp_path, progress=False) == folder
    assert tree_bytes(folder) == good


def test_cache_location_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REVAMPER_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data._cache_root(None) == tmp_path / "home" / ".cache" / "revamper"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert data._cache_root(None) == tmp_path / "home" / ".cache" / "revamper"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data._cache_root(None) == tmp_path / "xdg" / "revamper"
    monkeypatch.setenv("REVAMPER_CACHE_DIR", str(tmp_path / "rev"))
    assert data._cache_root(None) == tmp_path / "rev"
    assert data._cache_root(tmp_path / "arg") == tmp_path / "arg"


# ---------------------------------------------------------------------------------------------
# A user's folder


def test_scan_reports_what_image_folder_sees(small_set: Path) -> None:
    info = scan_image_folder(small_set)
    assert info.root == small_set
    assert info.classes == CLASSES
    assert info.num_images == SMALL == len(image_folder(small_set))
    assert info.counts == dict.fromkeys(CLASSES, 3)


def test_scan_counts_nested_files_and_skips_other_extensions(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "b" / "x.jpg")
    write_jpeg(tmp_path / "a" / "deeper" / "y.JPEG")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "top-level.jpg").write_bytes(b"ignored: not in a class folder")
    info = scan_image_folder(tmp_path)
    assert info.classes == ("a", "b")
    assert info.counts == {"a": 1, "b": 1}
    assert info.num_images == 2 == len(image_folder(tmp_path))


def make_truncated(root: Path) -> Path:
    content = write_jpeg(root / "cat" / "good.jpg", (320, 240))
    bad = root / "cat" / "truncated.jpg"
    bad.write_bytes(content[: len(content) * 2 // 3])
    return bad


def make_corrupt(root: Path) -> Path:
    write_jpeg(root / "cat" / "good.jpg")
    bad = root / "dog" / "corrupt.jpg"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    return bad


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("file", "is not a folder"),
        ("empty", "no class sub-folders"),
        ("no-images", "no images"),
        ("one-empty-class", "has no images"),
        ("corrupt", "1 of 2 images"),
        ("truncated", "1 of 2 images"),
    ],
)
def test_scan_errors_name_the_path(tmp_path: Path, case: str, message: str) -> None:
    root = tmp_path / "data"
    named = root
    if case == "file":
        root.write_text("a file")
    elif case == "empty":
        root.mkdir()
    elif case == "no-images":
        (root / "cat").mkdir(parents=True)
        (root / "dog").mkdir()
        (root / "dog" / "readme.txt").write_text("no images here")
    elif case == "one-empty-class":
        write_jpeg(root / "cat" / "a.jpg")
        (root / "dog").mkdir()
        named = root / "dog"
    elif case == "corrupt":
        named = make_corrupt(root)
    elif case == "truncated":
        named = make_truncated(root)
    with pytest.raises(DataError, match=message) as caught:
        scan_image_folder(root)
    text = str(caught.value)
    assert str(named) in text
    assert "\n" not in text
    assert isinstance(caught.value, ValueError)


def test_scan_without_verify_skips_decoding(tmp_path: Path) -> None:
    make_truncated(tmp_path)
    assert scan_image_folder(tmp_path, verify=False).num_images == 2


# ---------------------------------------------------------------------------------------------
# Reading


def test_image_folder_items_are_encoded_bytes_and_class_index(small_set: Path) -> None:
    dataset = image_folder(small_set)
    assert dataset.classes == list(CLASSES)
    encoded, target = dataset[len(dataset) - 1]
    assert isinstance(encoded, bytes)
    assert isinstance(target, int)
    assert target == len(CLASSES) - 1
    assert encoded[:2] == b"\xff\xd8"  # a JPEG, still encoded
    path, _ = dataset.samples[len(dataset) - 1]
    assert encoded == Path(path).read_bytes() == read_bytes(path)
    restored = pickle.loads(pickle.dumps(dataset))  # goes to DataLoader workers as is
    assert restored[0] == dataset[0]


def test_read_bytes_is_picklable_by_reference() -> None:
    assert pickle.loads(pickle.dumps(read_bytes)) is read_bytes
