"""The trading environment: Gymnasium `TradingEnv` and its vectorized twin `VectorTradingEnv`, over `Episode`s.

One step is one decision: at decision row t (as-of block b_t, which knows blocks < b_t) the agent sees
the features of row t and its own book (position and cash as shares of its value marked at the latest
known mid, `mid[b_t - 1]`), and acts. Its trade lands in block b_t + latency and executes against the
reserves at the end of block b_t + latency - 1 (`rl.execution.execute`: constant product, pool fee, gas
at the landing block's base fee, capped by liquidity and by the agent's balances). The step ends at the
next decision b_{t+1} = b_t + stride, where the book is marked at `mid[b_{t+1} - 1]`:

    reward_t = (value_{t+1} - value_t) * reward_scale        value = quote + base * mid (net of all costs)

latency <= stride, so every fill is settled by the next decision. Alongside the real (net) book the env
keeps a gross shadow book: the very same fills (same block, same base quantity), priced by the same pool
without the pool fee and without gas. `info["value_gross"]` is its value, so one run reports P&L with and
without fees; the price impact of size stays in both (it is the market's answer, not a fee).

Actions (`EnvConfig.action_mode`):
- "discrete": Discrete(3), 0 = sell `trade_size` base, 1 = hold, 2 = buy `trade_size` base. Buys stop at
  `max_position` base; sells at the base held (no shorting).
- "fraction": Box([-1], [1]): buy (+) or sell (-) base worth that fraction of the current value (at the
  known mid); |a| < `min_trade_fraction` holds. Same position limits.
- "limit": Box([-1, -1], [1, 1]) = (size, offset). |size| >= `min_trade_fraction` places a limit order for
  size x value / mid base (+ buy, - sell; position limits applied when placed) at
  `limit price = mid x (1 + offset x limit_max_offset)`, replacing any pending order; a smaller |size|
  leaves the pending order alone. The order can land in blocks b_t + latency ..
  b_t + latency + limit_window_blocks - 1 and fills, all at once, in the first of those blocks where its
  whole execution price (fee included, as in `rl.execution.limit_fill_index`) is at or better than the
  limit price; it then executes there through `execute` (so caps apply; a capped remainder is cancelled).
  After the window it is cancelled. Unfilled orders cost nothing. Each step checks the landing blocks up
  to b_{t+1} (whose state is known at the next decision), so a window longer than the stride spans
  several steps; the observation then carries the pending order as a third book feature.

Observation: float32 [features of row t (NaN -> 0), position share = base x mid / value, cash share =
quote / value (, order share = pending base x mid / value in "limit" mode)]; `obs_names` names them.

Sizes: `trade_size` and `max_position` are in base units; left None they are resolved at every reset from
the start's known mid: `trade_fraction` (resp. `max_position_fraction`) of the initial value.

Episodes end with `truncated` (end of the data, or `episode_length` steps) or `terminated` (the book's
value is no longer positive). The last usable decision is the last one whose next decision block
(b_t + stride, the latest block a fill or a limit check can land in) is still inside the market.

`VectorTradingEnv` steps N books at once (no Python loop over the books): copies over one episode with their
own start rows, or over several episodes (same features, stride and pool fee), env i on episode i mod K. It
is a `gymnasium.vector.VectorEnv` with next-step autoreset (or none, `autoreset=False`: finished books then
stand still; `done` says which). `TradingEnv` is the same engine with N = 1, so the single env, the vector
env and the backtester share one code path.

`step` has two implementations: the numpy one (every action mode; the reference: ~100 array operations, so
~100 µs per call plus ~0.3 µs per book) and, in "discrete" mode, a compiled one (`_discrete_step`, numba: one
loop over the N books, a few µs per call plus ~0.1 µs per book). They give the same results to the last bit
(`tests/test_rl_env.py` pins it); `compiled=False` forces the numpy one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numba import njit

from chainlake.errors import ConfigError
from rl.data import Episode
from rl.execution import ExecutionConfig, amount_in_for_out, amount_out, execute
from rl.execution_kernels import execute_market_order, gas_quote
from rl.market import PoolMarket

ACTION_MODES = ("discrete", "fraction", "limit")
SELL, HOLD, BUY = 0, 1, 2
ACTION_NAMES = ("sell", "hold", "buy")  # by action index
BOOK_KEYS = ("quote", "base", "quote_gross", "trade_size", "max_position")
INFO_KEYS = ("decision_block", "mark_block", "exec_block", "exec_mid", "base_delta", "quote_delta", "fee",
             "gas", "slippage", "traded", "value", "value_gross", "position", "cash", "order_pending")


@dataclass(frozen=True)
class EnvConfig:
    initial_quote: float = 10_000.0
    initial_base: float = 0.0
    trade_size: float | None = None  # base units per discrete buy/sell; None: trade_fraction of the initial value
    trade_fraction: float = 0.25
    max_position: float | None = None  # base units; None: max_position_fraction of the initial value
    max_position_fraction: float = 1.0
    action_mode: str = "discrete"
    min_trade_fraction: float = 0.01  # "fraction"/"limit": |size| below it holds (no new order)
    limit_window_blocks: int = 10
    limit_max_offset: float = 0.02  # "limit": offset 1.0 = a limit price 2% away from the mid
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    episode_length: int | None = None  # steps per episode; None: to the end of the data
    random_start: bool = False
    reward_scale: float = 1.0

    def __post_init__(self):
        if self.action_mode not in ACTION_MODES:
            raise ConfigError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.initial_quote < 0 or self.initial_base < 0 or self.initial_quote + self.initial_base <= 0:
            raise ConfigError("initial_quote and initial_base must be >= 0, and not both 0")
        if self.trade_size is not None and self.trade_size <= 0:
            raise ConfigError("trade_size must be > 0 (or None)")
        if self.max_position is not None and self.max_position < 0:
            raise ConfigError("max_position must be >= 0 (or None)")
        if self.limit_window_blocks < 1:
            raise ConfigError("limit_window_blocks must be >= 1")
        if self.episode_length is not None and self.episode_length < 1:
            raise ConfigError("episode_length must be >= 1 (or None)")
        if not 0 <= self.min_trade_fraction < 1:
            raise ConfigError("min_trade_fraction must be in [0, 1)")


def observation_names(feature_names: Sequence[str], action_mode: str = "discrete") -> tuple[str, ...]:
    book = ("position_share", "cash_share") + (("order_share",) if action_mode == "limit" else ())
    return (*feature_names, *book)


def single_action_space(action_mode: str) -> spaces.Space:
    if action_mode == "discrete":
        return spaces.Discrete(3)
    dims = 1 if action_mode == "fraction" else 2
    return spaces.Box(-1.0, 1.0, shape=(dims,), dtype=np.float32)


class _Book:
    """Episodes laid end to end: one market (concatenated arrays) and one table of decision rows."""

    def __init__(self, episodes: Sequence[Episode], latency: int):
        if not episodes:
            raise ConfigError("need at least one episode")
        first = episodes[0]
        self.stride = int(first.stride)
        self.feature_names = tuple(first.feature_names)
        self.fee = float(first.market.fee)
        if latency > self.stride:
            raise ConfigError(f"latency_blocks ({latency}) must be <= the episode stride ({self.stride}): "
                              "a fill must be settled by the next decision")
        markets, rows, offset = [], [], 0
        self.row0, self.n_rows, self.n_steps = [], [], []
        for k, ep in enumerate(episodes):
            if ep.stride != self.stride or tuple(ep.feature_names) != self.feature_names or ep.market.fee != self.fee:
                raise ConfigError(f"episode {k} differs from episode 0 in stride, features or pool fee")
            if len(ep) == 0:
                raise ConfigError(f"episode {k} has no decision rows")
            if len(ep) > 1 and np.any(np.diff(ep.as_of) != self.stride):
                raise ConfigError(f"episode {k}: decision blocks must step by the stride ({self.stride})")
            idx = ep.index
            m = ep.market
            if idx[0] < 1:
                raise ConfigError(f"episode {k}: the first decision needs a known block before it in the market")
            steps = int(np.sum(idx + self.stride <= len(m.blocks) - 1))
            if steps < 1:
                raise ConfigError(f"episode {k}: no decision whose next decision block is inside the market")
            span = slice(int(idx[0]) - 1, int(idx[steps - 1]) + self.stride + 1)
            if not (np.all(m.reserve_base[span] > 0) and np.all(m.reserve_quote[span] > 0)):
                raise ConfigError(f"episode {k} ({m.pool}): reserves must be positive over its blocks")
            markets.append(m)
            rows.append((idx + offset, ep.as_of, ep.features))
            self.row0.append(sum(self.n_rows))
            self.n_rows.append(len(ep))
            self.n_steps.append(steps)
            offset += len(m.blocks)
        self.row0 = np.array(self.row0, dtype=np.int64)
        self.n_rows = np.array(self.n_rows, dtype=np.int64)
        self.n_steps = np.array(self.n_steps, dtype=np.int64)
        if len(markets) == 1:
            self.market = markets[0]
        else:
            arrays = {name: np.concatenate([getattr(m, name) for m in markets]) for name in
                      ("blocks", "reserve_base", "reserve_quote", "base_fee_gwei", "eth_price_quote")}
            self.market = PoolMarket(**{**markets[0].__dict__, **arrays, "pool": "+".join(m.pool for m in markets)})
        self.pools = tuple(m.pool for m in markets)
        self.mid = self.market.reserve_quote / np.where(self.market.reserve_base > 0, self.market.reserve_base, np.nan)
        self.decision_index = np.concatenate([r[0] for r in rows]).astype(np.int64)
        self.decision_block = np.concatenate([r[1] for r in rows]).astype(np.int64)
        features = np.concatenate([r[2] for r in rows]).astype(np.float32)
        self.features = np.where(np.isfinite(features), features, np.float32(0.0))

    def kernel_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What `_discrete_step` reads, packed so one book's step touches few cache lines and the compiled call
        takes few arguments: (rows [R, 2] int64 = decision_index, decision_block; features [R, F] float32;
        market [M, 5] float64 = reserve_base, reserve_quote, base_fee_gwei, eth_price_quote, mid; blocks [M])."""
        m = self.market
        rows = np.stack([self.decision_index, self.decision_block], axis=1).astype(np.int64)
        market = np.stack([m.reserve_base, m.reserve_quote, m.base_fee_gwei, m.eth_price_quote, self.mid],
                          axis=1).astype(np.float64)
        # copies or fresh arrays throughout: writable and C-contiguous, the one signature the kernel is compiled for
        return rows, np.ascontiguousarray(self.features), market, np.array(m.blocks, dtype=np.int64)


