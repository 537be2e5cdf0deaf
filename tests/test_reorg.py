"""Reorgs on a real anvil (`anvil_reorg`): find the fork, roll the lake back, re-ingest; the lake then equals
a fresh ingest of the final chain, with no orphan row, in every raw dataset (balances included: a state
table whose anchors are re-read at the fork), every decoded table and the features. A devnet of its own,
since reorgs rewrite history."""

from __future__ import annotations

import json
import time

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
from chainlake.ingest.reorg import find_fork, read_follow_state, rollback
from chainlake.rpc import RpcClient

RAW = ["blocks", "transactions", "logs", "traces", "balances"]
TABLES = [*RAW, "erc20_transfers", "dex_swaps", "pool_reserves"]


@pytest.fixture(scope="module")
def chain():
    with Devnet(seed=11, txs_per_block=4) as dn:
        dn.run(80)
        yield dn


def tracked(dn: Devnet) -> dict:
    """What `chainlake ingest` tracks by default on a devnet: its pools and agents, in its tokens."""
    layout = dn.layout
    return {"addresses": [p.address for p in layout.pools.values()] + list(layout.agents.values()),
            "tokens": [t.address for t in layout.tokens.values()]}


def fill(dn: Devnet, lake, stop: int, start: int = 0) -> None:
    ingest(dn.url, f"{start}:{stop}", RAW, lake, partition_size=50, **tracked(dn))
    decode(lake, f"{start}:{stop}", ["erc20_transfers", "dex_swaps", "pool_reserves"], rpc_url=dn.url)


def assert_same_lake(lake, fresh) -> None:
    for name in TABLES:
        assert_frame_equal(read_frame(lake, name), read_frame(fresh, name), check_exact=True)


@pytest.mark.parametrize("depth", [1, 5, 64])
def test_reorg_rollback_and_reingest_equals_a_fresh_ingest(chain, tmp_path, depth):
    """Rolled back to the fork and re-ingested *from the fork only*, the lake equals a fresh ingest."""
    with RpcClient(chain.url) as client:
        head = client.block_number()
        lake = tmp_path / "lake"
        fill(chain, lake, head + 1)
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
        assert report.removed["traces"] > 0 and report.removed["balances"] > 0  # orphaned txs moved balances
        for name in (*TABLES, "feature_mid_price"):
            assert read_or_feature(lake, name).filter(pl.col("block_number") >= fork).height == 0  # no orphans
        fill(chain, lake, head + 1, start=fork)
        assert find_fork(client, lake) is None
        fresh = tmp_path / "fresh"
        fill(chain, fresh, head + 1)
        assert_same_lake(lake, fresh)


def read_or_feature(lake, name: str) -> pl.DataFrame:
    if name.startswith("feature_"):
        return pl.read_parquet(state_path(lake, load_registry().get(name)))
    return read_frame(lake, name)


def test_follow_catches_up_resumes_and_survives_a_reorg(tmp_path, monkeypatch):
    """New blocks are picked up step by step (every raw dataset); a step that fails half-way is redone from
    the recorded head; after a reorg the followed lake equals a fresh ingest; a reorg below the final
    watermark stops with one error and leaves the lake as it was."""
    from chainlake import follow as following
    from chainlake.follow import follow_step
    from chainlake.ingest.reorg import FollowState

    def blocks_then_fail(url, blocks, names, lake_dir, **kwargs):  # the node drops out after `blocks`
        ingest(url, blocks, ["blocks"], lake_dir, **kwargs)
        raise NodeError("the node went away")

    with Devnet(seed=12, txs_per_block=4) as dn:
        dn.run(30)
        lake, options = tmp_path / "lake", {"confirmations": 4, **tracked(dn)}
        with RpcClient(dn.url) as client:
            first = follow_step(client, dn.url, lake, partition_size=50, **options)
            assert first.ingested == (0, first.head) and "mid_price" in first.features
            assert read_follow_state(lake) == FollowState(first.head, first.head - 4, 4)
            assert follow_step(client, dn.url, lake, features=False, **options).ingested is None
            dn.run(5)
            with monkeypatch.context() as patch:
                patch.setattr(following, "ingest", blocks_then_fail)
                with pytest.raises(NodeError, match="went away"):
                    follow_step(client, dn.url, lake, features=False, **options)
            assert read_follow_state(lake).head == first.head  # not moved by the failed step
            more = follow_step(client, dn.url, lake, features=False, **options)
            assert more.ingested == (first.head + 1, more.head)  # redone, though `blocks` already had them
            client.call("anvil_reorg", [3, []])  # the last 3 blocks replaced by empty ones
            for _ in range(2):
                client.call("evm_mine")
            after = follow_step(client, dn.url, lake, **options)
            assert after.fork == more.head - 2 and after.rolled_back > 0
            assert after.ingested == (after.fork, after.head) and after.late_fork is None
            assert after.finalized == after.head - 4
        fresh = tmp_path / "fresh"
        fill(dn, fresh, after.head + 1)
        assert_same_lake(lake, fresh)
        with RpcClient(dn.url) as client:
            state, blocks = read_follow_state(lake), read_frame(lake, "blocks")
            client.call("anvil_reorg", [6, []])  # deeper than the 4 confirmations
            with pytest.raises(NodeError, match=f"reaches final block {after.head - 4}"):
                follow_step(client, dn.url, lake, features=False, **options)
        assert read_follow_state(lake) == state
        assert_frame_equal(read_frame(lake, "blocks"), blocks)


