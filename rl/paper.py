"""Paper trading: a stored policy on new blocks, filled by the backtester's own env, with a ledger in the lake.

Timing (the backtester's, `rl.env`): a decision for block b knows blocks < b, so it is made as soon as
block b - 1 is in the lake. Its order lands in block b + latency and fills against the reserves at the end
of block b + latency - 1; the book is marked at the end of block b + stride - 1, when the next decision
is made. So each new head h does two things, in order:

1. *settle* the pending decision b once h >= b + stride - 1: one env step on a one-decision episode at b,
   resumed from the saved book (`TradingEnv.reset(options={"book": ...})`), so fills, fees, gas, slippage,
   caps and marks are the backtester's arithmetic, not a copy of it;
2. *decide* for h + 1: the same env, reset on the decision's episode, gives the observation (features known
   at h + 1, the book as shares of its value), and the policy acts. That is the moment an order is ready.

The one thing not in the lake when the decision must be settled is the landing block's header, whose
base fee prices the gas when latency == stride: EIP-1559 fixes it from block h's header (`next_base_fee`),
so the env's market gets one provisional row at h + 1 (reserves of h, which no fill reads; base fee
predicted). On a chain that follows EIP-1559 the prediction equals the real header, which is what makes
paper trading over past blocks reproduce the backtest exactly (tests/test_paper.py).

Each settled decision is one row of the run's ledger (order, fill, position, cash, equity, running Sharpe,
max drawdown and VaR), written atomically to `LAKE/paper_ledger/<run id>.parquet` (the `paper_ledger`
catalog view); `LAKE/paper_ledger/_state/<run id>.json` keeps the book so a run can continue (the Dagster
asset does one micro-batch per materialization). Reorgs: `PaperTrader.on_reorg` undoes pending and settled
decisions that read an orphaned block (book rewound, rows retracted); a catch-up decides them again.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from chainlake.errors import ConfigError
from chainlake.features.inputs import scan_lake_table
from chainlake.ingest.lake import write_parquet_atomic
from rl.env import ACTION_NAMES, HOLD, TradingEnv
from rl.market import PoolMarket
from rl.metrics import max_drawdown, periods_per_year, sharpe, step_returns, var_cvar
from rl.trader import PolicyRunner

LEDGER = "paper_ledger"
KEEP = 128  # heads (and settled decisions) remembered for reorgs: deeper than any follow confirmation depth
LEDGER_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("policy", pa.string()), ("version", pa.string()), ("pool", pa.string()),
    ("decision_block", pa.int64()), ("action", pa.int8()), ("side", pa.string()), ("traded", pa.bool_()),
    ("exec_block", pa.int64()), ("base_delta", pa.float64()), ("quote_delta", pa.float64()),
    ("exec_price", pa.float64()), ("exec_mid", pa.float64()), ("fee", pa.float64()), ("gas", pa.float64()),
    ("slippage", pa.float64()), ("position", pa.float64()), ("cash", pa.float64()), ("equity", pa.float64()),
    ("equity_gross", pa.float64()), ("mark_block", pa.int64()), ("reward", pa.float64()),
    ("sharpe", pa.float64()), ("max_drawdown", pa.float64()), ("var_95", pa.float64()),
    ("decided_at", pa.timestamp("us", tz="UTC")), ("decision_ms", pa.float64()),
    ("base_fee_predicted", pa.bool_()), ("features_changed", pa.bool_()),
])


def next_base_fee(base_fee: int, gas_used: int, gas_limit: int) -> int:
    """EIP-1559: the next block's base fee from its parent's header (elasticity 2, max change 1/8)."""
    target = gas_limit // 2
    if target <= 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        return base_fee + max(base_fee * (gas_used - target) // target // 8, 1)
    return base_fee - base_fee * (target - gas_used) // target // 8


def predicted_base_fee_gwei(lake_dir: str | Path, block: int) -> float:
    """The base fee (gwei) of block `block` + 1, from block `block`'s header in the lake."""
    row = (scan_lake_table(lake_dir, "blocks").filter(pl.col("block_number") == block)
           .select("base_fee_per_gas", "gas_used", "gas_limit").collect())
    if row.height == 0 or row.get_column("base_fee_per_gas")[0] is None:
        raise ConfigError(f"block {block} has no base fee in the lake: cannot price the next block's gas")
    fee, used, limit = (int(row.get_column(c)[0]) for c in ("base_fee_per_gas", "gas_used", "gas_limit"))
    return float(next_base_fee(fee, used, limit)) / 1e9


