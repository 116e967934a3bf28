"""The DeepSeek catalogue: lookups, mapping to and from hosted models, prices, overrides."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import dsollama
from dsollama._catalogue import load_catalogue


def test_library_names_resolve_to_their_default_tag() -> None:
    cat = load_catalogue()
    assert cat.require("deepseek-r1").tag == "deepseek-r1:8b"
    assert cat.require("DeepSeek-R1:latest").tag == "deepseek-r1:8b"
    assert cat.require("deepseek-coder").tag == "deepseek-coder:6.7b"


def test_the_distills_say_what_they_really_are() -> None:
    cat = load_catalogue()
    for tag in (
        "deepseek-r1:1.5b",
        "deepseek-r1:7b",
        "deepseek-r1:8b",
        "deepseek-r1:14b",
        "deepseek-r1:32b",
        "deepseek-r1:70b",
    ):
        model = cat.require(tag)
        assert model.distill
        assert "Qwen" in model.base_model or "Llama" in model.base_model
    assert not cat.require("deepseek-r1:671b").distill


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(dsollama.UnknownModelError) as caught:
        load_catalogue().require("deepseek-r1:9b")
    assert "deepseek-r1:8b" in caught.value.suggestions


def test_local_models_map_to_current_hosted_names() -> None:
    cat = load_catalogue()
    assert cat.hosted_for("deepseek-r1:8b") == ("deepseek-flash", True)
    assert cat.hosted_for("deepseek-coder:6.7b") == ("deepseek-flash", False)
    assert cat.hosted_for("deepseek-r1-reasoner") == (
        "deepseek-flash",
        True,
    )  # a Modelfile model, by family
    assert cat.hosted_for("deepseek-r1:8b", {"deepseek-r1:8b": "deepseek-v4-pro"}) == (
        "deepseek-v4-pro",
        True,
    )
    hosted = {m.hosted for m in cat.local.values()}
    assert hosted <= set(cat.hosted)
    assert not hosted & set(cat.retired_hosted)  # nothing maps to a retired name


def test_hosted_models_map_back_to_local_ones() -> None:
    cat = load_catalogue()
    assert cat.local_for("deepseek-flash", thinking=True) == "deepseek-r1:8b"
    assert cat.local_for("deepseek-flash", thinking=False) == "deepseek-coder-v2:16b"


def test_prices_follow_peak_hours_and_bill_cache_hits_cheaper() -> None:
    cat = load_catalogue()
    peak = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 02:00 UTC
    off_peak = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)
    weekend = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.timezone.utc)
    assert cat.is_peak(peak)
    assert not cat.is_peak(off_peak)
    assert not cat.is_peak(weekend)
    cost_peak = cat.cost_usd(
        "deepseek-flash", prompt_tokens=1_000_000, completion_tokens=1_000_000, when=peak
    )
    cost_off = cat.cost_usd(
        "deepseek-flash", prompt_tokens=1_000_000, completion_tokens=1_000_000, when=off_peak
    )
    assert cost_peak == pytest.approx(0.30 + 1.20)
    assert cost_off == pytest.approx(cost_peak / 2)
    cached = cat.cost_usd(
        "deepseek-flash",
        prompt_tokens=1_000_000,
        completion_tokens=0,
        cached_tokens=1_000_000,
        when=peak,
    )
    assert cached == pytest.approx(0.006)
    assert cat.cost_usd("no-such-model", prompt_tokens=1, completion_tokens=1) is None


def test_a_catalogue_file_extends_and_overrides(tmp_path: Path) -> None:
    override = tmp_path / "catalogue.json"
    override.write_text(
        json.dumps(
            {
                "local": [
                    {
                        "tag": "deepseek-r1:8b",
                        "library": "deepseek-r1",
                        "base_model": "x",
                        "hosted": "deepseek-v4-pro",
                    },
                    {
                        "tag": "my-deepseek:1b",
                        "library": "my-deepseek",
                        "base_model": "mine",
                        "default": True,
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    cat = load_catalogue(str(override))
    assert cat.require("deepseek-r1:8b").hosted == "deepseek-v4-pro"
    assert cat.require("my-deepseek").base_model == "mine"
    assert cat.require("deepseek-r1:14b").hosted == "deepseek-flash"  # untouched entries stay


def test_a_missing_catalogue_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(dsollama.ConfigError, match="does not exist"):
        load_catalogue(str(tmp_path / "nope.json"))