# ------------------------------------------------------------------------------------- the compiled step

# The env's state, as rows of three [k, N] arrays (`VectorTradingEnv._istate`, `_fstate`, `_flags`; the
# attributes `_row`, `_quote`, ... are views of these rows), and the rows of `_discrete_step`'s output blocks
# (the step's info arrays are views of those rows).
_ISTATE = ("row", "stop", "cap", "feat_cap", "mark", "steps")
_FSTATE = ("quote", "base", "quote_gross", "value", "value_gross", "trade_size", "max_pos", "o_qty")
_FLAGS = ("terminated", "truncated")
_OUT_F = ("reward", "exec_mid", "base_delta", "quote_delta", "fee", "gas", "slippage", "value", "value_gross",
          "position", "cash")
_OUT_I = ("decision_block", "mark_block", "exec_block")
_OUT_B = ("terminated", "truncated", "traded", "order_pending", "stepped")


@njit(cache=True)
def _discrete_step(actions, resetting, rows, features, market, blocks, latency, stride, fee, charge_fees, gas_units,
                   priority_fee_gwei, max_reserve_fraction, reward_scale, istate, fstate, flags):
    """`VectorTradingEnv.step` in "discrete" mode for all N books in one compiled loop, after the Python side
    has autoreset the books in `resetting`: the position limits (`_limit_position`), the market order exactly
    as `rl.execution.execute` (latency, liquidity and balance caps, gas affordability, the budget clamp; via
    `rl.execution_kernels`, shared with `rl.fast_backtest`), the net and gross (shadow, fee-free) books, the mark
    at the next decision, reward, termination and truncation, the info arrays and the next observations
    (`_obs`). Updates the env's state (`istate`, `fstate`, `flags`: rows `_ISTATE`, `_FSTATE`, `_FLAGS`) in place;
    reads `_Book.kernel_tables()` (rows, features, market, blocks).

    Why it exists: the numpy step is ~100 array operations per call (~100 µs whatever N, then ~0.3 µs per
    book), which caps a vector env at ~3M env-steps/s; this loop costs a few µs per call plus ~100 ns per
    book. It mirrors the numpy step line by line, in the same floating-point order (no fastmath), so the two
    agree to the last bit; the numpy step stays the reference, and serves the other action modes.

    Returns (ok, number of done books, obs [N, D] float32, float rows `_OUT_F` [11, N], int rows `_OUT_I`
    [3, N], bool rows `_OUT_B` [5, N]); ok is False, and nothing is changed, if an action is not 0, 1 or 2."""
    n = actions.shape[0]
    n_feat = features.shape[1]
    obs = np.empty((n, n_feat + 2), dtype=np.float32)
    out_f = np.empty((len(_OUT_F), n))
    out_i = np.empty((len(_OUT_I), n), dtype=np.int64)
    out_b = np.empty((len(_OUT_B), n), dtype=np.bool_)
    for i in range(n):
        if actions[i] < 0 or actions[i] > 2:
            return False, 0, obs, out_f, out_i, out_b
    row, stop, cap, feat_cap, mark, steps = istate[0], istate[1], istate[2], istate[3], istate[4], istate[5]
    quote, base, quote_gross, value = fstate[0], fstate[1], fstate[2], fstate[3]
    value_gross, trade_size, max_pos, o_qty = fstate[4], fstate[5], fstate[6], fstate[7]
    terminated, truncated = flags[0], flags[1]
    n_done = 0
    for i in range(n):
        live = not (terminated[i] or truncated[i] or resetting[i])
        r = min(row[i], cap[i])
        gi = rows[r, 0]  # market index of the decision block b_t
        b, q = base[i], quote[i]
        # _limit_position: buys up to max_position, sells down to the base held
        qty = 0.0
        if live:
            if actions[i] == 2:
                qty = min(trade_size[i], max(max_pos[i] - b, 0.0))
            elif actions[i] == 0:
                qty = -min(trade_size[i], max(b, 0.0))
        # execution.execute: lands in block b_t + latency, against the reserves at the end of the block before
        exec_i = gi + latency
        traded = False
        base_delta = quote_delta = gross_delta = exec_mid = fee_quote = gas = slippage = 0.0
        if qty != 0.0:
            state = max(exec_i - 1, 0)
            gas = gas_quote(charge_fees, market[exec_i, 2], market[state, 3], gas_units, priority_fee_gwei)
            traded, base_delta, quote_delta, gross_delta, exec_mid, fee_quote, gas, slippage = execute_market_order(
                qty, b, q, market[state, 0], market[state, 1], gas, fee, max_reserve_fraction)
        b = b + base_delta
        q = q + quote_delta
        q_gross = quote_gross[i] + gross_delta
        # mark at the next decision (the end of block b_t + stride - 1); books not stepped stay where they are
        mark1 = gi + stride - 1 if live else mark[i]
        mid1 = market[mark1, 4]
        value1 = q + b * mid1
        value_gross1 = q_gross + b * mid1
        reward = (value1 - value[i] if live else 0.0) * reward_scale
        base[i], quote[i], quote_gross[i] = b, q, q_gross
        mark[i], value[i], value_gross[i] = mark1, value1, value_gross1
        if live:
            row[i] += 1
            steps[i] += 1
            if not value1 > 0:
                terminated[i] = True
            elif row[i] >= stop[i]:
                truncated[i] = True
        n_done += terminated[i] or truncated[i]
        out_f[0, i], out_f[1, i], out_f[2, i], out_f[3, i] = reward, exec_mid, base_delta, quote_delta
        out_f[4, i], out_f[5, i], out_f[6, i] = fee_quote, gas, slippage
        out_f[7, i], out_f[8, i], out_f[9, i], out_f[10, i] = value1, value_gross1, b, q
        out_i[0, i], out_i[1, i] = rows[r, 1], blocks[mark1]
        out_i[2, i] = blocks[exec_i] if traded else -1
        out_b[0, i], out_b[1, i], out_b[2, i] = terminated[i], truncated[i], traded
        out_b[3, i], out_b[4, i] = o_qty[i] != 0, live
        # _obs: the features of the next row (NaN -> 0 already), the book as shares of its marked value
        rr = min(row[i], feat_cap[i])
        for j in range(n_feat):
            obs[i, j] = features[rr, j]
        safe = value1 if value1 > 0 else np.inf
        obs[i, n_feat] = b * mid1 / safe
        obs[i, n_feat + 1] = q / safe
    return True, n_done, obs, out_f, out_i, out_b


