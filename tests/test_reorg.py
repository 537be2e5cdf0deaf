"""Reorgs on a real anvil (`anvil_reorg`): find the fork, roll the lake back, re-ingest; the lake then equals
a fresh ingest of the final chain, with no orphan row. A devnet of its own, since reorgs rewrite history."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chainlake.decode import decode
from chainlake.devnet import Devnet
from chainlake.errors import NodeError
from chainlake.features import build_features, load_registry, state_path
from chainlake.ingest import ingest
from chainlake.ingest.lake import read_frame
from chainlake.ingest.mempool import build_mempool
from chainlake.ingest.reorg import find_fork, rollback
from chainlake.rpc import RpcClient

RAW = ["blocks", "transactions", "logs"]
TABLES = [*RAW, "erc20_transfers", "dex_swaps", "pool_reserves"]


@pytest.fixture(scope="module")
def chain():
    with Devnet(seed=11, txs_per_block=4) as dn:
        dn.run(80)
        yield dn


def fill(url: str, lake, stop: int) -> None:
    ingest(url, f"0:{stop}", RAW, lake, partition_size=50)
    decode(lake, f"0:{stop}", ["erc20_transfers", "dex_swaps", "pool_reserves"], rpc_url=url)


@pytest.mark.parametrize("depth", [1, 5, 64])
def test_reorg_rollback_and_reingest_equals_a_fresh_ingest(chain, tmp_path, depth):
    with RpcClient(chain.url) as client:
        head = client.block_number()
        lake = tmp_path / "lake"
        fill(chain.url, lake, head + 1)
        build_mempool(lake)
        build_features(lake, ["mid_price"])
        assert find_fork(client, lake) is None
        client.call("anvil_reorg", [depth, []])  # the last `depth` blocks replaced (their txs dropped)
        fork = find_fork(client, lake)
        assert fork == head - depth + 1
        if depth > 1:  # comparing fewer blocks than were replaced cannot find the fork: refuse, don't guess
            with pytest.raises(NodeError, match="deeper than"):
                find_fork(client, lake, depth=depth - 1)
        report = rollback(lake, fork)
        assert report.removed["blocks"] == depth and report.removed["feature_mid_price"] > 0
        for name in (*TABLES, "feature_mid_price"):
            assert read_or_feature(lake, name).filter(pl.col("block_number") >= fork).height == 0  # no orphans
        fill(chain.url, lake, head + 1)
        assert find_fork(client, lake) is None
        fresh = tmp_path / "fresh"
        fill(chain.url, fresh, head + 1)
        for name in TABLES:
            assert_frame_equal(read_frame(lake, name), read_frame(fresh, name), check_exact=True)


def read_or_feature(lake, name: str) -> pl.DataFrame:
    if name.startswith("feature_"):
        return pl.read_parquet(state_path(lake, load_registry().get(name)))
    return read_frame(lake, name)
