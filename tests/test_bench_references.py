"""The bench's references: a plain torch DataLoader (``torch``), the limit at r -> infinity
(``limit``), per-scenario pipelines, and the ratios against them in the summary and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from revamper.baselines.variants import LIMIT_REUSE_FACTOR, loader_variant
from revamper.bench import harness, report
from revamper.bench.harness import BenchOptions, EpochRecord, RunRecord
from revamper.bench.plain import PlainTorchLoader, timed_collate
from revamper.bench.scenarios import Scenario
from revamper.bench.summary import ScenarioSummary, _bound, summarize
from revamper.cli import main
from revamper.costmodel import StageCosts
from revamper.datasets.folder import image_folder
from revamper.loader import RevamperLoader
from revamper.pipelines import load_pipeline, pipeline_from
from tests.test_bench_cli import SMALL, make_folder

COSTS = StageCosts(load=4.0, partial=2.0, final=1.0, collate=0.5, get=0.2, put=0.3)


def plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def times_ten(x: torch.Tensor) -> torch.Tensor:
    return x * 10


class Numbers:
    """Item i is ``(tensor([i]), i)``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([index]), index


# --- parsing ---------------------------------------------------------------------------------


def test_torch_is_a_plain_dataloader_scenario() -> None:
    scenario = Scenario.parse("torch")
    assert (scenario.name, scenario.plain, scenario.peer) == ("torch", True, False)
    assert scenario.variant is None and not scenario.caches and scenario.missing() is None
    for bad in ("torch:3", "torch@arena"):
        with pytest.raises(ValueError, match="takes no reuse factor"):
            Scenario.parse(bad)
    assert Scenario.parse("torch/light").name == "torch/light"
    assert _bound(scenario, COSTS, COSTS) is None  # not a revamper variant


def test_limit_caches_at_the_largest_reuse_factor_and_takes_a_cache() -> None:
    limit = Scenario.parse("limit")
    assert (limit.name, limit.caches, limit.reuse_factor) == ("limit", True, 1)
    assert Scenario.parse("limit@disk").name == "limit-disk"
    assert Scenario.parse("limit@disk").cache == "disk"
    with pytest.raises(ValueError, match="takes no reuse factor"):
        Scenario.parse("limit:3")
    assert LIMIT_REUSE_FACTOR == 65535
    assert _bound(limit, COSTS, COSTS) == pytest.approx(COSTS.refurbishing_bound(65535))
    loader = limit.make_loader(list(range(8)), load_pipeline("light"), None, batch_size=4)
    assert isinstance(loader, RevamperLoader)
    with loader:
        assert loader.plan_config.reuse_factor == LIMIT_REUSE_FACTOR
    # Its diversity: one partial augmentation per run, reused with k fresh final ones.
    versions = loader_variant("limit").versions
    assert versions is not None and versions(3, 4, 2, 100) == pytest.approx(2 - 2 * 0.5**4)


def test_a_scenario_may_run_a_pipeline_of_its_own() -> None:
    light = Scenario.parse("refurbish:3/light")
    assert (light.name, light.pipeline, light.reuse_factor) == ("refurbish-r3/light", "light", 3)
    assert Scenario.parse("refurbish:3@disk/light+fused").name == "refurbish-r3-disk/light-fused"
    assert Scenario.parse("limit@disk/light").name == "limit-disk/light"
    assert _bound(light, COSTS, COSTS) is None  # the base costs are of the run's pipeline
    with pytest.raises(ValueError, match="unknown pipeline"):
        Scenario.parse("refurbish:3/bogus")
    with pytest.raises(ValueError, match="a peer runs its own pipeline"):
        Scenario.parse("ffcv/light")
    # Its own pipeline, not the run's: light has no simplified variant, imagenet does.
    assert not Scenario.parse("simplified/light").available(load_pipeline("imagenet"))
    assert Scenario.parse("simplified/imagenet").available(load_pipeline("light"))


def test_a_scenario_of_its_own_pipeline_runs_that_pipeline() -> None:
    run_pipeline = pipeline_from([plus_one, times_ten], name="run")
    data = Numbers(6)
    spec = f"standard/{__name__}:_ten_times"
    loader = Scenario.parse(spec).make_loader(data, run_pipeline, None, batch_size=6)
    assert isinstance(loader, RevamperLoader)
    with loader:
        (values, labels), *_ = list(loader)
    assert torch.equal(values.flatten(), labels * 10)


def _ten_times() -> list[Any]:
    return [times_ten]


# --- the plain DataLoader --------------------------------------------------------------------


