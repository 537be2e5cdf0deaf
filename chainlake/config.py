"""Defaults shared by the CLI and the Dagster resources: where the lake is and which node to read.

Defaults run the embedded devnet: `chainlake devnet` (or the demo) records its URL and contract
addresses in `warehouse/devnet.json`; `ETH_RPC_URL` points everything at any other node instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from chainlake.errors import ConfigError

DEFAULT_WAREHOUSE = Path("warehouse")
DEFAULT_LAKE = DEFAULT_WAREHOUSE / "lake"
DEFAULT_CATALOG = DEFAULT_WAREHOUSE / "chainlake.duckdb"
DEFAULT_LAYOUT = DEFAULT_WAREHOUSE / "devnet.json"
# Requests in flight and JSON-RPC calls per batch request: what bench/ingest.py measured as best on
# anvil; each dataset may use smaller batches where the node prefers them.
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_BATCH_SIZE = 50


def resolve_rpc_url(rpc_url: str | None = None, layout_path: Path = DEFAULT_LAYOUT) -> str:
    """An explicit URL, then $ETH_RPC_URL, then the devnet that `chainlake devnet` recorded."""
    if rpc_url:
        return rpc_url
    if os.environ.get("ETH_RPC_URL"):
        return os.environ["ETH_RPC_URL"]
    if layout_path.exists():
        return json.loads(layout_path.read_text())["url"]
    raise ConfigError("no node given: pass --rpc-url, set ETH_RPC_URL, or start one with `chainlake devnet`")


def default_tracked(addresses: list[str], tokens: list[str], url: str,
                    layout_path: Path = DEFAULT_LAYOUT) -> tuple[list[str], list[str]]:
    """Addresses and tokens whose balances to record: the given ones, else on the devnet recorded in
    warehouse/devnet.json (and only when `url` is that devnet) its pools, agents and tokens."""
    if (addresses and tokens) or not layout_path.exists():
        return addresses, tokens
    layout = json.loads(layout_path.read_text())
    if layout.get("url") != url:
        return addresses, tokens
    pools = [pool["address"] for pool in layout["pools"].values()]
    return (addresses or pools + list(layout["agents"].values()),
            tokens or [token["address"] for token in layout["tokens"].values()])