def extend_market(market: PoolMarket, last_block: int, base_fee_gwei: float) -> PoolMarket:
    """`market` with provisional rows up to `last_block`: the last known state repeated (no fill reads it:
    fills use the reserves of the block before they land), the next block's base fee as predicted."""
    extra = last_block - int(market.blocks[-1])
    if extra <= 0:
        return market

    def grow(values: np.ndarray, first: float | None = None) -> np.ndarray:
        pad = np.full(extra, values[-1], dtype=values.dtype)
        if first is not None:
            pad[0] = first
        return np.concatenate([values, pad])

    blocks = np.concatenate([market.blocks, np.arange(market.blocks[-1] + 1, last_block + 1, dtype=np.int64)])
    return replace(market, blocks=blocks, reserve_base=grow(market.reserve_base),
                   reserve_quote=grow(market.reserve_quote), base_fee_gwei=grow(market.base_fee_gwei, base_fee_gwei),
                   eth_price_quote=grow(market.eth_price_quote))


def lake_hashes(lake_dir: str | Path, first: int, last: int) -> dict[str, str]:
    """{block number as text: block hash} for the lake's blocks first..last."""
    rows = (scan_lake_table(lake_dir, "blocks").filter(pl.col("block_number").is_between(first, last))
            .select("block_number", "block_hash").collect())
    return {str(b): h for b, h in rows.iter_rows()}


@dataclass
class Pending:
    """A decision made, not yet settled."""

    block: int
    action: int
    obs: list[float]
    decided_at: float  # unix seconds
    decision_ms: float | None


@dataclass
class PaperState:
    """Everything a paper run needs to continue: saved as JSON beside the ledger."""

    run_id: str
    policy: str
    version: str
    pool: str
    capital: float | None = None
    book: dict | None = None
    pending: Pending | None = None
    last_head: int | None = None
    equity: list[float] = field(default_factory=list)
    missed: int = 0
    dropped: int = 0
    rewound: int = 0  # settled decisions undone by reorgs
    hashes: dict[str, str] = field(default_factory=dict)  # block -> hash of the recent heads it traded on
    history: list[dict] = field(default_factory=list)  # recent settled decisions: block, book before, equity length
    retract_from: int | None = None  # ledger rows from this decision block on are to be removed at the next save

    def to_json(self) -> str:
        data = {**self.__dict__, "pending": None if self.pending is None else self.pending.__dict__}
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> PaperState:
        data = json.loads(text)
        pending = data.pop("pending")
        return cls(**data, pending=None if pending is None else Pending(**pending))


def new_run_id(policy: str) -> str:
    return f"{policy}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


