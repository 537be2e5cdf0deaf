"""Partition math and block-range parsing: properties (hypothesis) plus the cryo examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainlake.errors import ConfigError
from chainlake.ingest import (
    BlockRange, finalized_partition_keys, parse_block_range, partition_keys, partition_of, partition_range,
    partition_start, split_by_partition,
)

blocks = st.integers(min_value=0, max_value=10**11)
sizes = st.integers(min_value=1, max_value=100_000)


@given(blocks, sizes)
def test_every_block_lies_in_exactly_its_partition(block, size):
    key = partition_of(block, size)
    rng = partition_range(key, size)
    assert rng.first <= block <= rng.last
    assert rng.count == size and rng.first % size == 0
    # neighbours: the block before the partition and after it belong to other partitions
    if rng.first > 0:
        assert partition_of(rng.first - 1, size) != key
    assert partition_of(rng.last + 1, size) != key
    assert partition_start(block, size) == rng.first


@given(blocks, sizes)
def test_key_round_trips(block, size):
    key = partition_of(block, size)
    first, last = partition_range(key)  # a pair, as the Dagster assets unpack it
    assert partition_of(first, size) == key == partition_of(last, size)
    assert len(key) == 25 and key == f"{first:012d}-{last:012d}"


@given(st.integers(0, 10**7), st.integers(0, 5_000), st.integers(1, 2_000))
def test_split_tiles_the_range(first, length, size):
    rng = BlockRange(first, first + length)
    parts = split_by_partition(rng, size)
    covered = [b for _, sub in parts for b in sub.numbers()]
    assert covered == list(rng.numbers())  # every block once, in order, nothing outside
    for key, sub in parts:
        assert partition_range(key).intersect(rng) == sub
    assert [k for k, _ in parts] == partition_keys(rng, size)
    assert len(set(partition_keys(rng, size))) == len(parts)


@given(st.integers(0, 10**5), st.integers(0, 100), st.integers(20, 5_000))
def test_finalized_keys_are_complete_and_final(head, confirmations, size):
    keys = finalized_partition_keys(head, confirmations, size)
    final = head - confirmations
    for i, key in enumerate(keys):
        rng = partition_range(key, size)
        assert rng.first == i * size and rng.last <= final
    # the next partition is not complete yet
    assert (len(keys) + 1) * size - 1 > final


@pytest.mark.parametrize("key", ["", "1000-1999", "000000001000_000000001999", "x" * 25, None,
                                 "000000001999-000000001000"])
def test_bad_partition_keys(key):
    with pytest.raises(ConfigError):
        partition_range(key)


def test_key_of_wrong_size():
    with pytest.raises(ConfigError, match="size 500"):
        partition_range("000000001000-000000001999", 500)


# -- block ranges --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, latest, expected", [
    ("0:10", 100, (0, 9)),              # cryo 0.3.2 writes blocks 0..9 for 0:10
    ("5:6", 100, (5, 5)),
    ("100:latest", 120, (100, 120)),    # latest is inclusive
    ("100:", 120, (100, 120)),
    (":10", 100, (0, 9)),
    ("10:+5", 100, (10, 14)),
    ("7", 100, (7, 7)),
    ("latest", 42, (42, 42)),
    ("1_000:2_000", 5000, (1000, 1999)),
    ("1k:2K", 5000, (1000, 1999)),
    ("0.5k:1.5k", 5000, (500, 1499)),
    (" 3:4 ", 100, (3, 3)),
])
def test_cryo_examples(spec, latest, expected):
    assert tuple(parse_block_range(spec, latest)) == expected


@pytest.mark.parametrize("spec, match", [
    ("10:5", "greater than the start"), ("5:5", "greater than the start"), ("-5:10", "negative"),
    ("0:-1", "negative"), ("a:b", "cannot read"), ("1:2:3", "expected START:END"), ("", "empty"),
    ("0:200", "beyond the chain head"), ("150:", "beyond the chain head"), ("0.3:1", "whole block"),
    ("10:+0", "N >= 1"),
])
def test_bad_ranges(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_block_range(spec, latest=100)


def test_latest_needs_a_head():
    with pytest.raises(ConfigError, match="chain head"):
        parse_block_range("0:latest")
    assert tuple(parse_block_range("0:10")) == (0, 9)  # no head needed


@given(st.integers(0, 10**9), st.integers(1, 10**6))
def test_spec_round_trip(first, count):
    rng = BlockRange(first, first + count - 1)
    assert parse_block_range(rng.spec()) == rng
    assert parse_block_range(f"{first}:+{count}") == rng
    assert rng.count == count and rng.stop == rng.last + 1


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 2 * 10**6))
@settings(max_examples=200)
def test_parse_against_head(a, b, head):
    """A:B parses iff A < B and B - 1 <= head; then it is exactly blocks A..B-1."""
    spec = f"{a}:{b}"
    if a < b and b - 1 <= head:
        rng = parse_block_range(spec, head)
        assert (rng.first, rng.last) == (a, b - 1)
    else:
        with pytest.raises(ConfigError):
            parse_block_range(spec, head)


def test_block_range_validates():
    with pytest.raises(ConfigError):
        BlockRange(5, 4)
    with pytest.raises(ConfigError):
        BlockRange(-1, 4)
    with pytest.raises(ConfigError):
        BlockRange(True, 4)
    assert BlockRange(3, 3).count == 1
