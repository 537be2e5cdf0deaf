"""The lake's quality checks must fail on broken data, not only pass on good data."""

import polars as pl

from chainlake import quality


def blocks(numbers, counts=None):
    counts = counts or [1] * len(numbers)
    return pl.DataFrame({"block_number": numbers, "transaction_count": counts}, schema_overrides={
        "block_number": pl.Int64, "transaction_count": pl.Int64})


def txs(pairs):
    return pl.DataFrame({"block_number": [b for b, _ in pairs], "transaction_hash": [h for _, h in pairs],
                         "logs_count": [2] * len(pairs)}, schema_overrides={"block_number": pl.Int64})


def test_block_gaps_found():
    assert quality.no_block_gaps(blocks([10, 11, 12]), 10, 12).passed
    gap = quality.no_block_gaps(blocks([10, 12]), 10, 12)
    assert not gap.passed and gap.metadata["missing_blocks"] == [11]
    assert not quality.no_block_gaps(blocks([10, 11, 11, 12]), 10, 12).passed  # a duplicate is no gap, still bad


def test_duplicate_keys_found():
    frame = pl.DataFrame({"block_number": [1, 1, 2], "log_index": [0, 0, 0]})
    outcome = quality.unique_keys(frame, ["block_number", "log_index"])
    assert not outcome.passed and outcome.metadata["duplicates"] == 1
    assert quality.unique_keys(frame.unique(), ["block_number", "log_index"]).passed


def test_tx_count_mismatch_found():
    header = blocks([1, 2], counts=[1, 2])
    assert quality.tx_count_matches_blocks(header, txs([(1, "a"), (2, "b"), (2, "c")])).passed
    short = quality.tx_count_matches_blocks(header, txs([(1, "a"), (2, "b")]))
    assert not short.passed and short.metadata["blocks_differing"] == [2]
    empty_block = quality.tx_count_matches_blocks(blocks([1, 2], counts=[1, 1]), txs([(1, "a")]))
    assert not empty_block.passed


def test_logs_mismatch_found():
    transactions = txs([(1, "a"), (1, "b")])
    good = pl.DataFrame({"transaction_hash": ["a", "a", "b", "b"]})
    assert quality.logs_match_receipts(transactions, good).passed
    missing = quality.logs_match_receipts(transactions, good.head(3))
    assert not missing.passed and missing.metadata["txs_differing"] == ["b"]
    stray = quality.logs_match_receipts(transactions, pl.concat([good, pl.DataFrame({"transaction_hash": ["z"]})]))
    assert not stray.passed
