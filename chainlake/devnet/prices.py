"""The market's hidden truth: a regime-switching reference price process that arbitrageurs track.

A Markov chain on regimes (bull, bear, calm) sets the drift and volatility of ETH's log-price each block;
LINK follows ETH with a beta plus its own noise; DAI wanders a hair around USDC (an Ornstein-Uhlenbeck
process), and USDC is the numeraire at 1.0. Per-block volatility is far above mainnet's so that a few
thousand 12-second blocks show visible trends for the feature and RL work downstream.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# regime -> (drift per block, volatility per block) of ETH's log price
REGIMES: dict[str, tuple[float, float]] = {
    "bull": (4e-4, 1.5e-3),
    "bear": (-5e-4, 2.5e-3),
    "calm": (0.0, 8e-4),
}
# Markov transition probabilities per block (rows sum to 1); mean stay ~ 1/(1-p_stay) blocks.
TRANSITIONS: dict[str, dict[str, float]] = {
    "bull": {"bull": 0.985, "bear": 0.005, "calm": 0.010},
    "bear": {"bull": 0.006, "bear": 0.982, "calm": 0.012},
    "calm": {"bull": 0.010, "bear": 0.010, "calm": 0.980},
}
LINK_BETA, LINK_IDIO_VOL = 1.3, 1.2e-3
DAI_REVERSION, DAI_VOL = 0.05, 1e-4


@dataclass
class ReferencePrices:
    """USD prices of every token; `step()` advances one block."""

    rng: random.Random
    usd: dict[str, float]
    regime: str = "calm"

    def step(self) -> None:
        self.regime = _next_regime(self.rng, self.regime)
        drift, vol = REGIMES[self.regime]
        eth_shock = self.rng.gauss(0.0, 1.0)
        eth_ret = drift - 0.5 * vol * vol + vol * eth_shock
        link_ret = LINK_BETA * eth_ret + self.rng.gauss(0.0, LINK_IDIO_VOL)
        self.usd["WETH"] *= math.exp(eth_ret)
        self.usd["LINK"] *= math.exp(link_ret)
        dai_dev = math.log(self.usd["DAI"])
        self.usd["DAI"] = math.exp(dai_dev * (1 - DAI_REVERSION) + self.rng.gauss(0.0, DAI_VOL))
        self.usd["USDC"] = 1.0

    def pair_price(self, base: str, quote: str) -> float:
        """Reference price of `base` in units of `quote` (human units, decimals ignored)."""
        return self.usd[base] / self.usd[quote]


def _next_regime(rng: random.Random, regime: str) -> str:
    u, acc = rng.random(), 0.0
    for nxt, p in TRANSITIONS[regime].items():
        acc += p
        if u < acc:
            return nxt
    return regime
