"""The fused decode + crop in ``revamper bench`` (``+fused``, ``--fused``) and ``revamper plan``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from revamper.bench.scenarios import Scenario
from revamper.cli import main
from revamper.pipelines import load_pipeline
from tests.test_bench_cli import SMALL, make_folder


def test_fused_scenarios_parse_and_are_named_apart() -> None:
    fused = Scenario.parse("refurbish:3@disk+fused")
    assert (fused.kind, fused.reuse_factor, fused.cache, fused.fused) == (
        "refurbish",
        3,
        "disk",
        True,
    )
    assert fused.name == "refurbish-r3-disk-fused"
    assert Scenario.parse("standard+fused").name == "standard-fused"
    assert not Scenario.parse("standard").fused
    with pytest.raises(ValueError, match="peer runs its own pipeline"):
        Scenario.parse("ffcv+fused")
    with pytest.raises(ValueError, match="unknown scenario"):
        Scenario.parse("nope+fused")


def test_a_fused_scenario_caches_the_fused_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from revamper.bench import scenarios

    made: list[dict[str, Any]] = []
    monkeypatch.setattr(scenarios, "loader_of_kind", lambda kind, data, **kw: made.append(kw))
    pipeline = load_pipeline("imagenet")
    for split in (None, 2):  # the unfused pipeline's split after the crop is the fused step's
        Scenario.parse("refurbish:2+fused").make_loader([], pipeline, split, batch_size=8)
    Scenario.parse("refurbish:2").make_loader([], pipeline, None, batch_size=8)
    fused, after_crop, plain = (repr(kw["partial_transform"]) for kw in made)
    assert fused == after_crop and "FusedDecodeCrop(size=(224, 224)" in fused
    assert "RandomResizedCrop" not in fused.replace("FusedDecodeCrop", "")
    assert "RandomResizedCrop" in plain and "FusedDecodeCrop" not in plain
    assert "RandAugment" in repr(made[0]["final_transform"])


def test_bench_runs_fused_next_to_plain_and_with_the_flag(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["bench", "--data", str(data), "--workers", "0", "--pipeline", "light", *SMALL]
    assert main([*argv, "--scenarios", "standard,standard+fused", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    names = [r["scenario"] for r in records if r["type"] == "summary"]
    assert names == ["standard", "standard-fused"]
    flagged = tmp_path / "flagged"
    assert main([*argv, "--fused", "--scenarios", "standard", "--out", str(flagged)]) == 0
    options = next(
        json.loads(line)
        for line in (flagged / "bench.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "options"
    )
    assert options["pipeline"] == "light-fused"
    assert options["split"].startswith("decode_random_resized_crop |")


def test_plan_tunes_the_fused_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_folder(tmp_path / "data", classes=2, per_class=4)
    fast = ["--sample", "4", "--workers", "0", "--batch-size", "4", "--no-progress"]
    assert main(["plan", "--data", str(data), "--pipeline", "light", "--fused", *fast]) == 0
    captured = capsys.readouterr()
    assert "pipeline light-fused (decode_random_resized_crop," in " ".join(captured.err.split())
    assert "--fused" in captured.out  # the bench command it suggests runs the same pipeline
    assert main(["plan", "--data", str(data), "--pipeline", "imagenet-fused", *fast]) == 0
    bad = ["plan", "--data", str(data), "--pipeline", "tests.test_bench_fused:unfusable"]
    assert main([*bad, "--fused", *fast]) == 2
    assert "cannot be fused" in capsys.readouterr().err


def unfusable() -> list[object]:
    from torchvision import transforms as T

    from revamper.pipelines import Decode

    return [Decode(), T.CenterCrop(16), T.PILToTensor()]
