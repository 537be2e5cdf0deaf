"""Dagster resources: which node to read and where the lake is. Thin: the logic is in `chainlake`."""


from pathlib import Path

import dagster as dg

from chainlake.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CATALOG,
    DEFAULT_LAKE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_WAREHOUSE,
    default_tracked,
    resolve_rpc_url,
)
from chainlake.ingest import DEFAULT_PARTITION_SIZE, read_lake_config


class ChainNode(dg.ConfigurableResource):
    """A JSON-RPC node. Empty `rpc_url` means $ETH_RPC_URL, else the devnet in warehouse/devnet.json."""

    rpc_url: str = ""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    requests_per_second: float = 0.0  # 0: no limit
    batch_size: int = DEFAULT_BATCH_SIZE
    confirmations: int = 0  # blocks behind the head before a block counts as final

    def url(self) -> str:
        return resolve_rpc_url(self.rpc_url or None)

    def client_options(self) -> dict:
        return {"max_concurrency": self.max_concurrency, "batch_size": self.batch_size,
                "requests_per_second": self.requests_per_second or None}


class LakeStore(dg.ConfigurableResource):
    """The Parquet lake and its DuckDB catalog, plus the addresses whose balances are tracked."""

    lake_dir: str = str(DEFAULT_LAKE)
    catalog_path: str = str(DEFAULT_CATALOG)
    partition_size: int = DEFAULT_PARTITION_SIZE  # for a new lake; an existing lake keeps its own
    addresses: list[str] = []
    tokens: list[str] = []

    @property
    def lake(self) -> Path:
        return Path(self.lake_dir)

    @property
    def catalog(self) -> Path:
        return Path(self.catalog_path)

    def partition_size_in_use(self) -> int:
        config = read_lake_config(self.lake)
        return config.partition_size if config else self.partition_size

    def tracked(self, url: str) -> tuple[list[str], list[str]]:
        return default_tracked(list(self.addresses), list(self.tokens), url)


class AgentSettings(dg.ConfigurableResource):
    """The trading agent's settings, shared by the policy and backtest assets and the retraining sensor.

    Empty `pool`: the most liquid pool quoted in a stablecoin. Policies are versioned under `models_dir`.
    """

    pool: str = ""
    stride: int = 1
    latency_blocks: int = 1
    capital_share: float = 0.002
    walk_forward_folds: int = 3
    seed: int = 0
    models_dir: str = str(DEFAULT_WAREHOUSE / "models")
    min_new_blocks: int = 1000  # the retraining sensor waits for this many blocks past the last training data

    def config(self):
        from rl.pipeline import AgentConfig
        from rl.tabular import LearnConfig

        return AgentConfig(pool=self.pool or None, stride=self.stride, latency_blocks=self.latency_blocks,
                           capital_share=self.capital_share, walk_forward_folds=self.walk_forward_folds,
                           learn=LearnConfig(seed=self.seed))

    @property
    def models(self) -> Path:
        return Path(self.models_dir)
