"""The on-disk lake: layout, its `_lake.json` identity card, atomic merging writes, and reading back.

Layout::

    LAKE/_lake.json                                   {"chain_id": ..., "partition_size": ..., ...}
    LAKE/<dataset>/block_partition=<key>/data.parquet  one file per partition, e.g.
    LAKE/logs/block_partition=000000001000-000000001999/data.parquet

Hive-style directories, so DuckDB reads a dataset with
``read_parquet('LAKE/logs/**/*.parquet', hive_partitioning=true)`` (adds a VARCHAR `block_partition`).

Writes are atomic (a temp file in the same directory, fsynced, then `os.replace`, so readers see the old
file or the new one, never half, and a crash cannot leave a renamed but empty file) and idempotent:
writing blocks A..B into a partition replaces exactly the rows of A..B and keeps the rest, so re-running
or overlapping ranges never duplicate rows. Two writers of one partition (a CLI ingest and a Dagster run)
take turns: the read-merge-write holds an exclusive `flock` on the partition folder's ``.lock`` file, so
neither drops the other's rows. Temp files end in ``.tmp`` and the lock file is ``.lock``, which the
``*.parquet`` globs ignore.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from chainlake.errors import ConfigError, NodeError
from chainlake.ingest.ranges import (  # noqa: F401  (re-exported: the lake's partition math)
    DEFAULT_PARTITION_SIZE, BlockRange, format_key, partition_keys, partition_of, partition_range,
    split_by_partition,
)
from chainlake.ingest.schemas import SCHEMAS

LAKE_FILE = "_lake.json"
LAKE_FORMAT = 1
PARTITION_DIR = "block_partition"
DATA_FILE = "data.parquet"
LOCK_FILE = ".lock"  # per partition folder; not *.parquet, so no reader or catalog glob picks it up
# zstd level 1: 2x smaller than snappy/lz4 at about the same write speed (measured on trace partitions).
# Blob-like columns (calldata, return data, log data) skip dictionaries and statistics: nearly unique,
# so both cost CPU for nothing.
BLOB_COLUMNS = ("input", "output", "data", "extra_data")
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1}


@dataclass(frozen=True)
class LakeConfig:
    """What a lake holds: one chain, cut into partitions of one size. Fixed at the first ingest."""

    chain_id: int
    partition_size: int

    def to_json(self) -> dict:
        return {"format": LAKE_FORMAT, "chain_id": self.chain_id, "partition_size": self.partition_size}


def read_lake_config(lake_dir: str | Path) -> LakeConfig | None:
    """The lake's config, or None when `lake_dir` is not a lake yet."""
    path = Path(lake_dir) / LAKE_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return LakeConfig(chain_id=int(doc["chain_id"]), partition_size=int(doc["partition_size"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid chainlake lake file: {exc}") from None


def check_lake_config(lake_dir: str | Path, chain_id: int, partition_size: int | None) -> LakeConfig:
    """Config an ingest will use; one clear error if the lake holds another chain or partition size."""
    existing = read_lake_config(lake_dir)
    if existing is None:
        return LakeConfig(chain_id, partition_size or DEFAULT_PARTITION_SIZE)
    if existing.chain_id != chain_id:
        raise ConfigError(
            f"lake {lake_dir} holds chain {existing.chain_id} but the node serves chain {chain_id}: "
            "use another lake directory")
    if partition_size is not None and partition_size != existing.partition_size:
        raise ConfigError(
            f"lake {lake_dir} uses partitions of {existing.partition_size} blocks, not {partition_size}: "
            "use the lake's size or another lake directory")
    return existing


def write_lake_config(lake_dir: str | Path, config: LakeConfig) -> None:
    """Create the lake directory and its `_lake.json` (atomically) if it does not exist yet."""
    lake = Path(lake_dir)
    lake.mkdir(parents=True, exist_ok=True)
    if not (lake / LAKE_FILE).exists():
        _atomic_write_bytes(lake / LAKE_FILE, (json.dumps(config.to_json(), indent=2) + "\n").encode())


def lake_partition_size(lake_dir: str | Path) -> int:
    """The lake's partition size, or the default for a lake not created yet."""
    config = read_lake_config(lake_dir)
    return config.partition_size if config else DEFAULT_PARTITION_SIZE


def finalized_partition_keys(head: int, confirmations: int = 0,
                             partition_size: int = DEFAULT_PARTITION_SIZE) -> list[str]:
    """Keys of every partition whose blocks are all at least `confirmations` below `head`, in order."""
    final = head - max(0, confirmations)
    count = (final + 1) // partition_size if final >= 0 else 0
    return [format_key(i * partition_size, (i + 1) * partition_size - 1) for i in range(count)]


def dataset_dir(lake_dir: str | Path, dataset: str) -> Path:
    return Path(lake_dir) / dataset


def partition_path(lake_dir: str | Path, dataset: str, key: str) -> Path:
    """Path of one partition's file (whether or not it exists)."""
    partition_range(key)  # validates the key
    return dataset_dir(lake_dir, dataset) / f"{PARTITION_DIR}={key}" / DATA_FILE


def dataset_glob(lake_dir: str | Path, dataset: str) -> str:
    """Glob of a dataset's files, for DuckDB `read_parquet(..., hive_partitioning=true)` or polars."""
    return str(dataset_dir(lake_dir, dataset) / "**" / "*.parquet")


def partition_files(lake_dir: str | Path, dataset: str) -> dict[str, Path]:
    """Existing partition files of a dataset, by key, in block order."""
    root = dataset_dir(lake_dir, dataset)
    out = {}
    for path in sorted(root.glob(f"{PARTITION_DIR}=*/{DATA_FILE}")):
        out[path.parent.name.split("=", 1)[1]] = path
    return out


def read_dataset(lake_dir: str | Path, dataset: str, blocks: BlockRange | None = None) -> pa.Table:
    """A dataset as one Arrow table (rows in key order), optionally only the blocks of `blocks`."""
    schema = SCHEMAS.get(dataset)
    tables = []
    for key, path in partition_files(lake_dir, dataset).items():
        if blocks is not None and partition_range(key).intersect(blocks) is None:
            continue
        tables.append(pq.read_table(path, schema=schema))
    if not tables:
        if schema is None:
            raise ConfigError(f"no data for dataset {dataset!r} in {lake_dir}")
        return schema.empty_table()
    table = pa.concat_tables(tables)
    if blocks is not None:
        frame = pl.from_arrow(table).filter(pl.col("block_number").is_between(blocks.first, blocks.last))
        table = to_table(frame, table.schema)
    return table


def read_range(lake_dir: str | Path, dataset: str, first: int, last: int) -> pl.DataFrame:
    """Rows of blocks `first`..`last` (inclusive) of a dataset, as a polars DataFrame."""
    return read_frame(lake_dir, dataset, BlockRange(first, last))


def scan_dataset(lake_dir: str | Path, dataset: str) -> pl.LazyFrame:
    """A dataset as a polars LazyFrame over its files (no hive column)."""
    files = [str(p) for p in partition_files(lake_dir, dataset).values()]
    if not files:
        schema = SCHEMAS.get(dataset)
        if schema is None:
            raise ConfigError(f"no data for dataset {dataset!r} in {lake_dir}")
        return pl.from_arrow(schema.empty_table()).lazy()
    return pl.scan_parquet(files, hive_partitioning=False)


def read_frame(lake_dir: str | Path, dataset: str, blocks: BlockRange | None = None) -> pl.DataFrame:
    """A dataset as a polars DataFrame (see `read_dataset`)."""
    return pl.from_arrow(read_dataset(lake_dir, dataset, blocks))


def merge_partition(
    lake_dir: str | Path,
    dataset: str,
    key: str,
    rows: pl.DataFrame,
    replace: pl.Expr,
    keys: tuple[str, ...],
    schema: pa.Schema,
    normalize: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> int:
    """Write `rows` into a partition, replacing the existing rows matched by `replace`; returns row count.

    Rows outside the replaced blocks are kept, so sub-range and overlapping ingests merge cleanly. The
    result is sorted by `keys` and checked to have no duplicate key (an error, never written).
    """
    path = partition_path(lake_dir, dataset, key)
    with partition_lock(path.parent):
        return _merge_locked(path, dataset, key, rows, replace, keys, schema, normalize)


@contextmanager
def partition_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a partition folder (blocks while another process or thread holds it)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _merge_locked(path: Path, dataset: str, key: str, rows: pl.DataFrame, replace: pl.Expr,
                  keys: tuple[str, ...], schema: pa.Schema,
                  normalize: Callable[[pl.DataFrame], pl.DataFrame] | None) -> int:
    frame = rows.select(schema.names)
    if path.exists():
        old = pl.from_arrow(pq.read_table(path, schema=schema)).filter(~replace)
        if old.height:
            frame = pl.concat([old, frame], how="vertical_relaxed")
    if not strictly_sorted(frame, keys):
        frame = frame.sort(list(keys), maintain_order=True)
        if not strictly_sorted(frame, keys):
            raise NodeError(f"{dataset} partition {key}: duplicate rows for the key {', '.join(keys)}")
    if normalize is not None:
        frame = normalize(frame)
    # One contiguous chunk per column: the file's bytes then depend only on the rows, not on how batches
    # happened to arrive, so a re-run writes a byte-identical file.
    table = to_table(frame.rechunk(), schema)
    write_parquet_atomic(path, table)
    return table.num_rows


def strictly_sorted(frame: pl.DataFrame, keys: tuple[str, ...]) -> bool:
    """True when rows are in increasing key order with no duplicate key (vectorised, no sort)."""
    if frame.height < 2:
        return True
    later = pl.lit(False)
    for column in reversed(keys):  # (k1, k2, ...) < (k1', k2', ...) lexicographically
        now, nxt = pl.col(column), pl.col(column).shift(-1)
        later = (now < nxt) | ((now == nxt) & later)
    return bool(frame.select(later.head(frame.height - 1).all()).item())


def to_table(frame: pl.DataFrame, schema: pa.Schema) -> pa.Table:
    """A frame as an Arrow table with exactly `schema` (zero-copy when the types already match)."""
    table = frame.select(schema.names).to_arrow()
    return table if table.schema.equals(schema) else table.cast(schema)


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    """Write a Parquet file durably: a temp file in the same directory, fsync, `os.replace`, fsync the folder."""
    plain = [name for name in table.column_names if name not in BLOB_COLUMNS]
    _write_atomic(path, lambda handle: pq.write_table(table, handle, use_dictionary=plain, write_statistics=plain,
                                                       **PARQUET_OPTIONS))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    _write_atomic(path, lambda handle: handle.write(data))


def _write_atomic(path: Path, write: Callable) -> None:
    """`write(handle)` into a temp file, flushed to disk *before* the rename (otherwise a crash can leave
    the new name pointing at an empty file), then the rename itself made durable (best effort)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory: the data itself is already on disk
    finally:
        os.close(fd)