def test_cli_follow(chain, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from chainlake.cli import app

    monkeypatch.chdir(tmp_path)  # no warehouse/devnet.json here: nothing tracked by default
    lake = tmp_path / "lake"
    pool, token = tracked(chain)["addresses"][0], tracked(chain)["tokens"][0]
    out = CliRunner().invoke(app, ["follow", "--rpc-url", chain.url, "--steps", "2", "--interval", "0",
                                   "--lake", str(lake), "--no-features", "--datasets",
                                   "blocks,transactions,logs,balances", "--addresses", pool, "--tokens", token])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert "ingested 0.." in lines[0] and "up to date" in lines[1] and "final through" in lines[1]
    assert read_frame(lake, "balances").height > 0 and json.loads((lake / "_follow.json").read_text())["head"] > 0
    for args, message in [(["--rpc-url", "http://127.0.0.1:9"], "error:"),
                          (["--rpc-url", chain.url], "needs addresses to track"),
                          (["--rpc-url", chain.url, "--datasets", "transactions"], "needs the dataset 'blocks'"),
                          (["--rpc-url", chain.url, "--datasets", "blocks,nope"], "unknown dataset 'nope'")]:
        bad = CliRunner().invoke(app, ["follow", "--steps", "1", "--lake", str(tmp_path / "bad"), *args])
        assert bad.exit_code == 2 and bad.output.startswith("error:") and message in bad.output, bad.output
    assert not (tmp_path / "bad").exists()


def test_follow_polls_the_mempool_during_and_between_steps(tmp_path, monkeypatch):
    """Transactions waiting in the txpool are recorded while the follower works (a slow step here) and
    waits, and land in the mempool table."""
    from chainlake import follow as following
    from chainlake.devnet import Anvil

    def slow_step(*args, **kwargs):  # a long catch-up: the poller's thread keeps polling meanwhile
        time.sleep(0.3)
        return real_step(*args, **kwargs)

    real_step = following.follow_step
    monkeypatch.setattr(following, "follow_step", slow_step)
    with Anvil() as node, RpcClient(node.url) as client:  # manual mining: sent transactions stay pending
        for _ in range(3):
            client.call("evm_mine")
        sender = client.call("eth_accounts")[0]
        hashes = [client.call("eth_sendTransaction", [{"from": sender, "to": sender, "value": hex(i + 1),
                                                       "nonce": hex(i)}]).lower() for i in range(2)]
        lake = tmp_path / "lake"
        following.follow(node.url, lake, confirmations=2, interval=0, steps=2, mempool_interval=0.05,
                         features=False, datasets=["blocks", "transactions", "logs", "traces"])  # no tokens
    mempool = pl.read_parquet(lake / "mempool" / "data.parquet")
    seen = mempool.filter(pl.col("transaction_hash").is_in(hashes))
    assert sorted(seen.get_column("transaction_hash")) == sorted(hashes)
    assert set(seen.get_column("status")) == {"pending"} and set(seen.get_column("first_seen_head")) == {3}
    windows = pl.read_parquet(lake / "mempool_observations" / "*.parquet")
    # no wait between steps (interval 0): only polls during the slow steps can add up to that many sightings
    assert windows.filter(pl.col("transaction_hash") == hashes[0]).get_column("sightings").max() >= 4


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
                                       partition_size=50, **tracked(dn))}
        context = dg.build_sensor_context(resources=resources)
        assert isinstance(head_follow_sensor(context), dg.RunRequest)  # empty lake
        result = defs.resolve_job_def("follow_job").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            run_config={"resources": {"chain": {"config": {"rpc_url": dn.url}},
                                      "lake": {"config": {"lake_dir": str(tmp_path / "lake"),
                                                          "catalog_path": str(tmp_path / "c.duckdb"),
                                                          "partition_size": 50, **tracked(dn)}}},
                        "ops": {"chain_head": {"config": {"confirmations": 4, "features": False}}}})
        assert result.success
        with RpcClient(dn.url) as client:
            assert lake_head(tmp_path / "lake") == client.block_number()
            assert read_frame(tmp_path / "lake", "balances").height > 0  # every raw dataset by default
            context = dg.build_sensor_context(resources=resources, cursor=context.cursor)
            assert isinstance(head_follow_sensor(context), dg.SkipReason)  # caught up
            client.call("anvil_reorg", [2, []])  # same height, new hash at the head
        context = dg.build_sensor_context(resources=resources, cursor=context.cursor)
        assert isinstance(head_follow_sensor(context), dg.RunRequest)