class PaperTrader:
    """Settles and decides on each new head (see the module docstring); the ledger rows accumulate in `rows`."""

    def __init__(self, runner: PolicyRunner, state: PaperState | None = None, *, capital: float | None = None):
        self.runner = runner
        runner.restart()
        self.state = state or PaperState(new_run_id(runner.name), runner.name, runner.version, runner.pool,
                                         capital=capital)
        if (self.state.policy, self.state.version, self.state.pool) != (runner.name, runner.version, runner.pool):
            raise ConfigError(f"paper run {self.state.run_id} trades {self.state.policy} {self.state.version} on "
                              f"{self.state.pool}; start a new run for {runner.name} {runner.version}")
        self.rows: list[dict] = []
        self.per_year = periods_per_year(runner.stride)

    # -------------------------------------------------------------- the two things a head does
    def on_head(self, head: int, seen_at: float | None = None) -> list[dict]:
        """Settle what block `head` settles, then decide for head + 1. Returns the new ledger rows.
        `seen_at` (time.monotonic() when the head was first seen) times the decision."""
        new: list[dict] = []
        pending = self.state.pending
        if pending is not None and head >= pending.block + self.runner.stride - 1:
            new.append(self._settle(pending, head))
            self.state.pending = None
        if self.state.last_head is not None and head > self.state.last_head + 1:
            # blocks arrived together: the decisions between were never made (a live trader misses them too)
            self.state.missed += sum(self.runner.decision_block(h) is not None
                                     for h in range(self.state.last_head + 1, head))
        block = self.runner.decision_block(head)
        if block is not None and self.state.pending is None and (self.state.last_head is None or head > self.state.last_head):
            self._decide(block, head, seen_at)
        self.state.last_head = head if self.state.last_head is None else max(self.state.last_head, head)
        self._remember(head)
        self.rows.extend(new)
        return new

    def _remember(self, head: int) -> None:
        """The hash of each head traded on (the last KEEP), so a later reorg of any of them is noticed."""
        self.state.hashes.update(lake_hashes(self.runner.lake_dir, head, head))
        for key in sorted(self.state.hashes, key=int)[:-KEEP]:
            del self.state.hashes[key]

    def find_fork(self) -> int | None:
        """The first remembered head whose block the lake no longer has (a reorg the caller did not report)."""
        if not self.state.hashes:
            return None
        blocks = sorted(int(b) for b in self.state.hashes)
        now = lake_hashes(self.runner.lake_dir, blocks[0], blocks[-1])
        return next((b for b in blocks if now.get(str(b)) != self.state.hashes[str(b)]), None)

    def resync(self) -> int | None:
        """Undo what a reorg changed since this run's state was saved, when nobody reported it (another
        follower rolled the lake back meanwhile): the fork found, or None."""
        fork = self.find_fork()
        if fork is not None:
            self.on_reorg(fork)
        return fork

    def on_reorg(self, fork: int) -> None:
        """Blocks >= `fork` were replaced. A pending decision that knew any of them is dropped; settled
        decisions whose fill or mark read any of them (block b reads b - 1 .. b + stride) are undone: the
        book goes back to before the first of them and their ledger rows are retracted. Heads from the
        fork on count as unseen, so a catch-up decides those blocks again on the new chain; in real time
        they are past, and count as missed."""
        pending = self.state.pending
        if pending is not None and pending.block - 1 >= fork:
            self.state.pending = None
            self.state.dropped += 1
        touched = [h for h in self.state.history if h["block"] + self.runner.stride >= fork]
        if touched:
            first = touched[0]
            self.state.book, self.state.equity = first["book"], self.state.equity[:first["equity_len"]]
            self.state.history = [h for h in self.state.history if h["block"] < first["block"]]
            self.state.retract_from = min(first["block"], self.state.retract_from or first["block"])
            self.rows = [r for r in self.rows if r["decision_block"] < first["block"]]
            self.state.rewound += len(touched)
            self.state.pending = None
            fork = min(fork, first["block"] - 1)  # decide the first undone block again
        if self.state.last_head is not None:
            self.state.last_head = min(self.state.last_head, fork - 1)
        for key in [k for k in self.state.hashes if int(k) >= fork]:
            del self.state.hashes[key]

    def _env(self, block: int, head: int) -> TradingEnv:
        """The backtester's env on the one-decision episode at `block`, its market through `head` plus the
        provisional rows the step needs (see `extend_market`)."""
        runner = self.runner
        market = runner.market(block - 1, head)
        needed = block + runner.stride
        if needed > head:
            market = extend_market(market, needed, predicted_base_fee_gwei(runner.lake_dir, head))
        episode = runner.episode_at(block, market)
        if self.state.capital is None:
            start = episode.market.index(block) - 1
            self.state.capital = float(runner.config.capital_share * episode.market.reserve_quote[start])
        config = replace(runner.config.env_config(episode), initial_quote=self.state.capital)
        return TradingEnv(episode, config)

    def _reset(self, env: TradingEnv) -> tuple[np.ndarray, dict]:
        options = {"book": self.state.book} if self.state.book is not None else None
        obs, info = env.reset(options=options)
        if self.state.book is None:
            self.state.book = env.book_state()
            self.state.equity = [float(info["value"])]
        return obs, info

    def _decide(self, block: int, head: int, seen_at: float | None) -> None:
        obs, _ = self._reset(self._env(block, head))
        action = self.runner.act_obs(obs)
        ms = None if seen_at is None else (time.monotonic() - seen_at) * 1000.0
        self.state.pending = Pending(block, action, obs.astype(float).tolist(), time.time(), ms)

    def _settle(self, pending: Pending, head: int) -> dict:
        """Fill the pending order with the action chosen then. Should the features known at its block have
        changed since (a late mempool sighting, a rebuilt view), the row says so (`features_changed`): the
        trade is what was decided, and the backtest over these blocks may differ there."""
        env = self._env(pending.block, head)
        book_before = dict(self.state.book) if self.state.book is not None else None
        obs, _ = self._reset(env)
        changed = not np.array_equal(obs, np.asarray(pending.obs, dtype=np.float32))
        _, reward, _, _, info = env.step(pending.action)
        predicted = info["exec_block"] > head if info["traded"] else False
        self.state.history = [*self.state.history[-(KEEP - 1):], {"block": pending.block, "book": book_before,
                                                                  "equity_len": len(self.state.equity)}]
        self.state.book = env.book_state()
        self.state.equity.append(float(info["value"]))
        return self._row(pending, info, reward, predicted) | {"features_changed": changed}

    def _row(self, pending: Pending, info: dict, reward: float, predicted: bool) -> dict:
        equity = np.asarray(self.state.equity)
        returns = step_returns(equity)
        enough = len(returns) >= 2
        traded = bool(info["traded"])
        base = info["base_delta"]
        return {
            "run_id": self.state.run_id, "policy": self.state.policy, "version": self.state.version,
            "pool": self.state.pool, "decision_block": pending.block, "action": pending.action,
            "side": ACTION_NAMES[pending.action] if traded or pending.action == HOLD else "none",
            "traded": traded, "exec_block": int(info["exec_block"]) if traded else None,
            "base_delta": base, "quote_delta": info["quote_delta"],
            "exec_price": -(info["quote_delta"] + info["gas"]) / base if traded and base else None,
            "exec_mid": info["exec_mid"] if traded else None, "fee": info["fee"], "gas": info["gas"],
            "slippage": info["slippage"], "position": info["position"], "cash": info["cash"],
            "equity": info["value"], "equity_gross": info["value_gross"], "mark_block": int(info["mark_block"]),
            "reward": reward, "sharpe": sharpe(returns, self.per_year) if enough else None,
            "max_drawdown": max_drawdown(equity), "var_95": var_cvar(returns)[0] if enough else None,
            "decided_at": datetime.fromtimestamp(pending.decided_at, UTC), "decision_ms": pending.decision_ms,
            "base_fee_predicted": predicted,
        }

    # -------------------------------------------------------------- persistence
    def ledger(self) -> pl.DataFrame:
        return pl.from_arrow(pa.Table.from_pylist(self.rows, schema=LEDGER_SCHEMA))

    def save(self, lake_dir: str | Path) -> Path:
        """Append this session's rows to the run's ledger file and save the state (both atomic)."""
        folder = Path(lake_dir) / LEDGER
        path = folder / f"{self.state.run_id}.parquet"
        table = pa.Table.from_pylist(self.rows, schema=LEDGER_SCHEMA)
        if path.exists():
            old = pl.read_parquet(path)
            keep = old.filter(~pl.col("decision_block").is_in(table.column("decision_block").to_pylist()))
            if self.state.retract_from is not None:  # rows a reorg undid
                keep = keep.filter(pl.col("decision_block") < self.state.retract_from)
            table = pa.concat_tables([keep.to_arrow().cast(LEDGER_SCHEMA), table])
        self.state.retract_from = None
        write_parquet_atomic(path, table.sort_by("decision_block"))
        state = folder / "_state" / f"{self.state.run_id}.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_suffix(".tmp")
        tmp.write_text(self.state.to_json())
        os.replace(tmp, state)
        return path


