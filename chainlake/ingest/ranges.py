"""Block ranges and the lake's fixed-size block partitions.

Range syntax (the same as cryo's ``--blocks``, checked against cryo 0.3.2 on anvil: ``0:10`` gives blocks 0..9):

| spec         | blocks                                  |
|--------------|-----------------------------------------|
| ``A:B``      | A .. B-1 (the end is exclusive)         |
| ``A:latest`` | A .. the chain head (inclusive)         |
| ``A:``       | same as ``A:latest``                    |
| ``:B``       | 0 .. B-1                                |
| ``A:+N``     | N blocks from A: A .. A+N-1             |
| ``A``        | the single block A (``latest``: head)   |

Numbers may use ``_`` separators and a K/M/B suffix (``15.5M`` = 15,500,000). Negative numbers are refused
(cryo reads ``-N:B`` as "N blocks before B"; here a minus is far more often a typo than a wish).

Internally a range is a `BlockRange(first, last)` with *both ends inclusive*, like the partition keys:
a partition key ``000000001000-000000001999`` names blocks 1000..1999. Partitions are aligned to multiples
of the lake's partition size, so each block lies in exactly one partition and a key never changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from chainlake.errors import ConfigError

DEFAULT_PARTITION_SIZE = 1_000
KEY_DIGITS = 12
_KEY = re.compile(rf"^(\d{{{KEY_DIGITS}}})-(\d{{{KEY_DIGITS}}})$")
_NUMBER = re.compile(r"^(\d+(?:\.\d+)?)([kmb]?)$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
MAX_BLOCK = 10**KEY_DIGITS - 1


class _Pair(NamedTuple):
    first: int
    last: int


class BlockRange(_Pair):
    """Blocks `first` .. `last`, both inclusive. A tuple: `first, last = rng` unpacks it.

    `len()` is 2 like any pair; the number of blocks is `count`, the block numbers `numbers()`.
    """

    __slots__ = ()

    def __new__(cls, first: int, last: int) -> "BlockRange":
        if isinstance(first, bool) or isinstance(last, bool) or not (isinstance(first, int) and isinstance(last, int)):
            raise ConfigError(f"block range bounds must be integers, got {first!r}, {last!r}")
        if first < 0 or last < 0:
            raise ConfigError(f"negative block numbers are not allowed: {first}..{last}")
        if last < first:
            raise ConfigError(f"empty block range: last block {last} is before first block {first}")
        if last > MAX_BLOCK:
            raise ConfigError(f"block {last} is beyond the largest supported block {MAX_BLOCK}")
        return super().__new__(cls, first, last)

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def stop(self) -> int:
        """One past the last block (the exclusive end used by the `A:B` syntax)."""
        return self.last + 1

    def numbers(self) -> range:
        return range(self.first, self.last + 1)

    def holds(self, block: int) -> bool:
        return self.first <= block <= self.last

    def spec(self) -> str:
        """The `A:B` spelling of this range (exclusive end), accepted back by `parse_block_range`."""
        return f"{self.first}:{self.stop}"

    def intersect(self, other: "BlockRange") -> "BlockRange | None":
        first, last = max(self.first, other.first), min(self.last, other.last)
        return BlockRange(first, last) if first <= last else None


def _parse_number(token: str, what: str, spec: str, latest: Callable[[], int]) -> int:
    token = token.strip().replace("_", "")
    if token.lower() == "latest":
        return latest()
    if token.startswith("-"):
        raise ConfigError(f"bad block range {spec!r}: negative block numbers are not allowed")
    match = _NUMBER.match(token)
    if not match:
        raise ConfigError(f"bad block range {spec!r}: cannot read {what} {token!r} as a block number")
    digits, suffix = match.groups()
    scale = _SUFFIX[suffix.lower()]
    if "." in digits:
        whole, frac = digits.split(".")
        value = int(whole) * scale + (int(frac) * scale) // 10 ** len(frac)
        if (int(frac) * scale) % 10 ** len(frac):
            raise ConfigError(f"bad block range {spec!r}: {token!r} is not a whole block number")
        return value
    return int(digits) * scale


def parse_block_range(spec: str, latest: int | Callable[[], int] | None = None) -> BlockRange:
    """Parse a cryo-style block range (see the module doc) into an inclusive `BlockRange`.

    `latest` is the chain head (or a function returning it); it resolves `latest` / open ends and bounds
    the range: asking for blocks beyond the head is an error, not a silently shorter range.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("bad block range: empty (expected START:END, e.g. 0:1000)")
    spec = spec.strip()

    def head() -> int:
        if latest is None:
            raise ConfigError(f"block range {spec!r} needs the chain head (latest), which is unknown here")
        return latest() if callable(latest) else latest

    parts = spec.split(":")
    if len(parts) == 1:
        first = _parse_number(parts[0], "block", spec, head)
        rng = BlockRange(first, first)
    elif len(parts) == 2:
        rng = _parse_pair(spec, parts[0], parts[1], head)
    else:
        raise ConfigError(f"bad block range {spec!r}: expected START:END, e.g. 0:1000")
    if latest is not None and rng.last > head():
        raise ConfigError(f"block range {spec!r} goes beyond the chain head {head()} (the end is exclusive)")
    return rng


