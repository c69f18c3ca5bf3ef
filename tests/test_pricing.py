"""Model prices: defaults, prefix matching, pricing.yaml overrides, unpriced models."""

from __future__ import annotations

import pytest

from orc.config import ConfigError
from orc.usage.pricing import DEFAULT_PRICES, load_prices
from tests.support import base_env, run_orc


def test_dated_model_names_are_priced_by_their_family(tmp_path):
    prices = load_prices(tmp_path)
    assert prices.price_for("claude-sonnet-4-5-20250929") == DEFAULT_PRICES["claude-sonnet-4-5"]
    # The longest known prefix wins: opus-4-5 is not priced as opus-4.
    assert prices.price_for("claude-opus-4-5-20251101") == DEFAULT_PRICES["claude-opus-4-5"]
    tokens = {"input": 1_000_000, "output": 1_000_000, "cache_read": 0, "cache_write": 0}
    assert prices.cost("claude-sonnet-4-5", tokens) == pytest.approx(18.0)


def test_unknown_models_cost_nothing_and_are_unpriced(tmp_path):
    prices = load_prices(tmp_path)
    assert prices.price_for("gpt-something") is None
    assert prices.cost("gpt-something", {"input": 10**9}) == 0.0


def test_pricing_yaml_overrides_and_adds_models(tmp_path):
    (tmp_path / "pricing.yaml").write_text(
        "models:\n  claude-sonnet-4-5: {input: 1, output: 2}\n  my-local-model: {input: 0.5}\n"
    )
    prices = load_prices(tmp_path)
    assert prices.cost("claude-sonnet-4-5-x", {"input": 1_000_000, "output": 1_000_000}) == 3.0
    assert prices.cost("my-local-model", {"input": 2_000_000}) == 1.0


@pytest.mark.parametrize(
    "text",
    ["models: [1", "models: {m: {input: -1}}", "models: {m: {inputs: 1}}", "models: 3", "- a"],
)
def test_a_broken_pricing_file_is_one_clear_error(tmp_path, text):
    (tmp_path / "pricing.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_prices(tmp_path)
    assert "pricing.yaml" in str(info.value) and "\n" not in str(info.value)


def test_serve_refuses_a_broken_pricing_file(tmp_path):
    env = base_env(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (home / "pricing.yaml").write_text("models: {m: {input: -1}}")
    result = run_orc(["serve", "--port", "1"], env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pricing.yaml" in result.stderr