def load_state(lake_dir: str | Path, run_id: str) -> PaperState:
    path = Path(lake_dir) / LEDGER / "_state" / f"{run_id}.json"
    if not path.exists():
        raise ConfigError(f"no paper run {run_id!r} in {lake_dir}")
    return PaperState.from_json(path.read_text())


def latest_run(lake_dir: str | Path, policy: str, version: str) -> PaperState | None:
    """The newest saved paper run of this policy version in the lake, if any."""
    folder = Path(lake_dir) / LEDGER / "_state"
    states = [PaperState.from_json(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    mine = [s for s in states if (s.policy, s.version) == (policy, version)]
    return max(mine, key=lambda s: (s.last_head or -1, s.run_id)) if mine else None


def catch_up(lake_dir: str | Path, policy: str, *, models_dir: str | Path | None = None,
             capital: float | None = None) -> PaperReport:
    """Advance the newest paper run of `policy` (or a new one) through every head the lake gained since it
    last ran: a micro-batch for a scheduler (the Dagster asset) that keeps the lake current with
    `chainlake.follow`. A reorg since the last batch (a remembered head whose hash changed) is undone
    first (`PaperTrader.on_reorg`). Decisions it replays were point-in-time all the same, but not made in
    real time, so their decision_ms is null. One batch at a time per lake (a file lock)."""
    from chainlake.follow import lake_head
    from rl.policy_store import DEFAULT_MODELS

    runner = PolicyRunner(lake_dir, policy, models_dir=models_dir or DEFAULT_MODELS)
    with run_lock(lake_dir):
        trader = PaperTrader(runner, latest_run(lake_dir, runner.name, runner.version), capital=capital)
        head = lake_head(lake_dir)
        if head is None:
            raise ConfigError(f"the lake {lake_dir} has no blocks yet")
        fork = trader.resync()
        first = head if trader.state.last_head is None else trader.state.last_head + 1
        for h in range(first, head + 1):
            trader.on_head(h)
        path = trader.save(lake_dir)
    ledger = pl.read_parquet(path)
    summary = ledger_summary(ledger, trader.state.capital, trader.state.missed)
    return PaperReport(trader.state.run_id, ledger, path, summary, max(head - first + 1, 0),
                       int(fork is not None), trader.state.capital)


@contextmanager
def run_lock(lake_dir: str | Path):
    """An exclusive lock on the lake's paper runs, so two batches, or a batch and `chainlake paper`, never
    advance runs at once (a batch would take the newest run of its policy, maybe the one trading live).
    Not waiting: the second one gets one clear error."""
    folder = Path(lake_dir) / LEDGER / "_state"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another paper run is trading on {lake_dir} right now; try again when it "
                              "stops") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ledger_summary(ledger: pl.DataFrame, capital: float | None, missed: int = 0) -> dict:
    """P&L and risk of a ledger (the last row's running metrics)."""
    if ledger.height == 0:
        return {"decisions": 0, "trades": 0, "pnl": 0.0, "return": 0.0, "sharpe": None, "max_drawdown": 0.0,
                "missed": missed}
    last = ledger.row(-1, named=True)
    start = capital if capital else ledger.get_column("equity")[0]
    pnl = last["equity"] - start
    return {"decisions": ledger.height, "trades": int(ledger.get_column("traded").sum()), "pnl": pnl,
            "return": pnl / start if start else math.nan, "pnl_gross": last["equity_gross"] - start,
            "fees": float(ledger.get_column("fee").sum()), "gas": float(ledger.get_column("gas").sum()),
            "sharpe": last["sharpe"], "max_drawdown": last["max_drawdown"], "var_95": last["var_95"],
            "first_block": ledger.get_column("decision_block")[0], "last_block": last["decision_block"],
            "missed": missed}


@dataclass
class PaperReport:
    run_id: str
    ledger: pl.DataFrame
    path: Path | None
    summary: dict
    heads: int
    reorgs: int
    capital: float | None = None  # the run's starting quote balance

    def text(self) -> str:
        s = self.summary
        if not s["decisions"]:
            return f"paper run {self.run_id}: no decision settled yet ({self.heads} new heads)"
        sharpe_text = "n/a" if s["sharpe"] is None else f"{s['sharpe']:.2f}"
        return (f"paper run {self.run_id}: {s['decisions']} decisions (blocks {s['first_block']}.."
                f"{s['last_block']}), {s['trades']} trades, P&L {s['pnl']:+.4f} ({s['return']:+.4%}), "
                f"fees {s['fees']:.4f}, gas {s['gas']:.6f}, Sharpe {sharpe_text}, max drawdown "
                f"{s['max_drawdown']:.4%}; {self.reorgs} reorgs, {s['missed']} decisions missed")


def backtest_window(runner: PolicyRunner, first_block: int, last_block: int, capital: float):
    """The backtester on the decisions first_block..last_block (the blocks a paper or live run traded), with
    the same policy and starting capital: the reference a paper run must equal and a live run is judged by."""
    from rl.backtest import backtest
    from rl.pipeline import agent_episode

    episode = agent_episode(runner.lake_dir, runner.config)
    rows = np.flatnonzero((episode.as_of >= first_block) & (episode.as_of <= last_block))
    if len(rows) == 0:
        raise ConfigError(f"no backtest decisions in blocks {first_block}..{last_block}")
    config = replace(runner.config.env_config(episode), initial_quote=capital)
    return backtest(episode, runner.policy, config, start=int(rows[0]), stop=int(rows[-1]) + 1, name=runner.name)


def replay(runner: PolicyRunner, heads: range, capital: float | None = None) -> PaperTrader:
    """Paper-trade over past heads of the lake, one head at a time (as if each had just landed)."""
    trader = PaperTrader(runner, capital=capital)
    for head in heads:
        trader.on_head(head)
    return trader


class _Enough(Exception):
    """Raised from the follow callback once the run has seen its blocks."""


def run_paper(lake_dir: str | Path, url: str, policy: str, **options) -> PaperReport:
    """`run_papers` for one policy."""
    return run_papers(lake_dir, url, [policy], **options)[0]


def run_papers(lake_dir: str | Path, url: str, policies: Sequence[str], *, blocks: int,
               models_dir: str | Path | None = None, version: str | None = None, capital: float | None = None,
               run_id: str | None = None, confirmations: int = 12, interval: float = 0.25,
               timeout: float | None = None, on_row: Callable[[str, dict], None] | None = None,
               **follow_options) -> list[PaperReport]:
    """Catch the lake up with the node, then follow it for `blocks` new blocks, paper-trading each policy on
    each (see the module docstring):
    several policies share one follow loop, so they trade exactly the same blocks side by side.

    The loop is `chainlake.follow.follow` (reorg check, ingest, decode, mempool polled between steps,
    features), with the traders run after each step; the ledgers are saved after every step, so the
    catalog's `paper_ledger` view is live. `run_id` continues a saved run (one policy only). `timeout`
    (seconds) stops waiting for blocks that do not come. `follow_options` go to `follow_step` (datasets,
    addresses, tokens, partition_size). `on_row(policy, row)` sees each settled decision.
    """
    from chainlake.follow import follow, lake_head
    from chainlake.rpc import RpcClient
    from rl.policy_store import DEFAULT_MODELS

    if blocks < 1:
        raise ConfigError("--blocks must be >= 1")
    if not policies or len(set(policies)) != len(policies):
        raise ConfigError(f"give each policy once (got {list(policies)})")
    if run_id and len(policies) > 1:
        raise ConfigError("--run-id continues one run: give one policy with it")
    if capital is not None and not capital > 0:
        raise ConfigError(f"--capital must be > 0 (got {capital})")
    runners = [PolicyRunner(lake_dir, p, version=version, models_dir=models_dir or DEFAULT_MODELS) for p in policies]
    traders = [PaperTrader(r, load_state(lake_dir, run_id) if run_id else None, capital=capital) for r in runners]
    for trader in traders:  # a continued run: reorgs of the lake while it was stopped (later ones follow reports)
        trader.resync()
    seen = {"heads": 0, "reorgs": 0, "last": None}  # the first step catches up: blocks count from its head

    def on_step(step) -> None:
        arrived = time.monotonic() - step.seconds  # the step began when the new head was seen
        fork = min((f for f in (step.fork, step.late_fork) if f is not None), default=None)
        if fork is not None:
            seen["reorgs"] += 1
            for trader in traders:
                trader.on_reorg(fork)
        head = lake_head(lake_dir)
        if head is None or (seen["last"] is not None and head <= seen["last"] and fork is None):
            return
        for trader in traders:
            for row in trader.on_head(head, seen_at=arrived):
                if on_row is not None:
                    on_row(trader.runner.name, row)
            trader.save(lake_dir)
        if seen["last"] is not None:
            seen["heads"] += max(head - seen["last"], 1)
        seen["last"] = head
        if seen["heads"] >= blocks:
            raise _Enough

    with RpcClient(url) as client:  # an unreachable node is one clear error, before anything is written
        client.block_number()
    steps = None if timeout is None else max(1, math.ceil(timeout / interval))
    with run_lock(lake_dir):
        try:
            follow(url, lake_dir, confirmations=confirmations, interval=interval, steps=steps, on_step=on_step,
                   **follow_options)
        except _Enough:
            pass
        finally:  # also on Ctrl-C or a node error: what was settled stays in the ledger
            paths = [trader.save(lake_dir) for trader in traders]
    reports = []
    for trader, path in zip(traders, paths):
        ledger = pl.read_parquet(path)
        summary = ledger_summary(ledger, trader.state.capital, trader.state.missed)
        reports.append(PaperReport(trader.state.run_id, ledger, path, summary, seen["heads"], seen["reorgs"],
                                   trader.state.capital))
    return reports
