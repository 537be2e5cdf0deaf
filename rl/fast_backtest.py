"""A compiled signal backtest: the reference backtester's answer for precomputed discrete signals, in one loop.

Why it exists: `rl.backtest.run_policies` drives `VectorTradingEnv` one decision at a time through Python
(~130 µs per step on this project's 2-core machine), which is right for policies that look at their own
book but makes a 1M-block backtest take over two minutes. Many strategies do not look at their position:
their actions can be computed up front from the features, as a signal series (0 sell / 1 hold / 2 buy
per decision row). For those, `fast_backtest` runs the very same execution model in a numba-compiled
loop (`@njit`), a few tens of nanoseconds per step: 1M blocks in tens of milliseconds (bench/rl.py).

Same semantics, line by line, as `run_policies(episode, {name: Scripted(signals[start:stop])}, config)` in
"discrete" action mode; `tests/test_fast_backtest.py` pins the two together, to the last bit, on
hand-made markets (latency 0, 1 and 2, liquidity-capped, balance-capped and gas-unaffordable trades,
the ulp-edge of the gas check) and on hypothesis-generated random markets, signals and configs:
- the decision at row t (as-of block b_t) trades `trade_size` base (sell / buy), limited first by the
  position limits (buys up to `max_position`, sells down to 0 base), then by `rl.execution.execute`:
  it lands in block b_t + latency against the reserves at the end of block b_t + latency - 1, pays the
  pool fee and gas (base fee of the landing block + tip, at the ETH price of the block before), is capped
  by liquidity (`max_reserve_fraction` of the reserve it draws from) and balances (a buy spends at most
  the quote left after gas, the float round trip clamped to it), and does not happen at all (nor cost
  gas) when capped to nothing or when its gas cannot be paid;
- the gross shadow book gets the same fills priced without the pool fee and gas;
- the book is marked at the next decision, at the mid of the end of block b_t + stride - 1; the run ends
  at `stop` (or at the last usable row) or after the step whose value is no longer positive;
- `trade_size` / `max_position` left None in the config are resolved from the start's known mid
  (`trade_fraction` / `max_position_fraction` of the initial value), as the env does at reset.

The arithmetic is written in the same order as `rl.execution` and `rl.env` (numba does not reassociate
or fuse floating-point operations without fastmath), so the two agree to the last bit in practice; the trade
itself is `rl.execution_kernels.execute_market_order`, shared with the env's compiled step.

API:
- `fast_backtest(episode, signals, env_config, start, stop, name, block_seconds) -> BacktestResult`:
  the same result type as `rl.backtest.backtest` (equity net and gross, position, actions, ledger,
  metrics).
- `simulate_signals(...) -> SignalRun`: the compiled loop alone on the same inputs, arrays only: equity
  net and gross and position per decision, and the fills (one entry per trade). What the benchmark times
  against vectorbt; `fast_backtest` builds its result from it (ledger and metrics cost about as much
  again on 1M rows).
The episode is validated with the env's own checks and messages (`_decision_rows` mirrors `rl.env._Book`
minus its feature matrix, which a signal backtest never reads; the test compares the errors).
The first call compiles (~1-2 s; numba's on-disk cache, `cache=True`, spares later processes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from chainlake.errors import ConfigError
from rl.backtest import BacktestResult, _ledger
from rl.data import Episode
from rl.env import BUY, HOLD, SELL, EnvConfig
from rl.execution_kernels import execute_market_order, gas_quote
from rl.metrics import compute_metrics, periods_per_year

_FILL_VALUES = ("base_delta", "quote_delta", "exec_mid", "fee", "gas", "slippage")


@dataclass
class SignalRun:
    """What the compiled loop produced over n steps (arrays of n + 1 are per decision, as in BacktestResult)."""

    start_row: int  # first decision row of the run (episode row)
    n_steps: int
    blocks: np.ndarray  # [n + 1] decision block b_t; the last one is where the final mark is known
    equity: np.ndarray  # [n + 1] value marked at the end of block blocks[t] - 1 (net of fee and gas)
    equity_gross: np.ndarray  # [n + 1] the gross shadow book
    position: np.ndarray  # [n + 1] base held
    actions: np.ndarray  # [n] the signals played (a view of the int64 signals)
    # the fills, one entry per trade (the ledger's rows), in order:
    fill_step: np.ndarray  # step t of the decision that traded (its row is start_row + t)
    exec_index: np.ndarray  # market index of the landing block
    base_delta: np.ndarray  # + bought, - sold
    quote_delta: np.ndarray  # quote received (+) / paid (-), gas included
    exec_mid: np.ndarray  # mid of the reserves the trade executed against
    fee: np.ndarray
    gas: np.ndarray
    slippage: np.ndarray
    trade_size: float
    max_position: float
    initial_mid: float


# ------------------------------------------------------------------------------------- compiled kernels

@njit(cache=True)
def _run(reserve_base, reserve_quote, base_fee_gwei, eth_price_quote, decision_index, signals, first_row, stop_row,
         stride, latency, fee, charge_fees, gas_units, priority_fee_gwei, max_reserve_fraction, quote, base,
         trade_size, max_position):
    """Steps rows first_row..stop_row-1 (stops early after a step whose value is not positive).
    Returns the number of steps taken, the per-decision arrays and the fills (8 arrays whose first
    `n_fills` entries are the trades). Mirrors `rl.env.VectorTradingEnv.step`, with `rl.execution.execute`
    as `rl.execution_kernels.execute_market_order` (comments name what each part follows)."""
    n = stop_row - first_row
    equity = np.empty(n + 1)
    equity_gross = np.empty(n + 1)
    position = np.empty(n + 1)
    # fills: np.empty and written only per trade, so the untouched tail costs no memory traffic
    fill_step = np.empty(n, dtype=np.int64)
    exec_out = np.empty(n, dtype=np.int64)
    fill_values = np.empty((6, n))  # base_delta, quote_delta, exec_mid, fee, gas, slippage
    n_fills = 0

    mark0 = decision_index[first_row] - 1
    quote_gross = quote
    value = quote + base * (reserve_quote[mark0] / reserve_base[mark0])
    equity[0], equity_gross[0], position[0] = value, value, base
    steps = 0
    for t in range(n):
        gi = decision_index[first_row + t]
        a = signals[first_row + t]
        # env._limit_position: buys up to max_position, sells down to the base held
        if a == 2:
            qty = min(trade_size, max(max_position - base, 0.0))
        elif a == 0:
            qty = -min(trade_size, max(base, 0.0))
        else:
            qty = 0.0
        base_delta = quote_delta = gross_delta = 0.0
        exec_i = gi + latency
        if qty != 0.0:
            # execution.execute (and the gross shadow fill), in rl.execution_kernels
            state = max(exec_i - 1, 0)
            gas = gas_quote(charge_fees, base_fee_gwei[exec_i], eth_price_quote[state], gas_units, priority_fee_gwei)
            traded, base_delta, quote_delta, gross_delta, mid, fee_quote, gas, slippage = execute_market_order(
                qty, base, quote, reserve_base[state], reserve_quote[state], gas, fee, max_reserve_fraction)
            if traded:
                fill_step[n_fills] = t
                exec_out[n_fills] = exec_i
                fill_values[0, n_fills] = base_delta
                fill_values[1, n_fills] = quote_delta
                fill_values[2, n_fills] = mid
                fill_values[3, n_fills] = fee_quote
                fill_values[4, n_fills] = gas
                fill_values[5, n_fills] = slippage
                n_fills += 1
        base = base + base_delta
        quote = quote + quote_delta
        quote_gross = quote_gross + gross_delta
        # mark at the next decision: the end of block b_t + stride - 1
        mark = gi + stride - 1
        mid1 = reserve_quote[mark] / reserve_base[mark]
        value = quote + base * mid1
        equity[t + 1] = value
        equity_gross[t + 1] = quote_gross + base * mid1
        position[t + 1] = base
        steps = t + 1
        if not value > 0:  # terminated: the book is wiped out (or NaN)
            break
    return steps, equity, equity_gross, position, n_fills, fill_step, exec_out, fill_values


# ------------------------------------------------------------------------------------------ Python API

def _decision_rows(episode: Episode, latency: int) -> tuple[np.ndarray, int]:
    """The episode's decision rows as market indices, and how many are usable: the checks of `rl.env._Book`
    (same errors), without its feature matrix, which a signal backtest does not read."""
    stride = int(episode.stride)
    if latency > stride:
        raise ConfigError(f"latency_blocks ({latency}) must be <= the episode stride ({stride}): "
                          "a fill must be settled by the next decision")
    if len(episode) == 0:
        raise ConfigError("episode 0 has no decision rows")
    if len(episode) > 1 and np.any(np.diff(episode.as_of) != stride):
        raise ConfigError(f"episode 0: decision blocks must step by the stride ({stride})")
    m = episode.market
    idx = episode.index
    if idx[0] < 1:
        raise ConfigError("episode 0: the first decision needs a known block before it in the market")
    steps = int(np.sum(idx + stride <= len(m.blocks) - 1))
    if steps < 1:
        raise ConfigError("episode 0: no decision whose next decision block is inside the market")
    span = slice(int(idx[0]) - 1, int(idx[steps - 1]) + stride + 1)
    if not (np.all(m.reserve_base[span] > 0) and np.all(m.reserve_quote[span] > 0)):
        raise ConfigError(f"episode 0 ({m.pool}): reserves must be positive over its blocks")
    return idx.astype(np.int64), steps


def _window(n_steps: int, start: int | None, stop: int | None) -> tuple[int, int]:
    """Decision rows [start, stop) as `VectorTradingEnv.reset` resolves them for a backtest."""
    start = 0 if start is None else int(start)
    stop = n_steps if stop is None else min(int(stop), n_steps)
    if start < 0 or start >= n_steps:
        raise ConfigError(f"start rows {start} outside the usable rows 0..{n_steps - 1}")
    if stop <= start:
        raise ConfigError(f"empty episode window: start {start}, stop {stop}")
    return start, stop


def _check_signals(signals, n_rows: int) -> np.ndarray:
    signals = np.ascontiguousarray(signals, dtype=np.int64)
    if signals.shape != (n_rows,):
        raise ConfigError(f"signals: need one per decision row of the episode ({n_rows}), got shape {signals.shape}")
    if np.any((signals < SELL) | (signals > BUY)):
        raise ValueError(f"signals are 0 (sell), {HOLD} (hold), 2 (buy); got values {np.unique(signals)}")
    return signals


def simulate_signals(episode: Episode, signals, env_config: EnvConfig | None = None, start: int | None = None,
                     stop: int | None = None) -> SignalRun:
    """Run `signals` (one of 0 sell / 1 hold / 2 buy per decision row of `episode`) over rows start..stop-1."""
    cfg = env_config or EnvConfig()
    if cfg.action_mode != "discrete":
        raise ConfigError("fast_backtest plays discrete signals: action_mode must be 'discrete', "
                          f"got {cfg.action_mode!r}")
    ex = cfg.execution
    decision_index, n_steps = _decision_rows(episode, ex.latency_blocks)
    first, stop_row = _window(n_steps, start, stop)
    signals = _check_signals(signals, len(episode))
    m = episode.market
    known = decision_index[first] - 1
    mid0 = float(m.reserve_quote[known] / m.reserve_base[known])
    value0 = cfg.initial_quote + cfg.initial_base * mid0
    trade_size = cfg.trade_size if cfg.trade_size is not None else cfg.trade_fraction * value0 / mid0
    max_position = cfg.max_position if cfg.max_position is not None else cfg.max_position_fraction * value0 / mid0
    arrays = [np.ascontiguousarray(a, dtype=np.float64)
              for a in (m.reserve_base, m.reserve_quote, m.base_fee_gwei, m.eth_price_quote)]
    steps, equity, equity_gross, position, n_fills, fill_step, exec_index, values = _run(
        *arrays, decision_index, signals, first, stop_row, episode.stride, ex.latency_blocks,
        float(m.fee) if ex.charge_fees else 0.0, ex.charge_fees, float(ex.gas_units), float(ex.priority_fee_gwei),
        float(ex.max_reserve_fraction), float(cfg.initial_quote), float(cfg.initial_base), float(trade_size),
        float(max_position))
    # decision blocks step by the stride; the last entry is where the final mark is known
    blocks = int(episode.as_of[first]) + episode.stride * np.arange(steps + 1, dtype=np.int64)
    return SignalRun(
        start_row=first, n_steps=steps, blocks=blocks, equity=equity[:steps + 1], equity_gross=equity_gross[:steps + 1],
        position=position[:steps + 1], actions=signals[first:first + steps], fill_step=fill_step[:n_fills].copy(),
        exec_index=exec_index[:n_fills].copy(), **dict(zip(_FILL_VALUES, values[:, :n_fills].copy())),
        trade_size=float(trade_size), max_position=float(max_position), initial_mid=mid0)


def fast_backtest(episode: Episode, signals, env_config: EnvConfig | None = None, start: int | None = None,
                  stop: int | None = None, name: str = "signals", block_seconds: float = 12.0) -> BacktestResult:
    """`rl.backtest.backtest(episode, Scripted(signals[start:stop]), env_config, start, stop, name)`, compiled."""
    cfg = replace(env_config or EnvConfig(), random_start=False, episode_length=None)
    run = simulate_signals(episode, signals, cfg, start, stop)
    ledger = _ledger({
        "decision_block": episode.as_of[run.start_row + run.fill_step],
        "exec_block": episode.market.blocks[run.exec_index],
        **{key: getattr(run, key) for key in _FILL_VALUES}})
    result = BacktestResult(
        name=name, pool=episode.market.pool, start_row=run.start_row, stop_row=run.start_row + run.n_steps,
        blocks=run.blocks, equity=run.equity, equity_gross=run.equity_gross, position=run.position,
        actions=run.actions.copy(), ledger=ledger, metrics={}, config=cfg)
    result.metrics = compute_metrics(run.equity, run.equity_gross, ledger,
                                     per_year=periods_per_year(episode.stride, block_seconds),
                                     initial_base=cfg.initial_base, initial_price=run.initial_mid)
    return result


__all__ = ["SignalRun", "fast_backtest", "simulate_signals"]
