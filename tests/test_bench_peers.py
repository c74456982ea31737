"""Peers in ``revamper bench``: FFCV and DALI scenarios, and the one line when they are missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from revamper.bench import harness, peers, summary
from revamper.bench.scenarios import Scenario
from revamper.cli import main
from revamper.datasets.folder import image_folder
from revamper.pipelines import load_pipeline, pipeline_from
from tests.test_bench_cli import SMALL, make_folder


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


FFCV = _installed("ffcv")
DALI = _installed("nvidia.dali")


def test_the_registry_offers_ffcv_and_dali() -> None:
    for kind in ("ffcv", "dali"):
        scenario = Scenario.parse(kind)
        assert scenario.kind == kind and scenario.name == kind
        assert scenario.peer and not scenario.caches
        assert scenario.available(load_pipeline("imagenet"))
        with pytest.raises(ValueError, match="takes no reuse factor"):
            Scenario.parse(f"{kind}:3")
    assert not Scenario.parse("refurbish:3").peer
    assert Scenario.parse("refurbish:3").missing() is None
    with pytest.raises(ValueError, match="ffcv or dali"):
        Scenario.parse("nope")


@pytest.mark.skipif(FFCV or DALI, reason="this checks the state where the peers are missing")
def test_a_missing_peer_is_one_line_saying_how_to_install_it() -> None:
    ffcv, dali = Scenario.parse("ffcv").missing(), Scenario.parse("dali").missing()
    assert ffcv is not None and "\n" not in ffcv and "pip install ffcv" in ffcv
    assert "libturbojpeg0-dev" in ffcv and "docs/benchmarks.md" in ffcv
    assert dali is not None and "\n" not in dali and "nvidia-dali" in dali


@pytest.mark.skipif(FFCV or DALI, reason="this checks the state where the peers are missing")
def test_bench_skips_missing_peers_with_one_line_and_runs_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["bench", "--data", str(data), "--scenarios", "standard,ffcv,dali", "--workers", "0"]
    assert main([*argv, *SMALL, "--no-plot", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("skipping")]
    assert len(lines) == 2, err
    assert lines[0].startswith("skipping ffcv: FFCV is not installed") and "pip install" in lines[0]
    assert lines[1].startswith("skipping dali: NVIDIA DALI is not installed")
    assert "Traceback" not in err
    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert [r["scenario"] for r in records if r["type"] == "summary"] == ["standard"]
    only_peers = ["bench", "--data", str(data), "--scenarios", "ffcv", *SMALL]
    assert main([*only_peers, "--out", str(tmp_path / "o2")]) != 0
    assert "no scenario left to run" in capsys.readouterr().err


class FakePeer:
    """Stands in for FFCV's Loader: an iterable of ``(images, labels)`` per epoch."""

    def __init__(self, samples: int, batch: int) -> None:
        self.sizes = [min(batch, samples - start) for start in range(0, samples, batch)]
        self.closed = False

    def __iter__(self) -> Any:
        return iter(
            [(torch.zeros(n, 3, 4, 4, dtype=torch.uint8), torch.zeros(n)) for n in self.sizes]
        )

    def close(self) -> None:
        self.closed = True


def test_a_peer_runs_in_the_harness_next_to_standard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[FakePeer] = []

    def fake(root: Path, size: tuple[int, int], batch: int, threads: int, seed: int) -> FakePeer:
        assert size == (224, 224) and threads == 1 and root == tmp_path / "data"
        made.append(FakePeer(24, batch))
        return made[-1]

    monkeypatch.setattr(peers, "_ffcv_loader", fake)
    dataset = image_folder(make_folder(tmp_path / "data"))
    scenarios = [Scenario.parse("standard"), Scenario.parse("ffcv")]
    options = harness.BenchOptions(epochs=2, repeats=1, batch_size=8, num_workers=0)
    runs = harness.run_benchmark(scenarios, dataset, load_pipeline("light"), options)
    ffcv = [run for run in runs if run.scenario == "ffcv"]
    assert [e.samples for e in ffcv[0].epochs] == [24, 24]
    assert [e.epoch for e in ffcv[0].epochs] == [0, 1]
    assert all(e.stats["batches"] == 3 and e.stats["wall_seconds"] > 0 for e in ffcv[0].epochs)
    assert made[0].closed
    summaries = {s.scenario: s for s in summary.summarize(scenarios, runs, options)}
    assert summaries["ffcv"].bound is None and summaries["ffcv"].steady_speedup is not None


def test_dali_batches_become_images_and_labels() -> None:
    batches = [[{"images": torch.zeros(5, 3, 2, 2), "labels": torch.arange(5)}]]
    epoch = peers.PeerEpoch(batches, 3, dali=True)
    images, labels = next(epoch)
    assert images.shape == (5, 3, 2, 2) and labels.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(StopIteration):
        next(epoch)
    assert epoch.stats.epoch == 3 and epoch.stats.samples == 5 and epoch.stats.complete


def test_the_beton_is_named_by_the_folders_files(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", classes=2, per_class=2)
    first = peers.beton_path(root)
    assert first.parent == tmp_path and first.name.startswith("data.ffcv-q90-")
    assert peers.beton_path(root) == first
    (root / "class0" / "0.jpg").write_bytes(b"changed")
    assert peers.beton_path(root) != first


def test_peers_crop_to_the_pipelines_crop_size() -> None:
    from torchvision import transforms as T

    assert peers.crop_size(load_pipeline("imagenet")) == (224, 224)
    assert peers.crop_size(load_pipeline("light-fused")) == (224, 224)
    custom = pipeline_from([T.RandomResizedCrop((96, 128))], name="c")
    assert peers.crop_size(custom) == (96, 128)
    assert peers.crop_size(pipeline_from([T.CenterCrop(10)], name="d")) == (224, 224)


@pytest.mark.skipif(not FFCV, reason="FFCV is not installed")
@pytest.mark.slow
def test_ffcv_runs_when_installed(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    argv = ["bench", "--data", str(data), "--scenarios", "standard,ffcv", "--workers", "1"]
    assert main([*argv, *SMALL, "--no-plot", "--out", str(tmp_path / "out")]) == 0
    assert peers.beton_path(data).is_file()


@pytest.mark.skipif(not DALI, reason="NVIDIA DALI is not installed")
@pytest.mark.slow
def test_dali_runs_when_installed(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["bench", "--data", str(data), "--scenarios", "standard,dali", "--workers", "1"]
    assert main([*argv, *SMALL, "--no-plot", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch" and r["scenario"] == "dali"]
    assert [r["samples"] for r in epochs] == [24, 24]