def test_timed_collate_is_default_collate_plus_the_batch_figures() -> None:
    items = [(torch.tensor([i]), i, 0.001, 0.002) for i in range(4)]
    values, labels, stats = timed_collate(items)
    assert torch.equal(values, torch.tensor([[0], [1], [2], [3]]))
    assert torch.equal(labels, torch.tensor([0, 1, 2, 3]))
    assert (stats.samples, stats.planned_misses) == (4, 4)
    assert stats.cpu_load == pytest.approx(0.004) and stats.cpu_partial == pytest.approx(0.008)
    assert stats.cpu_collate >= 0 and stats.cpu_final == 0


@pytest.mark.slow
def test_plain_loader_runs_the_whole_pipeline_in_real_workers() -> None:
    pipeline = pipeline_from([plus_one, times_ten], name="two-steps")
    seen: list[list[int]] = []
    with PlainTorchLoader(
        Numbers(40), pipeline, batch_size=8, num_workers=2, seed=3, persistent_workers=True
    ) as loader:
        for epoch in range(2):
            iterator = iter(loader)
            labels_seen: list[int] = []
            for values, labels in iterator:
                # every step of the pipeline, in order: (i + 1) * 10
                assert torch.equal(values.flatten(), (labels + 1) * 10)
                labels_seen += labels.tolist()
            stats = iterator.stats
            assert stats.epoch == epoch and (stats.samples, stats.batches) == (40, 5)
            assert stats.planned_misses == 40 and stats.hits == 0
            assert stats.cpu_partial > 0 and stats.cpu_final == 0 and stats.wall_seconds > 0
            assert len(stats.batch_cpu) == 5
            seen.append(labels_seen)
        workers = list(loader.loader._iterator._workers)  # type: ignore[union-attr]
        assert len(workers) == 2 and all(w.is_alive() for w in workers)  # persistent
    assert not any(w.is_alive() for w in workers)  # closed with the loader
    assert all(sorted(order) == list(range(40)) for order in seen)  # each sample once
    assert seen[0] != seen[1]  # shuffled afresh each epoch
    again = PlainTorchLoader(Numbers(40), pipeline, batch_size=8, seed=3)
    assert [int(i) for _, labels in again for i in labels] == seen[0]  # the seed fixes the order


@pytest.mark.slow
def test_torch_and_limit_through_the_harness(tmp_path: Path) -> None:
    dataset = image_folder(make_folder(tmp_path / "data"))
    options = BenchOptions(epochs=3, repeats=1, batch_size=8, num_workers=2)
    pipeline = load_pipeline("light")
    plain = harness.run_scenario(Scenario.parse("torch"), dataset, pipeline, options, 0)
    for epoch in plain.epochs:
        assert epoch.samples == 24 and len(epoch.waits) == 3
        assert epoch.stats["planned_misses"] == 24 and epoch.stats["cpu_partial"] > 0
    limit = harness.run_scenario(Scenario.parse("limit@disk"), dataset, pipeline, options, 0)
    assert limit.epochs[0].stats["planned_misses"] == 24
    for epoch in limit.epochs[1:]:  # the steady state is all hits
        assert epoch.stats["hits"] == 24
        assert epoch.stats["planned_misses"] + epoch.stats["unplanned_misses"] == 0
        assert epoch.stats["cpu_partial"] == 0 and epoch.stats["cpu_final"] > 0
    assert limit.entries == 24


# --- summaries and the report ----------------------------------------------------------------


def _record(scenario: str, repeat: int, epoch: int, wall: float) -> EpochRecord:
    stats: dict[str, Any] = {
        "samples": 100,
        "planned_misses": 100,
        "cpu_partial": 0.2,
        "cpu_final": 0.1,
    }
    stats.update(batch_cpu=[0.1], batch_samples=[100])
    return EpochRecord(scenario, repeat, epoch, 100, wall, [wall], stats)


def _run(scenario: str, repeat: int, epoch0: float, steady: float) -> RunRecord:
    walls = [epoch0, steady, steady]
    epochs = [_record(scenario, repeat, e, w) for e, w in enumerate(walls)]
    return RunRecord(scenario, repeat, epochs, None, 0)


SPECS = (
    "torch",
    "standard",
    "ffcv",
    "refurbish:3",
    "refurbish:3/light",
    "refurbish:3@arena",
    "echo:3",
    "limit",
    "limit/light",
)
# seconds per epoch (epoch 0, steady) in repeat 0; repeat 1 runs on a machine twice as slow
WALLS = {
    "torch": (2.0, 2.0),
    "standard": (2.0, 1.6),
    "ffcv": (1.5, 1.0),
    "refurbish-r3": (2.0, 1.0),
    "refurbish-r3/light": (1.0, 0.5),
    "refurbish-r3-arena": (2.0, 1.25),
    "echo-r3": (2.0, 0.4),
    "limit": (2.0, 0.8),
    "limit/light": (1.0, 0.4),
}


