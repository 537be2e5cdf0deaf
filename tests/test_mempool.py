"""Mempool: txpool sightings joined to the chain; included, replaced, dropped and pending statuses."""

import pyarrow.parquet as pq
from chainlake.ingest import ingest
from chainlake.ingest.mempool import MempoolRecorder, build_mempool, watch
from chainlake.ingest.schemas import MEMPOOL, MEMPOOL_OBSERVATIONS
from chainlake.rpc import RpcClient


def test_devnet_sightings_join_to_inclusion(devnet, tmp_path):
    """Every swap the market sent was seen pending right before its block and is found included there."""
    lake = tmp_path / "lake"
    recorder = MempoolRecorder(lake)
    for snap in devnet.mempool:
        recorder.observe(snap.txpool_content, snap.block_number - 1, snap.wall_time)
    path = recorder.flush()
    assert pq.read_schema(path).remove_metadata() == MEMPOOL_OBSERVATIONS
    ingest(devnet.url, f"0:{devnet.last_block + 1}", ["blocks", "transactions"], lake)
    joined = build_mempool(lake)
    assert joined.schema == MEMPOOL
    assert pq.read_schema(lake / "mempool" / "data.parquet").remove_metadata() == MEMPOOL
    table = joined.to_pylist()
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


def test_a_quiet_node_gives_an_empty_table_not_an_error(tmp_path):
    assert build_mempool(tmp_path).num_rows == 0
    assert pq.read_table(tmp_path / "mempool" / "data.parquet").schema.remove_metadata() == MEMPOOL


def test_queued_and_legacy_entries_are_read(tmp_path):
    """txpool_content as geth documents it: a legacy tx in `queued`, with `0x` as empty value."""
    tx = {"hash": "0xAB" + "0" * 62, "from": "0x" + "C" * 40, "to": None, "nonce": "0x7", "value": "0x",
          "gas": "0x5208", "gasPrice": "0x3b9aca00", "input": "0x", "type": "0x0"}
    recorder = MempoolRecorder(tmp_path)
    assert recorder.observe({"pending": {}, "queued": {tx["from"]: {"7": tx}}}, head_block=5, seen_at=10.0) == 1
    row = pq.read_table(recorder.flush()).to_pylist()[0]
    assert row["transaction_hash"] == "0xab" + "0" * 62 and row["from_address"] == "0x" + "c" * 40
    assert (row["nonce"], row["value"], row["gas_price"], row["pool"]) == (7, "0", 10**9, "queued")
    assert row["to_address"] is None and row["first_seen_ms"] == 10_000