def _parse_pair(spec: str, start: str, end: str, head: Callable[[], int]) -> BlockRange:
    first = _parse_number(start, "start", spec, head) if start.strip() else 0
    end = end.strip()
    if not end or end.lower() == "latest":
        last = head()
    elif end.startswith("+"):
        count = _parse_number(end[1:], "count", spec, head)
        if count < 1:
            raise ConfigError(f"bad block range {spec!r}: +N needs N >= 1")
        last = first + count - 1
    else:
        stop = _parse_number(end, "end", spec, head)
        if stop <= first:
            raise ConfigError(f"bad block range {spec!r}: the end must be greater than the start (it is exclusive)")
        last = stop - 1
    if last < first:
        raise ConfigError(f"bad block range {spec!r}: the start is beyond the chain head {last}")
    return BlockRange(first, last)


# -- partitions ---------------------------------------------------------------------------------------------
def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"partition size must be a positive integer, got {size!r}")
    return size


def partition_start(block: int, size: int = DEFAULT_PARTITION_SIZE) -> int:
    """First block of the partition holding `block`."""
    if block < 0:
        raise ConfigError(f"negative block number {block}")
    return block - block % _check_size(size)


def format_key(first: int, last: int) -> str:
    return f"{first:0{KEY_DIGITS}d}-{last:0{KEY_DIGITS}d}"


def partition_of(block: int, size: int = DEFAULT_PARTITION_SIZE) -> str:
    """Key of the partition holding `block`, e.g. partition_of(1234) == '000000001000-000000001999'."""
    start = partition_start(block, size)
    return format_key(start, start + size - 1)


def partition_range(key: str, size: int | None = None) -> BlockRange:
    """Blocks of a partition key; with `size`, also check the key is a partition of that size."""
    match = _KEY.match(key) if isinstance(key, str) else None
    if not match:
        raise ConfigError(f"bad partition key {key!r}: expected like {format_key(1000, 1999)!r}")
    rng = BlockRange(int(match.group(1)), int(match.group(2)))
    if size is not None and (rng.first % _check_size(size) or rng.count != size):
        raise ConfigError(f"partition key {key!r} is not a partition of size {size}")
    return rng


def partition_keys(blocks: BlockRange, size: int = DEFAULT_PARTITION_SIZE) -> list[str]:
    """Keys of every partition that `blocks` touches, in block order."""
    return [key for key, _ in split_by_partition(blocks, size)]


def split_by_partition(blocks: BlockRange, size: int = DEFAULT_PARTITION_SIZE) -> list[tuple[str, BlockRange]]:
    """(partition key, the part of `blocks` inside it) for each partition `blocks` touches."""
    _check_size(size)
    out = []
    start = partition_start(blocks.first, size)
    while start <= blocks.last:
        part = BlockRange(start, start + size - 1)
        out.append((format_key(part.first, part.last), part.intersect(blocks)))
        start += size
    return out
