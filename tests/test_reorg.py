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


def test_follow_catches_up_and_survives_a_reorg(tmp_path):
    """New blocks are picked up step by step; after a reorg the followed lake equals a fresh ingest."""
    from chainlake.follow import follow_step

    with Devnet(seed=12, txs_per_block=4) as dn:
        dn.run(30)
        lake = tmp_path / "lake"
        with RpcClient(dn.url) as client:
            first = follow_step(client, dn.url, lake, confirmations=4, partition_size=50)
            assert first.ingested == (0, first.head) and "mid_price" in first.features
            assert follow_step(client, dn.url, lake, confirmations=4, features=False).ingested is None
            dn.run(5)
            more = follow_step(client, dn.url, lake, confirmations=4, features=False)
            assert more.ingested == (first.head + 1, more.head)
            client.call("anvil_reorg", [3, []])  # the last 3 blocks replaced by empty ones
            for _ in range(2):
                client.call("evm_mine")
            after = follow_step(client, dn.url, lake, confirmations=4)
            assert after.fork == more.head - 2 and after.rolled_back > 0
            assert after.ingested == (after.fork, after.head) and after.late_fork is None
        fresh = tmp_path / "fresh"
        fill(dn.url, fresh, after.head + 1)
        for name in TABLES:
            assert_frame_equal(read_frame(lake, name), read_frame(fresh, name), check_exact=True)


def test_cli_follow(chain, tmp_path):
    from typer.testing import CliRunner

    from chainlake.cli import app

    lake = tmp_path / "lake"
    out = CliRunner().invoke(app, ["follow", "--rpc-url", chain.url, "--steps", "2", "--interval", "0",
                                   "--lake", str(lake), "--no-features"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert "ingested 0.." in lines[0] and "up to date" in lines[1]
    bad = CliRunner().invoke(app, ["follow", "--rpc-url", "http://127.0.0.1:9", "--steps", "1", "--lake", str(lake)])
    assert bad.exit_code == 2 and bad.output.startswith("error:")


def test_follow_polls_the_mempool_between_steps(tmp_path):
    """Transactions waiting in the txpool while the follower waits are recorded and land in the mempool table."""
    from chainlake.devnet import Anvil
    from chainlake.follow import follow

    with Anvil() as node, RpcClient(node.url) as client:  # manual mining: sent transactions stay pending
        for _ in range(3):
            client.call("evm_mine")
        sender = client.call("eth_accounts")[0]
        hashes = [client.call("eth_sendTransaction", [{"from": sender, "to": sender, "value": hex(i + 1),
                                                       "nonce": hex(i)}]).lower() for i in range(2)]
        lake = tmp_path / "lake"
        follow(node.url, lake, confirmations=2, interval=0.2, steps=2, mempool_interval=0.05, features=False)
    mempool = pl.read_parquet(lake / "mempool" / "data.parquet")
    seen = mempool.filter(pl.col("transaction_hash").is_in(hashes))
    assert sorted(seen.get_column("transaction_hash")) == sorted(hashes)
    assert set(seen.get_column("status")) == {"pending"} and set(seen.get_column("first_seen_head")) == {3}
    assert seen.get_column("sightings").min() >= 2  # polled repeatedly while the follower waited


def test_dagster_follow_sensor_and_asset(tmp_path):
    """The sensor asks for a run while the head is ahead or changed; the asset catches the lake up."""
    import dagster as dg

    from chainlake.follow import lake_head
    from dagster_project.definitions import defs
    from dagster_project.resources import ChainNode, LakeStore
    from dagster_project.sensors import head_follow_sensor

    with Devnet(seed=14, txs_per_block=3) as dn:
        dn.run(8)
        resources = {"chain": ChainNode(rpc_url=dn.url),
                     "lake": LakeStore(lake_dir=str(tmp_path / "lake"), catalog_path=str(tmp_path / "c.duckdb"),
                                       partition_size=50)}
        context = dg.build_sensor_context(resources=resources)
        assert isinstance(head_follow_sensor(context), dg.RunRequest)  # empty lake
        result = defs.resolve_job_def("follow_job").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            run_config={"resources": {"chain": {"config": {"rpc_url": dn.url}},
                                      "lake": {"config": {"lake_dir": str(tmp_path / "lake"),
                                                          "catalog_path": str(tmp_path / "c.duckdb"),
                                                          "partition_size": 50}}},
                        "ops": {"chain_head": {"config": {"confirmations": 4, "features": False}}}})
        assert result.success
        with RpcClient(dn.url) as client:
            assert lake_head(tmp_path / "lake") == client.block_number()
            context = dg.build_sensor_context(resources=resources, cursor=context.cursor)
            assert isinstance(head_follow_sensor(context), dg.SkipReason)  # caught up
            client.call("anvil_reorg", [2, []])  # same height, new hash at the head
        context = dg.build_sensor_context(resources=resources, cursor=context.cursor)
        assert isinstance(head_follow_sensor(context), dg.RunRequest)