def _summaries() -> dict[str, ScenarioSummary]:
    scenarios = [Scenario.parse(spec) for spec in SPECS]
    runs = [
        _run(name, repeat, e0 * (1 + repeat), steady * (1 + repeat))
        for repeat in range(2)
        for name, (e0, steady) in WALLS.items()
    ]
    return {s.scenario: s for s in summarize(scenarios, runs, BenchOptions(cache="memory"))}


def test_every_scenario_is_compared_with_torch_and_the_peers_within_repeats() -> None:
    summaries = _summaries()
    refurbish = summaries["refurbish-r3"]
    assert set(refurbish.versus) == {"torch", "ffcv"}  # no dali in this run
    torch_ratio, ffcv_ratio = refurbish.versus["torch"], refurbish.versus["ffcv"]
    assert (torch_ratio.low, torch_ratio.median, torch_ratio.high) == pytest.approx((2, 2, 2))
    assert ffcv_ratio.median == pytest.approx(1.0)
    assert refurbish.epoch0_versus_torch is not None
    assert refurbish.epoch0_versus_torch.median == pytest.approx(1.0)
    assert summaries["ffcv"].versus["torch"].median == pytest.approx(2.0)
    assert "torch" not in summaries["torch"].versus  # not against itself
    assert summaries["torch"].epoch0_versus_torch is None


def test_of_limit_matches_the_limit_of_the_same_pipeline_and_cache() -> None:
    summaries = _summaries()
    expected = {
        "refurbish-r3": ("limit", 0.8),
        "refurbish-r3/light": ("limit/light", 0.8),
        "standard": ("limit", 0.5),  # caches nothing: the limit of its pipeline
    }
    for name, (limit, fraction) in expected.items():
        summary = summaries[name]
        assert summary.limit == limit and summary.of_limit is not None, name
        assert summary.of_limit.median == pytest.approx(fraction), name
    # No limit on the arena cache in the run; echoing's limit is not refurbishing's; the
    # limit, a peer and the plain DataLoader have none.
    for name in ("refurbish-r3-arena", "echo-r3", "limit", "limit/light", "ffcv", "torch"):
        assert summaries[name].of_limit is None and summaries[name].limit is None, name


def test_the_report_shows_the_references_and_survives_a_round_trip() -> None:
    summaries = list(_summaries().values())
    tables = report.tables(summaries, step_ms=0)
    references = tables[2]
    assert references.headers == [
        "scenario",
        "× torch",
        "× ffcv",
        "epoch 0 × torch",
        "of limit",
        "CPU ms/sample",
    ]
    row = next(r for r in references.rows if r[0] == "refurbish-r3")
    assert row[1].startswith("2.00x") and row[4].startswith("80%")
    text = report.markdown(summaries, step_ms=0, command="revamper bench")
    assert "of limit" in text and "80% of the limit" in text
    again = [ScenarioSummary.from_dict(json.loads(json.dumps(s.as_dict()))) for s in summaries]
    assert again == summaries
    # A run without references has no such table.
    plain = [dataclasses_replace(s) for s in summaries]
    assert len(report.tables(plain, step_ms=0)) == 2


def dataclasses_replace(summary: ScenarioSummary) -> ScenarioSummary:
    import dataclasses

    return dataclasses.replace(summary, versus={}, of_limit=None, limit=None)


@pytest.mark.slow
def test_bench_runs_torch_limit_and_a_pipeline_of_its_own(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    scenarios = "torch,standard,refurbish:2,refurbish:2/light,limit,limit/light"
    argv = ["bench", "--data", str(data), "--scenarios", scenarios, "--workers", "1"]
    assert main([*argv, *SMALL, "--no-plot", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    summaries = {r["scenario"]: r for r in records if r["type"] == "summary"}
    assert list(summaries) == [
        "torch",
        "standard",
        "refurbish-r2",
        "refurbish-r2/light",
        "limit",
        "limit/light",
    ]
    assert set(summaries["refurbish-r2"]["versus"]) == {"torch"}
    assert summaries["refurbish-r2"]["limit"] == "limit"
    assert summaries["refurbish-r2/light"]["limit"] == "limit/light"
    assert summaries["torch"]["cpu_ms_per_sample"]["partial"] > 0
    assert "of limit" in (out / "bench.md").read_text()
    (out / "bench.md").unlink()
    assert main(["bench", "--report", str(out / "bench.jsonl")]) == 0
    assert "of limit" in (out / "bench.md").read_text()
