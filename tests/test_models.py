"""The model catalog as data: the shipped file, its strict reader, lifecycles and replacements."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirror_providers import models
from mirror_providers.catalog import PROVIDERS
from mirror_providers.models import load_models, replacement_for, shipped_models
from mirror_providers.types import ModelInfo, Tier

AVAILABLE_ON = "2026-12-01"  # issue 15: every alias resolves to a model served on this day
SHORTHANDS = {"opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5",
              "fable": "claude-fable-5-2", "gpt-5.6": "gpt-5.6-sol"}


def every_row() -> list[tuple[str, ModelInfo]]:
    return [(pid, info) for pid, cls in PROVIDERS.items() for info in cls.MODELS]


def test_the_providers_read_the_shipped_file() -> None:
    for pid, cls in PROVIDERS.items():
        assert shipped_models(pid) == cls.MODELS and cls.MODELS, pid
        assert all(info.provider == pid for info in cls.MODELS)
    assert models.as_of() == "2026-12-01"


@pytest.mark.parametrize("alias, model_id", sorted(SHORTHANDS.items()))
def test_shorthands_resolve_to_models_served_now(alias: str, model_id: str) -> None:
    found = [info for _, info in every_row() if alias in info.aliases]
    assert [info.id for info in found] == [model_id]
    assert found[0].status(AVAILABLE_ON) == "active"


def test_every_alias_of_a_served_model_points_at_a_served_model() -> None:
    """An alias either names a model served on the day, or a retired one whose error names a
    replacement that is served (so a call with it fails saying what to use)."""
    for pid, info in every_row():
        table = PROVIDERS[pid].MODELS
        if info.status(AVAILABLE_ON) == "retired":
            repl = replacement_for(info, table, AVAILABLE_ON)
            if repl is not None:
                target = PROVIDERS[pid].find_model(repl)
                assert target is not None and target.status(AVAILABLE_ON) != "retired", (info.id, repl)


@pytest.mark.parametrize("pid", sorted(PROVIDERS))
def test_defaults_are_current(pid: str) -> None:
    cls = PROVIDERS[pid]
    info = cls.find_model(cls.DEFAULT_MODEL)
    assert info is not None and info.status(AVAILABLE_ON) == "active", cls.DEFAULT_MODEL


def test_each_vendor_has_a_current_model_of_each_cloud_tier() -> None:
    for pid in ("openai", "anthropic"):
        tiers = {info.tier for info in PROVIDERS[pid].MODELS if info.status(AVAILABLE_ON) == "active"}
        assert {Tier.FLAGSHIP, Tier.BALANCED, Tier.FAST} <= tiers, pid


def test_rows_are_coherent() -> None:
    for _, info in every_row():
        assert info.max_output <= info.context_window, info.id
        if info.price_input is not None and info.price_output is not None:
            assert info.price_output >= info.price_input, info.id
        if info.price_cached_input is not None and info.price_input is not None:
            assert info.price_cached_input <= info.price_input, info.id
        if info.lifecycle == "retired":
            assert info.retires_on is not None, info.id
        if info.reasoning is None:
            assert not info.reasoning_levels and not info.rejects_while_reasoning, info.id
        assert set(info.rejects) <= {"temperature", "top_p", "top_k", "tools", "prefill", "forced_tool_choice"}, info.id


@pytest.mark.parametrize("day, expected", [
    ("2026-11-22", "deprecated"), ("2026-11-23", "deprecated"), ("2027-01-21", "deprecated"), ("2027-01-22", "retired"),
])
def test_status_follows_the_dates(day: str, expected: str) -> None:
    info = ModelInfo("m", 10, 5, lifecycle="deprecated", deprecated_on="2026-11-23", retires_on="2027-01-22")
    assert info.status(day) == ("active" if day < "2026-11-23" else expected)


def test_status_without_dates_is_the_data_s() -> None:
    assert ModelInfo("m", 10, 5).status("2099-01-01") == "active"
    assert ModelInfo("m", 10, 5, lifecycle="retired").status("2000-01-01") == "retired"
    assert ModelInfo("m", 10, 5, lifecycle="deprecated").status("2000-01-01") == "deprecated"


def test_replacements_are_followed_past_retired_ones() -> None:
    table = (ModelInfo("a", 10, 5, lifecycle="retired", retires_on="2025-01-01", replacement="b"),
             ModelInfo("b", 10, 5, lifecycle="retired", retires_on="2026-01-01", replacement="c"),
             ModelInfo("c", 10, 5))
    assert replacement_for(table[0], table, "2026-06-01") == "c"
    assert replacement_for(table[0], table, "2025-06-01") == "b"  # b was still served then
    loop = (ModelInfo("x", 10, 5, lifecycle="retired", replacement="y"),
            ModelInfo("y", 10, 5, lifecycle="retired", replacement="x"))
    assert replacement_for(loop[0], loop) == "y"  # a cycle ends at the last one seen
    assert replacement_for(ModelInfo("z", 10, 5, lifecycle="retired"), ()) is None


# -- the strict reader ------------------------------------------------------------------------------

def catalog(*rows: dict[str, Any]) -> str:
    return json.dumps({"schema": 1, "as_of": "2026-12-01", "models": list(rows)})


ROW = {"provider": "v", "id": "m1", "context_window": 100, "max_output": 10}


def test_reader_builds_rows() -> None:
    text = catalog({**ROW, "aliases": ["one"], "tier": "fast", "renames": {"max_tokens": "max_completion_tokens"},
                    "price_input": 1, "reasoning": "effort", "reasoning_levels": ["low", "high"]})
    (info,) = load_models(text)["v"]
    assert info.aliases == ("one",) and info.tier is Tier.FAST and info.price_input == 1.0
    assert info.wire_name("max_tokens") == "max_completion_tokens" and info.wire_name("stop") == "stop"
    assert info.reasoning_levels == ("low", "high")


@pytest.mark.parametrize("change, message", [
    ({"context_windw": 5}, r"unknown field\(s\) \['context_windw'\]"),
    ({"context_window": "100"}, "context_window: expected a whole number >= 1, got '100'"),
    ({"context_window": True}, "expected a whole number"),
    ({"max_output": 0}, "max_output: expected a whole number >= 1"),
    ({"tier": "huge"}, "'huge' is not a tier"),
    ({"lifecycle": "sunset"}, "'sunset' is not one of"),
    ({"aliases": "one"}, "aliases: expected a list"),
    ({"aliases": [""]}, r"aliases\[0\]: expected non-empty text"),
    ({"retires_on": "2026-13-01"}, "retires_on: '2026-13-01' is not a YYYY-MM-DD date"),
    ({"retires_on": "Dec 1"}, "not a YYYY-MM-DD date"),
    ({"price_input": -1}, "price_input: expected a price >= 0"),
    ({"price_input": float("nan")}, "expected a price"),
    ({"vision": "yes"}, "vision: expected true or false"),
    ({"reasoning": "deep"}, "'deep' is not one of"),
    ({"replacement": "m9"}, "names replacement 'm9', which is not in the table"),
    ({"replacement": "m1"}, "names itself as its replacement"),
    ({"provider": ""}, "provider: expected non-empty text"),
])
def test_reader_refuses_a_bad_row_naming_it(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_models(catalog({**ROW, **change}))
    assert "'m1'" in str(info.value)  # the row is named


def test_reader_refuses_missing_fields_and_shared_names() -> None:
    with pytest.raises(ValueError, match=r"missing \['max_output'\]"):
        load_models(catalog({"provider": "v", "id": "m", "context_window": 5}))
    with pytest.raises(ValueError, match="name 'x' is claimed by 'm1' and 'm2'"):
        load_models(catalog({**ROW, "aliases": ["x"]}, {**ROW, "id": "m2", "snapshots": ["x"]}))
    # the same alias under two vendors is fine: each vendor has its own table
    assert len(load_models(catalog({**ROW, "aliases": ["x"]}, {**ROW, "provider": "w", "aliases": ["x"]}))) == 2
    with pytest.raises(ValueError, match="is not JSON"):
        load_models("{")
    with pytest.raises(ValueError, match="'models' list"):
        load_models("[]")
    with pytest.raises(ValueError, match="a model is an object"):
        load_models(catalog("m1"))  # type: ignore[arg-type]
