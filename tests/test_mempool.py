"""Mempool: txpool sightings joined to the chain; included, replaced, dropped and pending statuses."""

import pyarrow.parquet as pq
import pytest

from chainlake.ingest import ingest
from chainlake.ingest.mempool import OBSERVATION_SCHEMA, MempoolRecorder, build_mempool, watch
from chainlake.rpc import RpcClient
from chainlake.errors import ConfigError


def test_devnet_sightings_join_to_inclusion(devnet, tmp_path):
    """Every swap the market sent was seen pending right before its block and is found included there."""
    lake = tmp_path / "lake"
    recorder = MempoolRecorder(lake)
    for snap in devnet.mempool:
        recorder.observe(snap.txpool_content, snap.block_number - 1, snap.wall_time)
    path = recorder.flush()
    assert pq.read_schema(path).remove_metadata() == OBSERVATION_SCHEMA
    ingest(devnet.url, f"0:{devnet.last_block + 1}", ["blocks", "transactions"], lake)
    table = build_mempool(lake).to_pylist()
    assert len(table) == len({r["transaction_hash"] for r in table}) > 0
    included = [r for r in table if r["status"] == "included"]
    # The devnet mines every round, so whatever was pending before block n lands in block n.
    assert len(included) == len(table)
    assert all(r["included_block"] == r["first_seen_head"] + 1 and r["delay_blocks"] == 1 for r in included)
    pending_entries = sum(len(by_nonce) for snap in devnet.mempool for pool in ("pending", "queued")
                          for by_nonce in (snap.txpool_content.get(pool) or {}).values())
    assert sum(r["sightings"] for r in table) == pending_entries


def _send(client, sender, nonce, gas_price, to):
    return client.call("eth_sendTransaction", [{
        "from": sender, "to": to, "value": hex(10**15), "nonce": hex(nonce),
        "gasPrice": hex(gas_price), "gas": hex(21000)}])


def test_replaced_dropped_and_pending(anvil, tmp_path):
    lake = tmp_path / "lake"
    with RpcClient(anvil.url) as client:
        a, b, c, d = client.call("eth_accounts", [])[20:24]
        head = client.block_number()
        nonce_a = int(client.call("eth_getTransactionCount", [a, "latest"]), 16)
        nonce_b = int(client.call("eth_getTransactionCount", [b, "latest"]), 16)
        recorder = MempoolRecorder(lake)
        first = _send(client, a, nonce_a, 2 * 10**9, d)
        doomed = _send(client, b, nonce_b, 2 * 10**9, d)
        recorder.observe(client.call("txpool_content", []), head)
        replacement = _send(client, a, nonce_a, 5 * 10**9, d)   # same sender and nonce, higher price
        client.call("anvil_dropTransaction", [doomed])
        recorder.observe(client.call("txpool_content", []), head)
        client.call("evm_mine", [])
        recorder.observe(client.call("txpool_content", []), head + 1)
        late = _send(client, c, int(client.call("eth_getTransactionCount", [c, "latest"]), 16), 2 * 10**9, d)
        recorder.observe(client.call("txpool_content", []), head + 1)
        recorder.flush()
        ingest(anvil.url, f"0:{head + 2}", ["blocks", "transactions"], lake)
        client.call("evm_mine", [])  # leave the shared node with an empty pool
    rows = {r["transaction_hash"]: r for r in build_mempool(lake).to_pylist()}
    assert rows[replacement]["status"] == "included"
    assert rows[first]["status"] == "replaced" and rows[first]["replaced_by"] == replacement
    assert rows[doomed]["status"] == "dropped"
    assert rows[late]["status"] == "pending"
    assert rows[first]["sightings"] == 1 and rows[replacement]["sightings"] == 1


def test_watch_polls_a_node(anvil, tmp_path):
    with RpcClient(anvil.url) as client:
        recorder = watch(client, tmp_path, seconds=0.3, interval=0.1)
    assert recorder.snapshots >= 2


def test_build_without_observations_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no mempool observations"):
        build_mempool(tmp_path)
    assert list(tmp_path.iterdir()) == []
