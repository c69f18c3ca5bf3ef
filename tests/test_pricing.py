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


def test_unknown_models_without_a_reported_cost_cost_nothing_and_are_unpriced(tmp_path):
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


def test_claude_codes_default_model_is_priced_as_claude_code_prices_it(tmp_path, fake):
    """The bundled Claude Code CLI, left to its defaults, asks for a model orc prices, at the
    figure the CLI itself reports (its list price) for the same tokens."""
    import json
    import os
    import subprocess

    from orc.runs.agent import bundled_cli
    from tests.fake_anthropic import Usage, text

    fake.script([text("hi", usage=Usage(1000, 2000, 300, 400))])
    (tmp_path / "work").mkdir()
    result = subprocess.run(
        [bundled_cli(), "-p", "hi", "--output-format", "stream-json", "--verbose"],
        env={"PATH": os.environ["PATH"], **fake.agent_env(str(tmp_path / "home"))},
        cwd=tmp_path / "work",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    end = [json.loads(line) for line in result.stdout.splitlines() if '"result"' in line][-1]
    [(model, figures)] = end["modelUsage"].items()
    assert model == fake.message_requests[0].body["model"]
    tokens = {"input": 1000, "output": 2000, "cache_read": 300, "cache_write": 400}
    prices = load_prices(tmp_path)
    assert prices.price_for(model) is not None, f"Claude Code's default {model} has no price"
    assert prices.cost(model, tokens) == pytest.approx(figures["costUSD"])


@pytest.mark.parametrize(
    ("model", "input_price"),
    [
        ("claude-opus-4-6", 5.0),  # not opus 4's $15: the longest prefix that is a model wins
        ("claude-opus-4-1-20250805", 15.0),
        ("claude-haiku-4-5-20251001", 1.0),  # Claude Code's background model
        ("claude-haiku-5-5", 0.10),
        ("claude-sonnet-5-5", 2.0),
    ],
)
def test_current_models_have_their_list_price(tmp_path, model, input_price):
    assert load_prices(tmp_path).cost(model, {"input": 1_000_000}) == pytest.approx(input_price)


def test_a_model_without_a_price_costs_what_the_agent_reported(tmp_path):
    prices = load_prices(tmp_path)
    assert prices.cost("acme-llm-1", {"input": 10**6}, reported_usd=0.42) == 0.42
    # A priced model ignores the agent's figure: orc's price list (and pricing.yaml) decide.
    assert prices.cost("claude-sonnet-4-5", {"input": 10**6}, reported_usd=0.42) == 3.0