class VectorTradingEnv(VectorEnv):
    """N trading books stepped together (see the module docstring). reset() -> (obs[N, D], info),
    step(actions[N] or [N, A]) -> (obs, rewards[N], terminated[N], truncated[N], info: dict of arrays [N])."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, episodes: Episode | Sequence[Episode], config: EnvConfig | None = None, num_envs: int = 1,
                 autoreset: bool = True, compiled: bool = True):
        """compiled: step "discrete" mode with the compiled `_discrete_step` (False: the numpy reference step;
        the other modes always use it)."""
        self.config = config or EnvConfig()
        episodes = [episodes] if isinstance(episodes, Episode) else list(episodes)
        self.episodes = episodes
        self._book = _Book(episodes, self.config.execution.latency_blocks)
        if num_envs < 1:
            raise ConfigError("num_envs must be >= 1")
        self.num_envs = n = int(num_envs)
        self.autoreset = autoreset
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP if autoreset else AutoresetMode.DISABLED}
        self.feature_names = self._book.feature_names
        self.obs_names = observation_names(self.feature_names, self.config.action_mode)
        dim = len(self.obs_names)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self.single_action_space = single_action_space(self.config.action_mode)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.episode_of_env = np.arange(n, dtype=np.int64) % len(episodes)
        # the books' state: rows of three arrays (see _ISTATE, _FSTATE, _FLAGS), which the compiled step updates in
        # place (the numpy step rebinds the attributes to new arrays; an env uses one of the two, see `compiled`)
        self._istate = np.zeros((len(_ISTATE), n), dtype=np.int64)
        self._row, self._stop, self._cap, self._feat_cap, self._mark, self._steps = self._istate
        self._fstate = np.zeros((len(_FSTATE), n))
        (self._quote, self._base, self._quote_gross, self._value, self._value_gross, self._trade_size, self._max_pos,
         self._o_qty) = self._fstate
        self._flags = np.zeros((len(_FLAGS), n), dtype=bool)
        self._terminated, self._truncated = self._flags
        self._o_price = np.zeros(n)
        self._o_next, self._o_last = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self._started = False
        self._compiled = bool(compiled) and self.config.action_mode == "discrete"
        self._n_done = 0  # books done after the last step (the compiled step's autoreset check)
        if self._compiled:
            ex = self.config.execution
            # _discrete_step's arguments after (actions, resetting): the tables, the constants, the state
            self._kernel_args = (
                *self._book.kernel_tables(), int(ex.latency_blocks), int(self._book.stride),
                float(self._book.fee) if ex.charge_fees else 0.0, bool(ex.charge_fees), float(ex.gas_units),
                float(ex.priority_fee_gwei), float(ex.max_reserve_fraction), float(self.config.reward_scale),
                self._istate, self._fstate, self._flags)
            self._no_reset = np.zeros(n, dtype=bool)

    # ---------------------------------------------------------------- state
    @property
    def done(self) -> np.ndarray:
        return self._terminated | self._truncated

    @property
    def compiled(self) -> bool:
        """Whether `step` runs the compiled `_discrete_step` (discrete mode, unless built with compiled=False)."""
        return self._compiled

    @property
    def market(self) -> PoolMarket:
        return self._book.market

    @property
    def mid(self) -> np.ndarray:
        """The mid each book is marked at now (end of the block before its decision block)."""
        return self._book.mid[self._mark]

    def steps_available(self, episode: int = 0) -> int:
        """Usable decision rows of episode `episode` (see the module docstring)."""
        return int(self._book.n_steps[episode])

    def _reset_envs(self, mask: np.ndarray, rng: np.random.Generator, options: dict | None = None):
        options = options or {}
        book, cfg = self._book, self.config
        ep = self.episode_of_env[mask]
        m = int(mask.sum())
        n_steps = book.n_steps[ep]
        length = np.full(m, cfg.episode_length if cfg.episode_length else 0, dtype=np.int64)
        if "start" in options and options["start"] is not None:
            start = np.broadcast_to(np.asarray(options["start"], dtype=np.int64), (self.num_envs,))[mask].copy()
        elif cfg.random_start:
            span = n_steps - np.maximum(length, 1) + 1
            start = (rng.random(m) * np.maximum(span, 1)).astype(np.int64)
        else:
            start = np.zeros(m, dtype=np.int64)
        if np.any(start < 0) or np.any(start >= n_steps):
            raise ConfigError(f"start rows {start} outside the usable rows 0..{n_steps - 1}")
        stop = np.where(length > 0, start + length, n_steps)
        if "stop" in options and options["stop"] is not None:
            stop = np.broadcast_to(np.asarray(options["stop"], dtype=np.int64), (self.num_envs,))[mask]
        stop = np.minimum(stop, n_steps)
        if np.any(stop <= start):
            raise ConfigError(f"empty episode window: start {start}, stop {stop}")
        row0 = book.row0[ep]
        row = row0 + start
        mark = book.decision_index[row] - 1
        mid = book.mid[mark]
        self._row[mask] = row
        self._stop[mask] = row0 + stop
        self._cap[mask] = row0 + n_steps - 1
        self._feat_cap[mask] = row0 + book.n_rows[ep] - 1
        self._mark[mask] = mark
        self._steps[mask] = 0
        resume = options.get("book")
        if resume is not None:
            self._resume(mask, mid, resume)
        else:
            self._quote[mask] = cfg.initial_quote
            self._quote_gross[mask] = cfg.initial_quote
            self._base[mask] = cfg.initial_base
            value = cfg.initial_quote + cfg.initial_base * mid
            self._value[mask] = value
            self._value_gross[mask] = value
            self._trade_size[mask] = (cfg.trade_size if cfg.trade_size is not None
                                      else cfg.trade_fraction * value / mid)
            self._max_pos[mask] = (cfg.max_position if cfg.max_position is not None
                                   else cfg.max_position_fraction * value / mid)
        self._o_qty[mask] = 0.0
        self._o_price[mask] = 0.0
        self._o_next[mask] = 0
        self._o_last[mask] = -1
        self._terminated[mask] = False
        self._truncated[mask] = False
        self._n_done = int(np.count_nonzero(self._terminated | self._truncated))

    def _resume(self, mask: np.ndarray, mid: np.ndarray, book: dict) -> None:
        """Start from a book saved by `book_state` (paper trading steps one decision at a time): the values
        are marked at the start's known mid with the step's own formula, so a resumed run is bit-for-bit the
        run that never stopped."""
        missing = [k for k in BOOK_KEYS if k not in book]
        if missing:
            raise ConfigError(f"reset option 'book' lacks {missing}")
        if self.config.action_mode == "limit":
            raise ConfigError("resuming a book is not supported in 'limit' mode (pending orders are not saved)")
        def col(key):
            return np.broadcast_to(np.asarray(book[key], dtype=np.float64), (self.num_envs,))[mask]
        quote, base, quote_gross = col("quote"), col("base"), col("quote_gross")
        self._quote[mask], self._base[mask], self._quote_gross[mask] = quote, base, quote_gross
        self._value[mask] = quote + base * mid
        self._value_gross[mask] = quote_gross + base * mid
        self._trade_size[mask], self._max_pos[mask] = col("trade_size"), col("max_position")

    def book_state(self, i: int = 0) -> dict:
        """Book i as plain floats, for `reset(options={"book": ...})`."""
        return {"quote": float(self._quote[i]), "base": float(self._base[i]),
                "quote_gross": float(self._quote_gross[i]), "trade_size": float(self._trade_size[i]),
                "max_position": float(self._max_pos[i])}

    def _obs(self) -> np.ndarray:
        book = self._book
        feats = book.features[np.minimum(self._row, self._feat_cap)]
        mid = book.mid[self._mark]
        value = self._value
        safe = np.where(value > 0, value, np.inf)
        parts = [feats, (self._base * mid / safe)[:, None], (self._quote / safe)[:, None]]
        if self.config.action_mode == "limit":
            parts.append((self._o_qty * mid / safe)[:, None])
        return np.concatenate(parts, axis=1, dtype=np.float32)

    def _reset_info(self) -> dict:
        book = self._book
        n = self.num_envs
        info = {key: np.zeros(n) for key in INFO_KEYS}
        info.update(decision_block=book.decision_block[np.minimum(self._row, self._cap)],
                    mark_block=book.market.blocks[self._mark], exec_block=np.full(n, -1, dtype=np.int64),
                    exec_mid=np.zeros(n), traded=np.zeros(n, dtype=bool), value=self._value.copy(),
                    value_gross=self._value_gross.copy(), position=self._base.copy(), cash=self._quote.copy(),
                    order_pending=self._o_qty != 0, trade_size=self._trade_size.copy(),
                    max_position=self._max_pos.copy())
        return info

    # ---------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """options: "start" / "stop" = decision rows (per episode, int or [N]) to run from / to (exclusive);
        "book" = a book saved by `book_state` to continue from (else a fresh book from the config)."""
        if seed is not None or self._np_random is None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._reset_envs(np.ones(self.num_envs, dtype=bool), self._np_random, options)
        self._started = True
        return self._obs(), self._reset_info()

    def _order_sizes(self, size: np.ndarray, value0: np.ndarray, mid0: np.ndarray) -> np.ndarray:
        """Base quantity for a signed fraction of value, with the deadband and position limits."""
        qty = np.where(np.abs(size) >= self.config.min_trade_fraction, size * value0 / mid0, 0.0)
        return self._limit_position(qty)

    def _limit_position(self, qty: np.ndarray) -> np.ndarray:
        room = np.maximum(self._max_pos - self._base, 0.0)
        return np.where(qty > 0, np.minimum(qty, room), -np.minimum(-qty, np.maximum(self._base, 0.0)))

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._compiled:
            return self._step_compiled(actions)
        book, cfg = self._book, self.config
        ex = cfg.execution
        n, lat, stride = self.num_envs, ex.latency_blocks, book.stride
        resetting = self.done.copy() if self.autoreset else np.zeros(n, dtype=bool)
        if resetting.any():
            self._reset_envs(resetting, self._np_random)
        live = ~self.done & ~resetting
        row = np.minimum(self._row, self._cap)
        gi = book.decision_index[row]
        mid0 = book.mid[self._mark]
        value0 = self._value
        mode = cfg.action_mode
        actions = np.asarray(actions)
        exec_i = gi + lat
        if mode == "discrete":
            a = actions.reshape(n).astype(np.int64)
            if np.any((a < 0) | (a > 2)):
                raise ValueError(f"discrete actions are 0 (sell), 1 (hold), 2 (buy); got {a}")
            qty = self._limit_position(np.where(a == BUY, self._trade_size, np.where(a == SELL, -self._trade_size, 0.0)))
        elif mode == "fraction":
            qty = self._order_sizes(np.clip(actions.reshape(n).astype(np.float64), -1.0, 1.0), value0, mid0)
        else:
            qty, exec_i = self._limit_step(actions, live, gi, value0, mid0)
        qty = np.where(live, qty, 0.0)
        market = book.market
        fills = execute(market, exec_i, qty, self._base, self._quote, ex)
        # gross shadow: the same fills, priced without the pool fee and gas
        state = exec_i - 1
        rb, rq = market.reserve_base[state], market.reserve_quote[state]
        bought, sold = np.maximum(fills.base_delta, 0.0), np.maximum(-fills.base_delta, 0.0)
        gross_delta = np.where(fills.traded, np.where(bought > 0, -amount_in_for_out(bought, rq, rb, 0.0), 0.0)
                               + np.where(sold > 0, amount_out(sold, rb, rq, 0.0), 0.0), 0.0)
        self._base = self._base + fills.base_delta
        self._quote = self._quote + fills.quote_delta
        self._quote_gross = self._quote_gross + gross_delta
        mark1 = np.where(live, gi + stride - 1, self._mark)
        mid1 = book.mid[mark1]
        value1 = self._quote + self._base * mid1
        value_gross1 = self._quote_gross + self._base * mid1
        reward = np.where(live, value1 - value0, 0.0) * cfg.reward_scale
        self._mark = mark1
        self._value, self._value_gross = value1, value_gross1
        self._row = self._row + live
        self._steps = self._steps + live
        terminated = live & ~(value1 > 0)
        self._terminated |= terminated
        self._truncated |= live & ~terminated & (self._row >= self._stop)
        info = {
            "decision_block": book.decision_block[row],
            "mark_block": market.blocks[mark1],
            "exec_block": np.where(fills.traded, market.blocks[exec_i], -1),
            "exec_mid": np.where(fills.traded, rq / rb, 0.0),
            "base_delta": fills.base_delta, "quote_delta": fills.quote_delta, "fee": fills.fee_quote,
            "gas": fills.gas_quote, "slippage": fills.slippage_quote, "traded": fills.traded,
            "value": value1, "value_gross": value_gross1, "position": self._base.copy(), "cash": self._quote.copy(),
            "order_pending": self._o_qty != 0, "stepped": live,
        }
        return self._obs(), reward, self._terminated.copy(), self._truncated.copy(), info

    def _step_compiled(self, actions):
        """`step` in "discrete" mode through `_discrete_step`: the same autoreset, state and results as the
        numpy step, in one compiled call. The info arrays are rows of three fresh [k, N] blocks (`_OUT_F`,
        `_OUT_I`, `_OUT_B`), never shared with the env's state or with another step."""
        n = self.num_envs
        a = actions
        if (type(a) is not np.ndarray or a.dtype != np.int64 or a.shape != (n,) or not a.flags.c_contiguous
                or not a.flags.writeable):  # as the numpy step converts them; one kernel signature
            a = np.asarray(actions).reshape(n).astype(np.int64)
        resetting = self._no_reset
        if self._n_done and self.autoreset:
            resetting = self._terminated | self._truncated
            self._reset_envs(resetting, self._np_random)
        ok, n_done, obs, f, i, b = _discrete_step(a, resetting, *self._kernel_args)
        if not ok:
            raise ValueError(f"discrete actions are 0 (sell), 1 (hold), 2 (buy); got {a}")
        self._n_done = n_done
        info = {"decision_block": i[0], "mark_block": i[1], "exec_block": i[2], "exec_mid": f[1], "base_delta": f[2],
                "quote_delta": f[3], "fee": f[4], "gas": f[5], "slippage": f[6], "traded": b[2], "value": f[7],
                "value_gross": f[8], "position": f[9], "cash": f[10], "order_pending": b[3], "stepped": b[4]}
        return obs, f[0], b[0], b[1], info

    def _limit_step(self, actions, live, gi, value0, mid0):
        """Place / keep / check the limit orders; returns (base qty to execute, landing block index)."""
        cfg, book = self.config, self._book
        n, lat, stride = self.num_envs, cfg.execution.latency_blocks, book.stride
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(n, 2), -1.0, 1.0)
        new = live & (np.abs(a[:, 0]) >= cfg.min_trade_fraction)
        qty_new = self._order_sizes(a[:, 0], value0, mid0)
        self._o_qty = np.where(new, qty_new, self._o_qty)
        self._o_price = np.where(new, mid0 * (1.0 + a[:, 1] * cfg.limit_max_offset), self._o_price)
        self._o_next = np.where(new, gi + lat, self._o_next)
        self._o_last = np.where(new, gi + lat + cfg.limit_window_blocks - 1, self._o_last)
        # landing blocks this step can check: up to the next decision block b_t + stride
        cand = gi[:, None] + np.arange(stride + 1)[None, :]
        hi = np.minimum(self._o_last, gi + stride)
        pending = live & (self._o_qty != 0)
        mask = (cand >= self._o_next[:, None]) & (cand <= hi[:, None]) & pending[:, None]
        market = book.market
        state = cand - 1
        rb, rq = market.reserve_base[state], market.reserve_quote[state]
        fee = market.fee if cfg.execution.charge_fees else 0.0
        q = np.where(pending, np.abs(self._o_qty), 1.0)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            buy_px = amount_in_for_out(q, rq, rb, fee) / q
            sell_px = amount_out(q, rb, rq, fee) / q
        price = self._o_price[:, None]
        ok = mask & np.where((self._o_qty > 0)[:, None], buy_px <= price, sell_px >= price)
        hit = ok.any(axis=1)
        first = ok.argmax(axis=1)
        exec_i = np.where(hit, cand[np.arange(n), first], gi + lat)
        qty = np.where(hit, self._o_qty, 0.0)
        self._o_qty = np.where(hit, 0.0, self._o_qty)
        self._o_next = np.where(live, gi + stride + 1, self._o_next)
        self._o_qty = np.where(self._o_last < self._o_next, 0.0, self._o_qty)
        return qty, exec_i


