"""What a dataset is: a schema, a key, the RPC methods it needs, and a `collect` over one block range.

Every dataset module under `chainlake.ingest.datasets` defines ``DATASET = Dataset(...)``; the package
discovers them, so adding a dataset is adding one file. The pipeline (`chainlake.ingest.pipeline`) does
everything else the same way for all of them: validation, node probing, partitioning, merging, writing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from chainlake.ingest.ranges import BlockRange
from chainlake.rpc import RpcClient


@dataclass
class Context:
    """What `collect` may use: the client, the methods chosen for this node, and dataset options."""

    client: RpcClient
    chain_id: int
    head: int
    methods: dict[str, str] = field(default_factory=dict)  # need -> method the node serves
    addresses: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """One raw dataset.

    `needs` maps a need (a short name used by `collect`) to alternative JSON-RPC methods in order of
    preference; the pipeline picks the first the node serves before writing anything, or raises
    MethodUnsupported naming the method and this dataset. `optional` needs are used when served.
    `keys` are the columns that identify a row (unique in the lake; rows are sorted by them).
    """

    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    needs: dict[str, tuple[str, ...]]
    collect: Callable[[Context, BlockRange], pl.DataFrame]
    description: str
    optional: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Rows of an existing partition that an ingest of `blocks` replaces (default: all rows of those blocks).
    replace: Callable[[Context, BlockRange], pl.Expr] | None = None
    # Canonical form of a merged partition (balances drops rows that no longer mark a change).
    normalize: Callable[[pl.DataFrame], pl.DataFrame] | None = None

    def replace_filter(self, ctx: Context, blocks: BlockRange) -> pl.Expr:
        if self.replace is not None:
            return self.replace(ctx, blocks)
        return pl.col("block_number").is_between(blocks.first, blocks.last)

    @property
    def methods(self) -> tuple[str, ...]:
        """Every JSON-RPC method this dataset may call, alternatives included (for docs and the CLI)."""
        out: list[str] = []
        for alternatives in (*self.needs.values(), *self.optional.values()):
            out += [m for m in alternatives if m not in out]
        return tuple(out)


def concat(frames: list[pl.DataFrame], dtype: pl.DataType) -> pl.DataFrame:
    """Concatenate batch frames (an empty `id`/`result` frame when there are none)."""
    if not frames:
        return pl.DataFrame(schema={"id": pl.Int64, "result": dtype})
    return pl.concat(frames, rechunk=False)


def with_block_numbers(frame: pl.DataFrame, blocks: BlockRange) -> pl.DataFrame:
    """For per-block calls (one per block of `blocks`, in order): block_number = first + call index."""
    return frame.with_columns((pl.col("id") + blocks.first).alias("block_number"))


def batch_size(ctx: Context, preferred: int) -> int:
    """Calls per HTTP request: the dataset's measured sweet spot, never above the user's batch size.

    Large batches cost anvil more CPU per row (measured: trace_block in batches of 10 blocks costs the node
    1.2 CPU-s per 2,000 devnet blocks, in batches of 50 1.6 CPU-s), small ones cost the client per request.
    """
    return max(1, min(preferred, ctx.client.batch_size))


def block_calls(method: str, blocks: BlockRange, *extra: Any) -> list[tuple[str, list[Any]]]:
    """One call per block: (method, [hex(block), *extra])."""
    return [(method, [hex(b), *extra]) for b in blocks.numbers()]


def in_parallel(*jobs: Callable[[], Any]) -> list[Any]:
    """Run a few independent fetches at once (each uses the client's pool for its own requests)."""
    if len(jobs) == 1:
        return [jobs[0]()]
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="chainlake-job") as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]
