"""Model prices (USD per million tokens) and the cost of token counts.

Defaults cover current Claude models; ``ORC_HOME/pricing.yaml`` overrides or adds models:

    models:
      claude-sonnet-4-5: {input: 3.0, output: 15.0, cache_read: 0.30, cache_write: 3.75}

A model is matched exactly, then by the longest known prefix (``claude-sonnet-4-5-20250929``
is priced as ``claude-sonnet-4-5``). A model the table does not know is reported as unpriced;
its cost is what the agent reported for it (Claude Code's own figure), or 0 when none was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orc.config import ConfigError

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")
PRICING_FILE = "pricing.yaml"


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each type."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, tokens: dict[str, int]) -> float:
        return self.cost_of(
            tokens.get("input", 0),
            tokens.get("output", 0),
            tokens.get("cache_read", 0),
            tokens.get("cache_write", 0),
        )

    def cost_of(self, input_: int, output: int, cache_read: int, cache_write: int) -> float:
        """The same figure as ``cost`` from the four counts (in TOKEN_TYPES order, so the
        float sums alike), for loops over many rows that need no dict per row."""
        return (
            self.input * input_
            + self.output * output
            + self.cache_read * cache_read
            + self.cache_write * cache_write
        ) / 1_000_000


# Anthropic's list prices (USD per million tokens; cache write = 5-minute cache writes), as the
# model catalog bundled in Claude Code 2.1.332 (claude-agent-sdk's CLI) states them: its default
# model is claude-opus-5-5, its background calls use claude-haiku-4-5 (or the newest haiku).
# Prefix matching makes "claude-opus-4" cover only 4.0/4.1 once the 4.5+ entries exist.
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-5-5": Price(4.0, 20.0, 0.20, 5.0),
    "claude-opus-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-8": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-7": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-6": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-5": Price(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": Price(15.0, 75.0, 1.50, 18.75),
    "claude-opus-4": Price(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-5-5": Price(2.0, 10.0, 0.10, 2.5),
    "claude-sonnet-5": Price(2.0, 10.0, 0.20, 2.5),
    "claude-sonnet-4-6": Price(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4-5": Price(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4": Price(3.0, 15.0, 0.30, 3.75),
    "claude-3-7-sonnet": Price(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-sonnet": Price(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-5-5": Price(0.10, 0.50, 0.01, 0.125),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.10, 1.25),
    "claude-3-5-haiku": Price(0.80, 4.0, 0.08, 1.0),
}


class PriceList:
    """Prices by model name, with prefix matching and an ``unpriced`` answer."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices
        self._by_length = sorted(prices, key=len, reverse=True)

    def price_for(self, model: str) -> Price | None:
        if model in self.prices:
            return self.prices[model]
        for known in self._by_length:
            if model.startswith(known):
                return self.prices[known]
        return None

    def cost(self, model: str, tokens: dict[str, int], reported_usd: float = 0.0) -> float:
        """USD for these tokens; for a model the table does not know, ``reported_usd`` (what
        the agent said they cost, 0 when it said nothing)."""
        price = self.price_for(model)
        return price.cost(tokens) if price is not None else reported_usd


def _parse_price(model: str, raw: Any, path: Path) -> Price:
    if not isinstance(raw, dict) or set(raw) - set(TOKEN_TYPES):
        raise ConfigError(
            f"{path}: model {model!r} needs a mapping of {', '.join(TOKEN_TYPES)} (USD per million)"
        )
    values = {}
    for kind in TOKEN_TYPES:
        value = raw.get(kind, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{path}: {model}.{kind} must be a number ≥ 0, not {value!r}")
        values[kind] = float(value)
    return Price(**values)


def load_prices(home: Path) -> PriceList:
    """Defaults overlaid with ``home/pricing.yaml`` when it exists."""
    prices = dict(DEFAULT_PRICES)
    path = home / PRICING_FILE
    if not path.exists():
        return PriceList(prices)
    import yaml  # here: without a pricing.yaml no process needs it

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror}); fix or remove it") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}; fix or remove it") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(f"{path} needs a top-level `models:` mapping of model: prices")
    for model, raw in models.items():
        prices[str(model)] = _parse_price(str(model), raw, path)
    return PriceList(prices)
