"""Data-quality checks over one block range of the raw lake.

Plain functions over polars frames returning a `CheckOutcome`, so Dagster asset checks, the CLI and
tests share one implementation. Each check compares the lake with itself (dataset against dataset);
the row counts against the node are verified at ingest time and in the integration tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def no_block_gaps(blocks: pl.DataFrame, start: int, end: int) -> CheckOutcome:
    """Every block of [start, end] is present exactly once in `blocks`."""
    numbers = blocks.get_column("block_number")
    expected = end - start + 1
    present = numbers.filter((numbers >= start) & (numbers <= end)).n_unique()
    wanted = pl.int_range(start, end + 1, eager=True, dtype=pl.Int64)
    missing = wanted.filter(~wanted.is_in(numbers.implode()))
    return CheckOutcome(
        passed=present == expected and blocks.height == expected,
        description=f"{present} of {expected} blocks present, {blocks.height} rows",
        metadata={"missing_blocks": missing.head(20).to_list(), "missing_count": missing.len()},
    )


def unique_keys(frame: pl.DataFrame, keys: list[str]) -> CheckOutcome:
    """No two rows share the dataset's primary key."""
    duplicates = frame.height - frame.select(keys).unique().height
    return CheckOutcome(duplicates == 0, f"{duplicates} duplicate rows on ({', '.join(keys)})",
                        {"duplicates": duplicates, "rows": frame.height})


def tx_count_matches_blocks(blocks: pl.DataFrame, transactions: pl.DataFrame,
                            count_column: str = "transaction_count") -> CheckOutcome:
    """Per block, the transactions dataset holds as many rows as the block header says it has."""
    have = transactions.group_by("block_number").len("have")
    joined = blocks.select("block_number", count_column).join(have, on="block_number", how="left")
    bad = joined.filter(pl.col(count_column) != pl.col("have").fill_null(0))
    return CheckOutcome(bad.height == 0,
                        f"{transactions.height} txs vs {int(blocks[count_column].sum())} in block headers; "
                        f"{bad.height} blocks differ",
                        {"blocks_differing": bad.get_column("block_number").head(20).to_list()})


def logs_match_receipts(transactions: pl.DataFrame, logs: pl.DataFrame,
                        count_column: str = "logs_count") -> CheckOutcome:
    """Per transaction, the logs dataset holds as many rows as its receipt listed logs."""
    expected = int(transactions[count_column].sum() or 0)
    have = logs.group_by("transaction_hash").len("have")
    joined = (transactions.select("transaction_hash", count_column)
              .join(have, on="transaction_hash", how="full", coalesce=True))
    bad = joined.filter(pl.col(count_column).fill_null(0) != pl.col("have").fill_null(0))
    return CheckOutcome(bad.height == 0 and expected == logs.height,
                        f"{logs.height} logs vs {expected} in receipts; {bad.height} txs differ",
                        {"txs_differing": bad.get_column("transaction_hash").head(20).to_list()})
