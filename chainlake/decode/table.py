"""What a decoded table is (schema, key, raw tables it reads, a `build`) and what `build` gets.

Every table module under `chainlake.decode` defines ``TABLE = DecodedTable(...)``; the pipeline
(`chainlake.decode.pipeline`) reads the raw rows of one partition's blocks once, hands them to each
table's `build` through a `DecodeContext`, and writes the result with the lake's merging writer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from chainlake.decode.metadata import Metadata


@dataclass
class DecodeContext:
    """The raw rows of one block range (logs, transactions, blocks) and the metadata cache.

    Decoders build their tables as one lazy query, collected once, after decoding the events (whose
    metadata must be looked up first): on one block, each eager step would cost a query (~0.1 ms) for a
    few rows of work, and the online path decodes every new block. Hence the lazy frames here. Their left
    joins say `maintain_order="left"`: an eager join keeps the left frame's row order, a lazy plan need not.
    """

    logs: pl.DataFrame
    transactions: pl.DataFrame
    blocks: pl.DataFrame
    metadata: Metadata
    built: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    def once(self, name: str, build: Callable[["DecodeContext"], pl.DataFrame]) -> pl.DataFrame:
        """A table of this range built once: a table derived from another (mev_sandwiches from dex_swaps)
        reuses the frame the pipeline already built for the same partition instead of decoding again."""
        if name not in self.built:
            self.built[name] = build(self)
        return self.built[name]

    def block_times(self) -> pl.LazyFrame:
        """block_number, block_time (UTC timestamp) of the range's blocks."""
        return self.blocks.lazy().select(
            "block_number",
            pl.from_epoch("timestamp", time_unit="s").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            .alias("block_time"))

    def with_block_time(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return frame.join(self.block_times(), on="block_number", how="left", maintain_order="left")

    def tx_columns(self) -> pl.LazyFrame:
        """Per transaction (block_number, transaction_index): sender, recipient and gas prices."""
        return self.transactions.lazy().select(
            "block_number", "transaction_index", pl.col("from_address").alias("tx_from"),
            pl.col("to_address").alias("tx_to"), "gas_price", "effective_gas_price")


@dataclass(frozen=True)
class DecodedTable:
    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    reads: tuple[str, ...]  # raw datasets it reads (Dagster lineage, and checked present before decoding)
    build: Callable[[DecodeContext], pl.DataFrame]
    description: str


def adjusted(raw_f64: str, decimals: str) -> pl.Expr:
    """raw / 10^decimals as float64 (null when decimals are unknown)."""
    return pl.col(raw_f64) / pl.lit(10.0).pow(pl.col(decimals).cast(pl.Float64))


def pool_protocols(*frames_and_protocols: tuple[pl.DataFrame, str]) -> dict[str, str]:
    """{pool address: protocol} of the pools that emitted the given decoded events."""
    out: dict[str, str] = {}
    for frame, protocol in frames_and_protocols:
        for address in frame.get_column("address").unique().to_list():
            out.setdefault(address, protocol)
    return out