class TradingEnv(gymnasium.Env):
    """One trading book over one episode: the N = 1 case of `VectorTradingEnv` (see the module docstring)."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, episode: Episode, config: EnvConfig | None = None, compiled: bool = True):
        super().__init__()
        self.config = config or EnvConfig()
        self.episode = episode
        self._vec = VectorTradingEnv(episode, self.config, num_envs=1, autoreset=False, compiled=compiled)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self.feature_names = self._vec.feature_names
        self.obs_names = self._vec.obs_names

    @property
    def market(self) -> PoolMarket:
        return self._vec.market

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """options: "start" / "stop" = the decision rows to run from / to (exclusive); "book" = a saved
        `book_state()` to continue from."""
        super().reset(seed=seed)
        self._vec._reset_envs(np.ones(1, dtype=bool), self.np_random, options)
        self._vec._started = True
        return self._vec._obs()[0], _first(self._vec._reset_info())

    def book_state(self) -> dict:
        return self._vec.book_state(0)

    def step(self, action):
        if self._vec.done[0]:
            raise RuntimeError("the episode is over: call reset()")
        action = np.asarray(action)[None, ...]
        obs, reward, terminated, truncated, info = self._vec.step(action)
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first(info)


def _first(info: dict) -> dict:
    return {key: value[0].item() for key, value in info.items()}
