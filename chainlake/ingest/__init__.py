"""Raw ingestion into the Parquet lake: cryo-like, one module per dataset over one collect pipeline.

Public API (used by the CLI and the Dagster assets)::

    ingest(rpc_url, blocks, datasets, lake_dir, *, addresses=(), tokens=(), progress=False, ...) -> IngestReport
    DATASETS                      name -> Dataset (schema, keys, RPC methods, description)
    parse_block_range(spec, latest=None) -> BlockRange      cryo syntax: "A:B" is A..B-1
    partition_of(block, size) / partition_range(key) / partition_keys(range, size) / split_by_partition
    partition_path / dataset_glob / read_dataset (Arrow) / read_frame / read_range (polars) / scan_dataset

See `chainlake.ingest.schemas` for the columns and conventions, `chainlake.ingest.ranges` for ranges and
partitions, `chainlake.ingest.lake` for the layout and write guarantees.
"""

from chainlake.ingest.dataset import Context, Dataset
from chainlake.ingest.datasets import DATASETS
from chainlake.ingest.lake import (
    LakeConfig, dataset_glob, finalized_partition_keys, lake_partition_size, partition_files, partition_path,
    read_dataset, read_frame, read_lake_config, read_range, scan_dataset,
)
from chainlake.ingest.pipeline import IngestReport, ingest
from chainlake.ingest.ranges import (
    DEFAULT_PARTITION_SIZE, BlockRange, parse_block_range, partition_keys, partition_of, partition_range,
    partition_start, split_by_partition,
)
from chainlake.ingest.schemas import NATIVE_TOKEN, SCHEMAS

__all__ = [
    "BlockRange", "Context", "DATASETS", "DEFAULT_PARTITION_SIZE", "Dataset", "IngestReport", "LakeConfig",
    "NATIVE_TOKEN", "SCHEMAS", "dataset_glob", "finalized_partition_keys", "ingest", "lake_partition_size",
    "parse_block_range", "partition_files", "partition_keys", "partition_of", "partition_path",
    "partition_range", "partition_start", "read_dataset", "read_frame", "read_lake_config", "read_range",
    "scan_dataset", "split_by_partition",
]
