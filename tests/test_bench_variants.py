"""One registry of loader variants serves the benchmark's scenarios and the experiments' arms."""

from __future__ import annotations

import math
from typing import Any

import pytest

from revamper.baselines import variants
from revamper.baselines.variants import LoaderVariant, loader_variant, register_variant
from revamper.bench.scenarios import Scenario
from revamper.bench.summary import _bound
from revamper.costmodel import StageCosts
from revamper.experiments.arms import Arm
from revamper.experiments.paper_diversity import expected_versions
from revamper.loader import RevamperLoader
from revamper.pipelines import load_pipeline

COSTS = StageCosts(load=4.0, partial=2.0, final=1.0, collate=0.5, get=0.2, put=0.3)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private copy of the registry, so a test may add to it."""
    monkeypatch.setattr(variants, "_VARIANTS", dict(variants._VARIANTS))


def test_every_variant_is_an_arm_and_every_image_variant_a_scenario() -> None:
    for variant in variants.loader_variants():
        spec = f"{variant.name}:3" if variant.takes_r else variant.name
        assert Arm.parse(spec).kind == variant.name
        if variant.pipeline in ("full", "simplified"):
            scenario = Scenario.parse(spec)
            assert scenario.variant is variant
            assert scenario.name == (f"{variant.name}-r3" if variant.takes_r else variant.name)
    names = variants.variant_names(("full", "simplified"))
    assert names[:5] == ("standard", "simplified", "echo", "refurbish", "unbalanced")
    assert "none" not in names  # the benchmark's pipelines have no "none" variant


def test_the_accepted_words_come_from_the_registry() -> None:
    with pytest.raises(ValueError, match="use none, standard") as arm:
        Arm.parse("bogus")
    assert "unbalanced:R" in str(arm.value)
    with pytest.raises(ValueError, match="unknown scenario") as scenario:
        Scenario.parse("bogus")
    words = [f"{v.name}:R" if v.takes_r else v.name for v in variants.loader_variants()]
    message = str(scenario.value)
    assert message.endswith("ffcv or dali")
    # none is not a scenario; torch (a plain DataLoader) is the bench's own, before the peers
    assert message.split(": use ")[1].split(", torch, ffcv")[0] == ", ".join(words[1:])


def _build_unlisted(dataset: Any, **kwargs: Any) -> RevamperLoader:
    return RevamperLoader(dataset, **kwargs)


def test_a_new_variant_is_one_registration(registry: None) -> None:
    register_variant(
        LoaderVariant(
            "unlisted",
            "refurbishing without the cache-aware shuffle and without drop_last",
            takes_r=True,
            build=_build_unlisted,
            bound=lambda costs, r: 42.0,
            loader_options={"balance_misses": False, "drop_last": False},
            versions=lambda r, k, final, full: k / r,
        )
    )
    # The benchmark runs it, names it, caches for it and bounds it ...
    scenario = Scenario.parse("unlisted:2@disk")
    assert (scenario.name, scenario.caches) == ("unlisted-r2-disk", True)
    assert _bound(scenario, COSTS, COSTS) == 42.0
    pipeline = load_pipeline("light")
    with scenario.make_loader(list(range(8)), pipeline, None, batch_size=4) as loader:
        assert isinstance(loader, RevamperLoader)
        config = loader.plan_config
        assert (config.reuse_factor, config.balance_misses) == (2, False)
    # ... and the experiment trains from it and knows its expected diversity.
    arm = Arm.parse("unlisted-r3")
    assert (arm.name, arm.pipeline) == ("unlisted-r3", "full")
    assert expected_versions("unlisted", 3, 12, 5) == 4.0
    with pytest.raises(ValueError, match="registered already"):
        register_variant(loader_variant("standard"))


def test_variants_fix_their_loader_options() -> None:
    pipeline = load_pipeline("light")
    for spec, balanced in (("refurbish:3", True), ("unbalanced:3", False)):
        with Scenario.parse(spec).make_loader(list(range(8)), pipeline, None, batch_size=4) as lo:
            assert isinstance(lo, RevamperLoader)
            assert (lo.plan_config.reuse_factor, lo.plan_config.balance_misses) == (3, balanced)
    with Scenario.parse("standard").make_loader(list(range(8)), pipeline, None) as standard:
        assert isinstance(standard, RevamperLoader)
        assert standard.plan_config.reuse_factor == 1


def test_each_variant_bound_is_the_cost_model_one() -> None:
    r = 3
    expected = {
        "standard": 1.0,
        "simplified": None,  # another pipeline: no bound from these costs
        "echo": COSTS.echoing_bound(r),
        "refurbish": COSTS.refurbishing_bound(r),
        "unbalanced": COSTS.refurbishing_bound(r),
    }
    for name, bound in expected.items():
        variant = loader_variant(name)
        scenario = Scenario(name, r if variant.takes_r else 1)
        assert _bound(scenario, COSTS, COSTS) == bound
    assert _bound(Scenario("ffcv"), COSTS, COSTS) is None  # a peer is not a variant
    assert _bound(Scenario("refurbish", r), None, COSTS) is None  # no baseline measured


def test_each_variant_names_the_paper_formula() -> None:
    k, final = 12.0, 14.0
    assert expected_versions("none", 1, 12, final) == 1.0
    assert expected_versions("simplified", 1, 12, final) == k
    assert expected_versions("unbalanced", 3, 12, final) == expected_versions(
        "refurbish", 3, 12, final
    )
    assert expected_versions("echo", 3, 12, final, math.inf) == k / 3


def test_an_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known are none, standard, simplified, echo"):
        loader_variant("bogus")


def test_a_fused_scenario_claims_no_bound_from_unfused_costs() -> None:
    # The base costs are the unfused standard run's: they say nothing of a fused pipeline.
    assert _bound(Scenario.parse("refurbish:3"), COSTS, COSTS) is not None
    assert _bound(Scenario.parse("refurbish:3+fused"), COSTS, COSTS) is None
