"""mempool_swaps: pending router swaps, decoded from the calldata of the `mempool` table.

One row per transaction seen pending whose calldata is a UniswapV2Router02 swap (`abi.ROUTER_SWAPS`: the
exact-in / exact-out, ETH-in / ETH-out and fee-on-transfer variants), whatever contract it was sent to
(forks share the ABI; `router` says where it went). Amounts are named by role, exact base-10 strings
plus `_f64` (`amount_in_raw`, `amount_out_min_raw` for exact-input functions; `amount_out_raw`,
`amount_in_max_raw` for exact-output ones; the others null). The ETH-in functions take their input from
the tx value: `amount_in_raw` (exact-in) or `amount_in_max_raw` (`swapETHForExactTokens`). `path` is the
token route, `token_in` / `token_out` its ends (WETH for the ETH side). The mempool columns (first
sighting, inclusion block, delay, status) are carried over.

Decoding is strict, as eth_abi's: head words are sliced in polars, each must be a valid encoding of its
type (a zero-padded address), and the dynamic `address[]` must sit at a 32-byte aligned offset inside
the calldata with a length of 2..MAX_PATH and zero-padded items; calldata that fails is skipped. The
head words and amounts are vectorized; the path alone is read per row in Python (offset, then length,
then items), which is fine at mempool size (thousands to a few hundred thousand rows per rebuild) and
only for rows whose selector already matched.

Not block-partitioned (the mempool table is not): `build_mempool_swaps` rebuilds
`LAKE/mempool_swaps/data.parquet` atomically from `LAKE/mempool/data.parquet`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from chainlake.decode.abi import ROUTER_SWAPS, WORD, RouterSwap, word_in_range
from chainlake.decode.schemas import MEMPOOL_SWAPS
from chainlake.ingest.convert import uint256_frame
from chainlake.ingest.lake import to_table, write_parquet_atomic

TABLE_NAME = "mempool_swaps"
MEMPOOL_FILE = Path("mempool") / "data.parquet"
MAX_PATH = 16
AMOUNTS = ("amount_in", "amount_out_min", "amount_out", "amount_in_max")
MEMPOOL_COLUMNS = ["gas_price", "max_priority_fee_per_gas", "first_seen_ms", "first_seen_head", "last_seen_head",
                   "included_block", "included_index", "delay_blocks", "delay_seconds", "status"]


def _word(i: int) -> pl.Expr:
    return pl.col("input").str.slice(10 + WORD * i, WORD)


def read_path(data: str, offset_word: str) -> list[str] | None:
    """The address[] at byte offset `offset_word` (hex) of the arguments in `data` (0x + selector + args);
    None when it is not a strict encoding."""
    args = data[10:]
    offset = int(offset_word, 16)
    if offset % 32:
        return None
    start = 2 * offset
    length_word = args[start:start + WORD]
    if len(length_word) != WORD:
        return None
    length = int(length_word, 16)
    if not 2 <= length <= MAX_PATH:
        return None
    items = [args[start + WORD * (k + 1):start + WORD * (k + 2)] for k in range(length)]
    if any(len(w) != WORD or w[:24] != "0" * 24 for w in items):
        return None
    return ["0x" + w[24:] for w in items]


def _decode_function(rows: pl.DataFrame, fn: RouterSwap) -> pl.DataFrame:
    n = len(fn.args)
    frame = rows.filter(
        (pl.col("input").str.len_bytes() >= 10 + WORD * n) & (pl.col("input").str.len_bytes() % 2 == 0)
        & pl.col("input").str.slice(2).str.contains(r"^[0-9a-f]*$"))
    frame = frame.with_columns(_word(i).alias(f"__w_{arg}") for i, arg in enumerate(fn.args))
    frame = frame.filter(word_in_range("__w_recipient", "address"))
    paths = [read_path(d, o) for d, o in zip(frame["input"].to_list(), frame["__w_path"].to_list())]
    frame = frame.with_columns(pl.Series("path", paths, dtype=pl.List(pl.String))).filter(pl.col("path").is_not_null())
    for amount in AMOUNTS:
        if amount in fn.args:
            frame = uint256_frame(frame, f"__w_{amount}", f"{amount}_raw")
        elif amount == fn.value_as:
            frame = frame.with_columns(pl.col("value").alias(f"{amount}_raw"),
                                       pl.col("value_f64").alias(f"{amount}_raw_f64"))
        else:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(f"{amount}_raw"),
                                       pl.lit(None, pl.Float64).alias(f"{amount}_raw_f64"))
    frame = uint256_frame(frame, "__w_deadline", "__deadline")
    return frame.with_columns(
        pl.lit(fn.name).alias("function"), pl.lit(fn.exact_in).alias("exact_in"),
        pl.col("to_address").alias("router"),
        (pl.lit("0x") + pl.col("__w_recipient").str.slice(24, 40)).alias("recipient"),
        pl.col("__deadline").cast(pl.Int64, strict=False).alias("deadline"),  # null beyond int64 (a "never" deadline)
        pl.col("path").list.first().alias("token_in"), pl.col("path").list.last().alias("token_out"),
    ).select(MEMPOOL_SWAPS.names)


def decode_mempool_swaps(mempool: pl.DataFrame) -> pl.DataFrame:
    """The router swaps among `mempool` rows (the `mempool` table's columns), decoded; MEMPOOL_SWAPS columns."""
    rows = mempool.filter(pl.col("input").is_not_null()).with_columns(
        pl.col("input").str.to_lowercase(), pl.col("input").str.slice(0, 10).str.to_lowercase().alias("__selector"))
    rows = rows.filter(pl.col("__selector").is_in(list(ROUTER_SWAPS)))
    parts = [_decode_function(rows.filter(pl.col("__selector") == sel), fn) for sel, fn in ROUTER_SWAPS.items()]
    out = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame(schema=pl.from_arrow(
        MEMPOOL_SWAPS.empty_table()).schema)
    return out.sort("first_seen_ms", "transaction_hash")


def build_mempool_swaps(lake_dir: str | Path) -> pa.Table:
    """Rebuild `LAKE/mempool_swaps/data.parquet` from `LAKE/mempool/data.parquet` (empty if there is none)."""
    lake = Path(lake_dir)
    source = lake / MEMPOOL_FILE
    if source.exists():
        table = to_table(decode_mempool_swaps(pl.read_parquet(source)), MEMPOOL_SWAPS)
    else:
        table = MEMPOOL_SWAPS.empty_table()
    write_parquet_atomic(lake / TABLE_NAME / "data.parquet", table)
    return table
