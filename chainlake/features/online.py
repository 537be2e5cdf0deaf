"""Online features: the newest block's feature values, from the same view definitions as the offline state tables.

`OnlineFeatures` keeps a *hot window* of the lake tables the requested views read, in memory: the last N
blocks, N the longest span `Registry.spans` gives the views (each view's `history_blocks`, view-on-view reads
added up), cut by the tables' window rule (`chainlake.features.inputs.window`: state tables keep each
entity's state before the window, the token ledger its balances). It is seeded once from the lake, then
extended per new block from the node with the lake's own converters (`chainlake.ingest.datasets`) and
decoders (`chainlake.decode`): no second implementation of decoding or of any feature. It computes only the
requested views and the views they read (`engine.LatestRows`): on the first block each over its span of
the window, then on each new block each over its own `history_blocks` only, a view it reads taken from the
rows already computed (they never change while the chain does not reorganize), and returns the block's row. A declared history that is too short is caught by
`engine.history_check`; the skew tests compare `on_block` with the offline state tables block by block.

What a decision costs is mostly fixed per-call overhead (a polars or DuckDB call on a few hundred rows costs
about what it costs on one row), so the per-block path does each step once:

- **fetch**: a few new blocks are one JSON-RPC batch (full blocks, block receipts, one eth_getLogs; the
  transactions only when a decoded table reads them), converted by the datasets' converters; a longer
  catch-up, or a node without eth_getBlockReceipts, goes through the datasets' collectors;
- **decode**: only the decoded tables the views read; token and pool metadata stay in memory
  (`Metadata`), read again only for a contract not seen yet;
- **window**: new rows are appended; the window rules cut it back every SLACK blocks, between blocks
  (`refresh`) when the caller has that time (a longer window gives the same rows, since every view is
  computed on its own span of it);
- **features**: each view's new row from its own history (`LatestRows`, rows of earlier blocks cached; a
  reorg drops those from the fork on); the `pool_blocks` grid is built once per block; every polars view
  of the block is one lazy query and all are collected in one call, with polars' in-memory engine; SQL
  views run meanwhile on a small thread pool, on cursors of one DuckDB connection kept for the engine's
  lifetime (DuckDB's fixed cost per statement, ~5-10 ms here, is why the decision path's views are polars);
- **between blocks** (`refresh`, for a caller with idle time): the window and the cached rows are cut back,
  and the lake's mempool tables read again when they changed.

With `pool=...`, a pool's own event tables (`POOL_TABLES`: its reserves, swaps, liquidity events,
sandwiches) hold only that pool's rows, hence the grid too: a view's row of pool P reads only P's rows of
them (true of every shipped view; the one-pool skew test compares every such value with the offline one).

A reorg inside the window (a new block whose parent is not the window's head) drops the orphaned blocks
from the window and fetches the node's chain from the fork on. A reorg deeper than the window, or than the
ledger's carried balances, cannot be undone in memory: one ConfigError says to start again from the lake.

**Mempool views are not computed online from the node.** Their inputs (`mempool`, `mempool_swaps`,
`mempool_observations`) are read from the lake at every block (re-read only when their files change), cut
back to the block like offline. They are exactly as fresh as the lake's last mempool build (`chainlake
follow` rebuilds it each step): a transaction the watcher saw after that build is missing online, so values
of `mempool_pressure` can lag the offline ones, which are built later from later sightings. The metadata
tables (`tokens`, `pools`) are read from the lake the same way (the decoders add new contracts to them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from chainlake.decode.metadata import Metadata
from chainlake.decode.pipeline import TABLES as DECODED_TABLES
from chainlake.decode.table import DecodeContext
from chainlake.errors import ConfigError
from chainlake.features.engine import SMALL, LatestRows, append_rows
from chainlake.features.frames import parse_refs
from chainlake.features.inputs import (
    FEATURE_PREFIX,
    GRID,
    LAKE_SCHEMAS,
    PENDING_TABLES,
    STATIC_TABLES,
    scan_lake_table,
    window,
)
from chainlake.features.registry import Registry, load_registry
from chainlake.ingest.dataset import Context, in_parallel
from chainlake.ingest.datasets import DATASETS
from chainlake.ingest.datasets import blocks as blocks_dataset
from chainlake.ingest.datasets import logs as logs_dataset
from chainlake.ingest.datasets import transactions as transactions_dataset
from chainlake.ingest.pipeline import plan_methods
from chainlake.ingest.ranges import BlockRange
from chainlake.rpc import RpcClient

FETCHED = ("blocks", "transactions", "logs")  # raw datasets a new block is fetched as
LAKE_READ = STATIC_TABLES | PENDING_TABLES | {"mempool_observations"}  # read from the lake, not the node
# Decoded tables whose rows are the events of one pool (its address emitted them): with pool=..., only its rows.
POOL_TABLES = frozenset({"pool_reserves", "dex_swaps", "liquidity_events", "mev_sandwiches"})
ONE_BATCH_BLOCKS = 25  # new blocks fetched in one JSON-RPC batch; more (a long pause) go through the collectors
SLACK = 64  # blocks the hot window grows past its size before it is cut back (cutting it every block costs more)
OVERDUE = 4 * SLACK  # ... and before `on_block` cuts it itself, when `refresh` did not (see `refresh`)


class OnlineFeatures:
    """Feature values of each new block for `refs` (`"view"` or `"view:column"`), for `pool` or every pool.

    `on_block(n)` returns {`view__column`: value known once block n was mined} (the training frame's full
    names); `on_block_frame(n)` the same for every pool, one row each. `timings` holds the seconds of the
    last call's parts: `fetch` (the node, reorg checks included), `decode` (decoding and extending the
    window) and `features`. Use as a context manager or call `close()`.
    """

    def __init__(self, lake_dir: str | Path, rpc_url: str, refs: Sequence[str], pool: str | None = None,
                 registry: Registry | None = None):
        self.lake_dir = Path(lake_dir)
        self.registry = registry or load_registry()
        self.wanted = parse_refs(refs, self.registry)
        self.spans = self.registry.spans(list(self.wanted))  # raises when a view declares no history
        self.size = max(self.spans.values())
        self.pool = pool.lower() if pool else None
        self.tables, self.raw = self._plan()
        self.timings: dict[str, float] = {}
        self._lake_cache: dict[str, tuple[tuple, pl.DataFrame]] = {}
        self.client = RpcClient(rpc_url)
        self.con = duckdb.connect()
        self.con.execute("SET threads=1")  # windows of a few hundred rows: DuckDB's own threads only cost wake-ups
        workers = min(len(self.spans), os.cpu_count() or 1)  # views that do not read each other run at once
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="chainlake-online") if workers > 1 else None
        self.latest = LatestRows(self.registry, list(self.wanted), self.con, self.executor)
        self.metadata = Metadata(self.lake_dir, lambda: RpcClient(rpc_url))  # kept in memory while we live
        try:
            self._ctx = self._context()
            self.hot = self._seed()
            self._warm_up()
        except BaseException:
            self.close()
            raise

    # -- set-up ----------------------------------------------------------------------------------------
    def _plan(self) -> tuple[list[str], list[str]]:
        """(lake tables kept in the hot window, raw datasets fetched per block)."""
        views = [self.registry.views[name] for name in self.spans]
        others = [v.where() for v in views if v.entity != "pool"]
        if others:
            raise ConfigError(f"online features serve views keyed by pool; {', '.join(others)} is not")
        reads = {r for v in views for r in v.reads if not r.startswith(FEATURE_PREFIX)}
        if GRID in reads:
            reads |= {"pool_reserves", "blocks"}
        reads = (reads - {GRID}) | {"blocks"}  # blocks: the hashes that reveal a reorg
        unsupported = sorted(r for r in reads - LAKE_READ if r not in FETCHED and r not in DECODED_TABLES)
        if unsupported:
            raise ConfigError(f"online features cannot follow table(s) {', '.join(unsupported)} block by block "
                              f"(only {', '.join(FETCHED)}, the decoded tables and the lake's mempool and metadata)")
        hot = sorted(reads - LAKE_READ)
        raw = {"blocks"} | {r for r in hot if r in FETCHED}
        raw |= {d for r in hot if r in DECODED_TABLES for d in DECODED_TABLES[r].reads}
        return hot, sorted(raw, key=FETCHED.index)

    def _context(self) -> Context:
        chain_id, head = self.client.probe()
        methods = {}
        for name in self.raw:
            methods.update(plan_methods(self.client, DATASETS[name]))
        return Context(self.client, chain_id, head, methods)

    def _seed(self) -> dict[str, pl.DataFrame]:
        """The hot window from the lake: its last `size` blocks (and what the window rules carry)."""
        head = scan_lake_table(self.lake_dir, "blocks").select(pl.col("block_number").max()).collect().item()
        if head is None:
            raise ConfigError(f"no blocks in {self.lake_dir}: ingest and decode the lake before following online")
        self.head = self._cut_at = int(head)
        first = self.head - self.size + 1
        return {name: self._own_pool(name, window(name, scan_lake_table(self.lake_dir, name), first, self.head)).collect()
                for name in self.tables}

    def _warm_up(self) -> None:
        """What the first block would otherwise pay on top of its own work, done before it arrives: decode the
        lake's newest block once, the result unused (the decoders' first call builds their cached expressions
        and metadata indexes, ~50 ms on the devnet), and compute every view at the window's head (its whole
        span: `LatestRows` then steps block by block from there)."""
        newest = pl.col("block_number") == self.head
        self._decode({name: scan_lake_table(self.lake_dir, name).filter(newest).collect() for name in self.raw})
        self.latest.at(self._inputs(self.head), self.head)

    def _own_pool(self, name: str, frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame | pl.DataFrame:
        """With pool=..., a pool's own event tables hold only its rows: a view's row of pool P reads only P's
        rows of them (true of every shipped view; the one-pool skew test compares with the offline rows)."""
        if self.pool is None or name not in POOL_TABLES:
            return frame
        return frame.filter(pl.col("pool") == self.pool)

    # -- public API ------------------------------------------------------------------------------------
    def on_block(self, number: int) -> dict[str, float | None]:
        """{`view__column`: value} of the pool for block `number` (fetched from the node if new)."""
        if self.pool is None:
            raise ConfigError("OnlineFeatures has no pool: pass pool=... or call on_block_frame for every pool")
        return self._compute(number, self._pool_values)

    def on_block_frame(self, number: int) -> pl.DataFrame:
        """One row per pool (pool + `view__column` columns) with the values known once `number` was mined."""
        return self._compute(number, self._assemble)

    def _compute(self, number: int, shape):
        self.timings = {"fetch": 0.0, "decode": 0.0}
        started = time.perf_counter()
        self.advance(number)
        computing = time.perf_counter()
        rows = self.latest.at(self._inputs(number), number)
        out = shape(rows)
        self.timings["features"] = time.perf_counter() - computing
        self.timings["total"] = time.perf_counter() - started
        return out

    def refresh(self) -> None:
        """The work that can wait for the time between blocks, for a caller that has such time (a decision
        service waiting for the next head): read again the lake tables (mempool, metadata) whose files changed
        since the last block (`on_block` checks them anyway, and then has nothing left to read), and cut the
        window and the cached rows back when they are due (every SLACK blocks; `on_block` does it only when
        it is long overdue, so that memory stays bounded without `refresh`)."""
        for name in sorted({r for n in self.spans for r in self.registry.views[n].reads} & LAKE_READ):
            self._lake_table(name)
        if self.head - self._cut_at >= SLACK:
            self._cut_window()
        self.latest.maintain()

    def close(self) -> None:
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown()
            self.executor = None
        for resource in ("metadata", "client", "con"):
            if getattr(self, resource, None) is not None:
                getattr(self, resource).close()
                setattr(self, resource, None)

    def __enter__(self) -> OnlineFeatures:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- following the node ----------------------------------------------------------------------------
    def advance(self, number: int) -> None:
        """Bring the window up to block `number`: fetch and decode the blocks after its head, undoing a reorg."""
        if number < self.head:  # the window holds the longest span back from its head, not from older blocks
            raise ConfigError(f"block {number} is older than the online window's head {self.head}: read it from "
                              "the lake's state tables")
        if number == self.head:
            return
        started = time.perf_counter()
        new = self._fetch(self.head + 1, number)
        parent = new["blocks"].get_column("parent_hash")[0]
        if parent != self._hash(self.head):
            fork = self._fork()
            self._drop_from(fork)
            new = self._fetch(fork, number)
        fetched = time.perf_counter()
        self._extend(self._decode(new), number)
        self.timings["fetch"] += fetched - started
        self.timings["decode"] += time.perf_counter() - fetched

    def _fetch(self, first: int, last: int) -> dict[str, pl.DataFrame]:
        """Raw rows of blocks first..last from the node, in the lake's schemas, sorted by block."""
        rng = BlockRange(first, last)
        if self._one_batch(rng):
            frames = self._fetch_batch(rng)
        else:
            jobs = [lambda name=name: DATASETS[name].collect(self._ctx, rng) for name in self.raw]
            frames = dict(zip(self.raw, in_parallel(*jobs)))
        raw = {name: as_lake(frames[name], name) for name in self.raw}
        raw["blocks"] = raw["blocks"].sort("block_number")
        self._check_chain(raw["blocks"], first, last)
        return raw

    def _one_batch(self, rng: BlockRange) -> bool:
        """A few new blocks from a node serving block receipts: one round trip (`_fetch_batch`)."""
        receipts = self._ctx.methods.get("receipts", "eth_getBlockReceipts")
        return rng.count <= ONE_BATCH_BLOCKS and receipts == "eth_getBlockReceipts"

    def _fetch_batch(self, rng: BlockRange) -> dict[str, pl.DataFrame]:
        """The raw datasets of `rng` from one JSON-RPC batch, converted by the datasets' own converters.

        The collectors send one request per dataset (two for transactions), each a round trip and a thread;
        for a block or a few, those round trips are most of the time. Here full blocks give the headers and
        the transaction bodies, eth_getBlockReceipts the receipts and one eth_getLogs the logs: the same
        JSON the collectors read, hence the same rows.
        """
        numbers, full = rng.numbers(), "transactions" in self.raw
        calls = [("eth_getBlockByNumber", [hex(n), full]) for n in numbers]
        if full:
            calls += [("eth_getBlockReceipts", [hex(n)]) for n in numbers]
        if "logs" in self.raw:
            calls.append(("eth_getLogs", [{"fromBlock": hex(rng.first), "toBlock": hex(rng.last)}]))
        answers = self.client.batch(calls)
        blocks = answers[:len(numbers)]
        out = {"blocks": blocks_dataset.convert(_frame([_header(b) for b in blocks], blocks_dataset.HEADER))}
        if full:
            bodies = transactions_dataset.convert_bodies(_frame(blocks, transactions_dataset.BLOCK))
            receipts = _frame(answers[len(numbers):2 * len(numbers)], pl.List(transactions_dataset.RECEIPT))
            out["transactions"] = transactions_dataset.join(
                bodies, transactions_dataset.convert_receipts(receipts), rng)
        if "logs" in self.raw:
            out["logs"] = logs_dataset.convert(_frame(answers[-1:], pl.List(logs_dataset.LOG)))
        return out

    def _decode(self, raw: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
        """The hot tables' rows of the fetched blocks: raw ones as fetched, decoded ones built by the lake's
        decoders (only the tables the views read)."""
        ctx = DecodeContext(logs=raw.get("logs", pl.DataFrame()), transactions=raw.get("transactions", pl.DataFrame()),
                            blocks=raw["blocks"], metadata=self.metadata)
        out = {}
        for name in self.tables:
            frame = raw[name] if name in raw else as_lake(ctx.once(name, DECODED_TABLES[name].build), name)
            out[name] = self._own_pool(name, frame)
        return out

    @staticmethod
    def _check_chain(blocks: pl.DataFrame, first: int, last: int) -> None:
        """The fetched blocks (sorted) are first..last and each one's parent is the previous (no reorg mid-fetch)."""
        if blocks.get_column("block_number").to_list() != list(range(first, last + 1)):
            raise ConfigError(f"the node did not return blocks {first}..{last}")
        if blocks.height > 1 and (blocks["parent_hash"][1:] != blocks["block_hash"][:-1]).any():
            raise ConfigError(f"the node's chain changed while blocks {first}..{last} were fetched: call again")

    def _hash(self, number: int) -> str | None:
        row = self.hot["blocks"].filter(pl.col("block_number") == number)
        return row.get_column("block_hash")[0] if row.height else None

    def _fork(self) -> int:
        """The first block of the window the node no longer has (its hash differs), newest first."""
        numbers = self.hot["blocks"].sort("block_number", descending=True).get_column("block_number").to_list()
        answers = self.client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        fork = None
        for number, block in zip(numbers, answers):
            if block is not None and block.get("hash", "").lower() == self._hash(number):
                return number + 1 if fork is not None else self.head + 1
            fork = number
        raise ConfigError(f"a reorg deeper than the online window ({len(numbers)} blocks): start OnlineFeatures "
                          "again from the lake once it has caught up")

    def _drop_from(self, fork: int) -> None:
        """Forget every row of blocks >= `fork` (the ledger's carried balances lie before the window)."""
        self.hot = {name: frame.filter(pl.col("block_number") < fork) for name, frame in self.hot.items()}
        self.latest.drop_from(fork)
        self.head = fork - 1

    def _extend(self, new: dict[str, pl.DataFrame], last: int) -> None:
        """Append the new rows; cut the window back when `refresh` has not for OVERDUE blocks.

        A longer window is still right: every view is computed on its own span of it (`compute_latest`
        applies the window rules again), so the cut only bounds memory. Cutting costs tens of milliseconds
        (every hot table through its window rule), which is why it waits for `refresh` when it can.
        """
        for name in self.tables:
            self.hot[name] = append_rows(self.hot[name], new[name])
        self.head = last
        if self.head - self._cut_at >= OVERDUE:
            self._cut_window()

    def _cut_window(self) -> None:
        """The window back to `size` blocks ending at its head, by the window rules."""
        first = self.head - self.size + 1
        self.hot = {name: window(name, frame.lazy(), first, self.head).collect(engine=SMALL)
                    for name, frame in self.hot.items()}
        self._cut_at = self.head

    # -- computing -------------------------------------------------------------------------------------
    def _inputs(self, number: int) -> dict[str, pl.LazyFrame]:
        tables = {name: frame.lazy() for name, frame in self.hot.items()}
        needed = {r for name in self.spans for r in self.registry.views[name].reads}
        for name in sorted(needed & LAKE_READ):
            tables[name] = self._lake_table(name).lazy()
        return tables

    def _lake_table(self, name: str) -> pl.DataFrame:
        """A lake-read table (mempool, metadata), read again only when its files changed."""
        folder = self.lake_dir / name
        files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []
        key = tuple((str(p), p.stat().st_mtime_ns) for p in files)
        cached = self._lake_cache.get(name)
        if cached is None or cached[0] != key:
            cached = (key, scan_lake_table(self.lake_dir, name).collect())
            self._lake_cache[name] = cached
        return cached[1]

    def _columns(self, rows: dict[str, pl.DataFrame]) -> dict[str, list[str]]:
        """{view: the requested columns of its rows} (all its features when none were named)."""
        out = {}
        for name, columns in self.wanted.items():
            view = self.registry.views[name]
            have = [c for c in rows[name].columns if c not in view.keys]
            columns = have if columns is None else columns
            unknown = [c for c in columns if c not in have]
            if unknown:
                raise ConfigError(f"{view.where()} has no feature {', '.join(map(repr, unknown))} "
                                  f"(it has: {', '.join(have)})")
            out[name] = columns
        return out

    def _assemble(self, rows: dict[str, pl.DataFrame]) -> pl.DataFrame:
        """The requested columns of each view, as `view__column`, joined on the pool."""
        frame: pl.DataFrame | None = None
        for name, columns in self._columns(rows).items():
            view = self.registry.views[name]
            part = rows[name].select(pl.col(view.entity).alias("pool"),
                                     *[pl.col(c).alias(f"{name}__{c}") for c in columns])
            frame = part if frame is None else frame.join(part, on="pool", how="full", coalesce=True)
        return frame.sort("pool")

    def _pool_values(self, rows: dict[str, pl.DataFrame]) -> dict[str, float | None]:
        """`_assemble`'s row of our pool as {`view__column`: value} (None where a view has no row of it), read
        from each view's rows directly: a handful of values, no joins."""
        out: dict[str, float | None] = {}
        for name, columns in self._columns(rows).items():
            frame = rows[name]
            found = (frame.get_column(self.registry.views[name].entity) == self.pool).arg_true()
            values = frame.row(int(found[0]), named=True) if found.len() else {}
            out.update((f"{name}__{c}", values.get(c)) for c in columns)
        return out

def as_lake(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """`frame` with the columns and types of the lake's table `name`, as the lake gives it back (what
    `to_table` and `pl.from_arrow` do, without the round trip through Arrow: the converters and decoders
    already give the lake's types, so usually only the columns are picked)."""
    schema = _polars_schema(name)
    frame = frame[list(schema)]
    return frame if frame.schema == schema else frame.cast(schema)


@cache
def _polars_schema(name: str) -> pl.Schema:
    return pl.from_arrow(LAKE_SCHEMAS[name].empty_table()).schema


def _frame(results: list, dtype: pl.DataType) -> pl.DataFrame:
    """Parsed JSON-RPC results as the (`id`, `result`) frame the datasets' converters read."""
    return pl.DataFrame({"id": list(range(len(results))), "result": results},
                        schema={"id": pl.Int64, "result": dtype})


def _header(block: dict | None) -> dict | None:
    """A full block as its header (the `blocks` converter reads transaction hashes, not bodies)."""
    if block is None:
        return None
    return {**block, "transactions": [t["hash"] if isinstance(t, dict) else t for t in block["transactions"]]}
