"""Integration: ingest from a real anvil (the session devnet, or a private anvil) and check against the node.

The node is asked directly (plain httpx, not chainlake's client) for the numbers the lake must match.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx
import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest

from chainlake.devnet import Anvil
from chainlake.errors import ConfigError, MethodUnsupported, NodeError
from chainlake.ingest import (
    DATASETS, NATIVE_TOKEN, BlockRange, Context, dataset_glob, ingest, partition_files, read_frame, scan_dataset,
)
from chainlake.ingest import lake as lake_module
from chainlake.ingest.datasets import logs, traces, transactions
from chainlake.ingest.ranges import format_key
from chainlake.rpc import RpcClient
from local_http import LocalHttpServer

RAW = ["blocks", "transactions", "logs", "traces"]
PARTITION = 100


def node_batch(url: str, calls: list[tuple[str, list]]) -> list:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    answer = sorted(httpx.post(url, json=body, timeout=60).json(), key=lambda r: r["id"])
    assert all("error" not in r for r in answer), answer[:1]
    return [r["result"] for r in answer]


def node_call(url: str, method: str, params: list):
    return node_batch(url, [(method, params)])[0]


def keys_unique(frame: pl.DataFrame, keys) -> bool:
    return frame.select(list(keys)).is_duplicated().sum() == 0


@pytest.fixture(scope="module")
def chain(devnet):
    """The devnet's blocks 0..last as a range spec, and its last block."""
    return f"0:{devnet.last_block + 1}", devnet.last_block


@pytest.fixture(scope="module")
def lake(devnet, chain, tmp_path_factory):
    """The raw datasets of the whole devnet chain, in 100-block partitions (several files each)."""
    path = tmp_path_factory.mktemp("lake")
    report = ingest(devnet.url, chain[0], RAW, path, partition_size=PARTITION)
    return path, report


def test_row_counts_equal_the_node(devnet, chain, lake):
    path, report = lake
    last = chain[1]
    numbers = [hex(b) for b in range(last + 1)]
    headers = node_batch(devnet.url, [("eth_getBlockByNumber", [n, False]) for n in numbers])
    receipts = node_batch(devnet.url, [("eth_getBlockReceipts", [n]) for n in numbers])
    traced = node_batch(devnet.url, [("trace_block", [n]) for n in numbers])

    assert report.rows["blocks"] == read_frame(path, "blocks").height == last + 1
    n_txs = sum(len(h["transactions"]) for h in headers)
    assert report.rows["transactions"] == read_frame(path, "transactions").height == n_txs > 1000
    n_logs = sum(len(r["logs"]) for block in receipts for r in block)
    assert report.rows["logs"] == read_frame(path, "logs").height == n_logs > 1000
    n_traces = sum(len(t) for t in traced)
    assert report.rows["traces"] == read_frame(path, "traces").height == n_traces > n_txs
    assert report.partitions["logs"] == [f"{s:012d}-{s + 99:012d}" for s in range(0, last + 1, PARTITION)]


def test_receipt_fields_match_the_node(devnet, lake):
    path, _ = lake
    txs = read_frame(path, "transactions")
    sample = txs.sample(60, seed=1)
    hashes = sample["transaction_hash"].to_list()
    receipts = node_batch(devnet.url, [("eth_getTransactionReceipt", [h]) for h in hashes])
    bodies = node_batch(devnet.url, [("eth_getTransactionByHash", [h]) for h in hashes])
    for row, r, t in zip(sample.iter_rows(named=True), receipts, bodies):
        assert row["status"] == int(r["status"], 16) and row["gas_used"] == int(r["gasUsed"], 16)
        assert row["effective_gas_price"] == int(r["effectiveGasPrice"], 16)
        assert row["cumulative_gas_used"] == int(r["cumulativeGasUsed"], 16)
        assert row["logs_count"] == len(r["logs"]) and row["contract_address"] == r["contractAddress"]
        assert row["nonce"] == int(t["nonce"], 16) and row["value"] == str(int(t["value"], 16))
        assert row["input"] == t["input"] and row["gas_limit"] == int(t["gas"], 16)
    # every log row points at its transaction, and logs_count agrees with the logs dataset
    logs = read_frame(path, "logs")
    per_tx = logs.group_by("transaction_hash").len()
    joined = txs.join(per_tx, on="transaction_hash", how="left").with_columns(pl.col("len").fill_null(0))
    assert (joined["len"] == joined["logs_count"]).all()


def test_keys_unique_and_duckdb_reads_hive_layout(lake):
    path, report = lake
    con = duckdb.connect()
    for name in RAW:
        frame = read_frame(path, name)
        assert keys_unique(frame, DATASETS[name].keys), name
        count = con.execute(f"select count(*), count(distinct block_partition) from "
                            f"read_parquet('{dataset_glob(path, name)}', hive_partitioning=true)").fetchall()
        assert count == [(report.rows[name], len(report.partitions[name]))], name


def test_rerun_is_byte_identical(devnet, lake, chain):
    path, _ = lake
    before = {p: p.read_bytes() for name in RAW for p in partition_files(path, name).values()}
    ingest(devnet.url, "150:latest", RAW, path)  # partition size comes from _lake.json
    after = {p: p.read_bytes() for name in RAW for p in partition_files(path, name).values()}
    assert before == after
    assert not list(Path(path).rglob("*.tmp"))


def test_overlapping_and_sub_ranges_merge(devnet, chain, lake, tmp_path):
    whole, _ = lake
    ingest(devnet.url, "0:150", ["logs", "traces", "transactions"], tmp_path, partition_size=PARTITION)
    ingest(devnet.url, f"120:{chain[1] + 1}", ["logs", "traces", "transactions"], tmp_path)
    ingest(devnet.url, "130:131", ["logs", "traces", "transactions"], tmp_path)  # one block inside
    for name in ("logs", "traces", "transactions"):
        assert read_frame(tmp_path, name).equals(read_frame(whole, name)), name


def test_write_is_atomic(devnet, tmp_path, monkeypatch):
    ingest(devnet.url, "0:100", ["logs"], tmp_path, partition_size=PARTITION)
    path = partition_files(tmp_path, "logs")["000000000000-000000000099"]
    good = path.read_bytes()
    real_write = pq.write_table

    def crash_half_way(table, where, **kwargs):
        real_write(table.slice(0, 1), where, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(lake_module.pq, "write_table", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        ingest(devnet.url, "0:100", ["logs"], tmp_path)
    assert path.read_bytes() == good  # readers still see the complete old file
    assert not [p for p in Path(tmp_path).rglob("*") if p.is_file() and p.suffix == ".tmp"]


class MissingMethodsNode(LocalHttpServer):
    """A node that knows only eth_chainId and eth_blockNumber (for MethodUnsupported before writing)."""

    KNOWN = {"eth_chainId": "0x7a69", "eth_blockNumber": "0x64"}

    def respond(self, body: bytes):
        request = orjson.loads(body)
        answers = [self.answer(r) for r in request] if isinstance(request, list) else self.answer(request)
        return 200, orjson.dumps(answers), None

    def answer(self, r: dict) -> dict:
        if r["method"] in self.KNOWN:
            return {"jsonrpc": "2.0", "id": r["id"], "result": self.KNOWN[r["method"]]}
        return {"jsonrpc": "2.0", "id": r["id"], "error": {"code": -32601, "message": "Method not found"}}


@pytest.fixture(scope="module")
def missing_methods_node():
    with MissingMethodsNode() as node:
        yield node.url


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("case, error, match", [
    ("bad url", ConfigError, "bad RPC URL"),
    ("unreachable", NodeError, "cannot reach the node"),
    ("start after end", ConfigError, "greater than the start"),
    ("beyond head", ConfigError, "beyond the chain head"),
    ("negative", ConfigError, "negative"),
    ("unknown dataset", ConfigError, "unknown dataset 'blockz'"),
    ("bad address", ConfigError, "bad address '0x123'"),
    ("balances without addresses", ConfigError, "needs at least one address to track: pass --addresses"),
    ("missing method", MethodUnsupported, "trace_block, debug_traceBlockByNumber, needed by dataset 'traces'"),
])
def test_errors_write_nothing(devnet, missing_methods_node, tmp_path, case, error, match):
    lake = tmp_path / "lake"
    url, blocks, datasets, kwargs = devnet.url, "0:10", ["logs"], {}
    if case == "bad url":
        url = "localhost:8545"
    elif case == "unreachable":
        url = closed_port_url()
    elif case == "start after end":
        blocks = "10:5"
    elif case == "beyond head":
        blocks = f"0:{devnet.last_block + 10}"
    elif case == "negative":
        blocks = "-5:10"
    elif case == "unknown dataset":
        datasets = ["logs", "blockz"]
    elif case == "bad address":
        datasets, kwargs = ["balances"], {"addresses": ["0x123"]}
    elif case == "balances without addresses":
        datasets = ["balances"]
    elif case == "missing method":
        url, datasets = missing_methods_node, ["traces"]
    with pytest.raises(error, match=match):
        ingest(url, blocks, datasets, lake, max_retries=1, **kwargs)
    assert not lake.exists()


def test_lake_of_another_chain_or_partition_size(devnet, tmp_path):
    (tmp_path / "_lake.json").write_text(json.dumps({"format": 1, "chain_id": 1, "partition_size": 1000}))
    with pytest.raises(ConfigError, match="holds chain 1 but the node serves chain 31337"):
        ingest(devnet.url, "0:10", ["logs"], tmp_path)
    (tmp_path / "_lake.json").write_text(json.dumps({"format": 1, "chain_id": 31337, "partition_size": 1000}))
    with pytest.raises(ConfigError, match="partitions of 1000 blocks, not 100"):
        ingest(devnet.url, "0:10", ["logs"], tmp_path, partition_size=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_lake.json"]


def test_balances_equal_the_node_at_every_block(devnet, chain, tmp_path):
    layout = devnet.layout
    addresses = [layout.agents_of("arb")[0], layout.agents_of("retail")[0], layout.agents_of("sandwich")[0],
                 next(iter(layout.pools.values())).address]
    tokens = [info.address for info in layout.tokens.values()]
    first, last = layout.deploy_block - 3, chain[1]  # tokens appear mid-range: null balances before
    report = ingest(devnet.url, f"{first}:{last + 1}", ["balances"], tmp_path, addresses=addresses, tokens=tokens,
                    partition_size=PARTITION)
    rows = read_frame(tmp_path, "balances")
    pairs = [(a, t) for a in addresses for t in [NATIVE_TOKEN, *tokens]]
    # a row per pair at the first block of each partition's range, then only changes
    for key, path in partition_files(tmp_path, "balances").items():
        part = pl.from_arrow(pq.read_table(path))
        start = max(first, int(key[:12]))
        assert part.filter(pl.col("block_number") == start).height == len(pairs)
        changes = part.sort("address", "token", "block_number").with_columns(
            prev=pl.col("balance").shift(1).over("address", "token"))
        assert changes.filter(pl.col("block_number") > start)["prev"].ne_missing(
            changes.filter(pl.col("block_number") > start)["balance"]).all()
    assert report.rows["balances"] < len(pairs) * (last - first + 1) / 2  # sensible row count
    # exactness: the balance "as of" every block equals the node's historical answer
    calls, expected_keys = [], []
    for block in range(first, last + 1):
        for address, token in pairs:
            if token == NATIVE_TOKEN:
                calls.append(("eth_getBalance", [address, hex(block)]))
            else:
                calls.append(("eth_call", [{"to": token, "data": "0x70a08231" + address[2:].rjust(64, "0")}, hex(block)]))
            expected_keys.append((block, address, token))
    answers = node_batch(devnet.url, calls)
    truth = {k: (str(int(v, 16)) if v and v != "0x" else None) for k, v in zip(expected_keys, answers)}
    as_of = {}
    for address, token in pairs:
        series = rows.filter((pl.col("address") == address) & (pl.col("token") == token)).sort("block_number")
        current = None
        numbers, values = series["block_number"].to_list(), series["balance"].to_list()
        i = 0
        for block in range(first, last + 1):
            while i < len(numbers) and numbers[i] <= block:
                current = values[i]
                i += 1
            as_of[(block, address, token)] = current
    mismatches = [k for k in truth if truth[k] != as_of[k]]
    assert not mismatches, mismatches[:5]


@pytest.fixture(scope="module")
def private_anvil():
    """An anvil only this module mines on: huge values, a contract deploy, plain transfers."""
    with Anvil() as node:
        yield node


def send_and_mine(url: str, txs: list[dict]) -> str:
    hashes = node_batch(url, [("eth_sendTransaction", [tx]) for tx in txs])
    node_call(url, "evm_mine", [])
    return hashes


def test_contract_create_and_uint256_beyond_2_128(private_anvil, tmp_path):
    """A balance >= 2^128 (anvil refuses tx values that large) round-trips exactly; a create is traced."""
    url = private_anvil.url
    sender, receiver = node_call(url, "eth_accounts", [])[:2]
    huge = 2**200 + 12345
    node_call(url, "anvil_setBalance", [sender, hex(huge)])
    node_call(url, "evm_mine", [])
    start = int(node_call(url, "eth_blockNumber", []), 16)
    value = 10**24 + 7
    nonce = int(node_call(url, "eth_getTransactionCount", [sender, "latest"]), 16)
    send_and_mine(url, [
        {"from": sender, "to": receiver, "value": hex(value), "nonce": hex(nonce), "gas": hex(21000)},
        {"from": sender, "data": "0x00", "nonce": hex(nonce + 1), "gas": hex(100_000)},  # empty contract
    ])
    ingest(url, f"{start}:latest", ["transactions", "traces", "balances"], tmp_path, addresses=[sender, receiver])
    txs = read_frame(tmp_path, "transactions")
    assert txs["value"].to_list() == [str(value), "0"] and txs["value_f64"][0] == float(value)
    assert txs["contract_address"][1] is not None and txs["to_address"][1] is None
    tr = read_frame(tmp_path, "traces")
    assert tr["value"].to_list() == [str(value), "0"] and tr["type"].to_list() == ["call", "create"]
    assert tr["to_address"][1] == txs["contract_address"][1]
    bal = read_frame(tmp_path, "balances").filter(pl.col("token") == NATIVE_TOKEN)
    senders = bal.filter(pl.col("address") == sender.lower())
    assert senders["block_number"].to_list() == [start, start + 1]  # anchor, then the change
    assert senders["balance"][0] == str(huge) and int(senders["balance"][1]) < huge - value
    for row in bal.iter_rows(named=True):
        assert row["balance"] == str(int(node_call(url, "eth_getBalance", [row["address"], hex(row["block_number"])]), 16))
    assert float(senders["balance"][0]) == senders["balance_f64"][0]


def test_debug_trace_fallback_gives_the_same_rows(devnet):
    """callTracer frames flattened = trace_block rows, top frames included: same gas, and a null top-call
    gas_used (callTracer has no exact equivalent: see the traces module doc); only the error text differs."""
    blocks = BlockRange(devnet.first_block + 10, devnet.first_block + 13)
    with RpcClient(devnet.url) as client:
        parity = traces.collect(Context(client, 31337, 0, {"traces": "trace_block"}), blocks)
        geth = traces.collect(Context(client, 31337, 0, {"traces": "debug_traceBlockByNumber"}), blocks)
    assert parity.height == geth.height > 0
    same = ["block_number", "block_hash", "transaction_hash", "transaction_position", "trace_index", "trace_address",
            "subtraces", "type", "from_address", "to_address", "value", "input", "output", "gas"]
    assert parity.select(same).equals(geth.select(same))
    top = pl.col("trace_address").list.len() == 0
    assert parity.filter(top).height == geth.filter(top).height > 10
    assert parity.filter(top)["gas_used"].is_not_null().all() and geth.filter(top)["gas_used"].is_null().all()
    assert parity.filter(~top)["gas_used"].equals(geth.filter(~top)["gas_used"])
    assert (geth["gas_used"].is_null() | (geth["gas_used"] <= geth["gas"])).all()  # no cumulative values
    assert (parity["error"].is_null() == geth["error"].is_null()).all()
    calls = pl.col("type") == "call"
    assert parity.filter(calls)["call_type"].equals(geth.filter(calls)["call_type"])


def test_debug_trace_fallback_lowercases_hashes():
    """A node that sends uppercase hex: the callTracer path lowercases hashes and addresses like trace_block's."""
    frame = {"type": "CALL", "from": "0xABCDEF" + "00" * 17, "to": "0x" + "AB" * 20, "gas": "0x10", "gasUsed": "0x5",
             "input": "0x", "value": "0x0", "calls": [{"type": "CALL", "from": "0x" + "AB" * 20, "to": "0x" + "CD" * 20,
                                                       "gas": "0x8", "gasUsed": "0x2", "input": "0x"}]}
    rows = traces.flatten_call_frames(7, "0x" + "EF" * 32, ["0x" + "AA" * 32], [{"result": frame}])
    assert [r["gas_used"] for r in rows] == [None, "0x2"]  # the top call's is not parity's value
    out = traces.rows_to_frame(rows)
    for column in ("block_hash", "transaction_hash", "from_address", "to_address"):
        assert all(v == v.lower() for v in out[column].to_list()), column


def test_per_transaction_receipts_fallback(devnet):
    blocks = BlockRange(devnet.first_block, devnet.first_block + 20)
    with RpcClient(devnet.url) as client:
        fast = transactions.collect(Context(client, 31337, 0, {"receipts": "eth_getBlockReceipts"}), blocks)
        slow = transactions.collect(Context(client, 31337, 0, {"receipts": "eth_getTransactionReceipt"}), blocks)
    assert fast.height > 0 and fast.equals(slow)


def test_progress_and_report(devnet, tmp_path):
    report = ingest(devnet.url, "0:5", ["blocks"], tmp_path, progress=True)
    assert report.blocks == BlockRange(0, 4) and report.chain_id == 31337
    assert report.rows == {"blocks": 5} and report.partitions == {"blocks": ["000000000000-000000000999"]}
    assert report.methods["blocks"] == {"blocks": "eth_getBlockByNumber"}
    assert "blocks 5 rows" in report.summary() and report.seconds > 0
    assert json.loads((tmp_path / "_lake.json").read_text())["partition_size"] == 1000


def test_scan_dataset_is_the_lake_as_a_lazy_frame(lake, tmp_path):
    path, report = lake
    for name in RAW:
        scanned = scan_dataset(path, name)
        assert isinstance(scanned, pl.LazyFrame)
        assert scanned.collect().equals(read_frame(path, name)), name
    blocks = scan_dataset(path, "logs").filter(pl.col("topic0").is_not_null()).select(pl.len()).collect().item()
    assert 0 < blocks <= report.rows["logs"]
    empty = scan_dataset(tmp_path, "balances").collect()  # nothing ingested: the schema, no rows
    assert empty.height == 0 and empty.columns == DATASETS["balances"].schema.names


# -- a proxy in front of the devnet, to make a real node fail in chosen ways ----------------------------
def block_of(call: dict) -> int | None:
    """The block a per-block call asks for (eth_getLogs: its fromBlock), or None."""
    params = call.get("params") or []
    first = params[0] if params else None
    if isinstance(first, dict):
        first = first.get("fromBlock")
    return int(first, 16) if isinstance(first, str) and first.startswith("0x") and len(first) < 20 else None


class NodeProxy(LocalHttpServer):
    """Forwards JSON-RPC to a real node. `fault(calls)` may answer an HTTP request itself with
    (status, body): calls are the request's JSON-RPC calls (a batch, or one call)."""

    def __init__(self, upstream: str, fault=None):
        super().__init__()
        self.upstream, self.fault = upstream, fault
        self.calls: list[dict] = []
        self.lock = threading.Lock()

    def respond(self, body: bytes):
        request = orjson.loads(body)
        calls = request if isinstance(request, list) else [request]
        with self.lock:
            self.calls += calls
        answer = self.fault(calls) if self.fault else None
        status, data = answer if answer is not None else (200, self.forward(body))
        return status, data, None

    def forward(self, body: bytes) -> bytes:
        return httpx.post(self.upstream, content=body, headers={"Content-Type": "application/json"}, timeout=60).content

    def blocks_asked(self, method: str | None = None) -> list[int]:
        with self.lock:
            return [b for c in self.calls if (method is None or c["method"] == method)
                    and (b := block_of(c)) is not None]



def test_a_failing_partition_stops_the_ingest_before_any_later_partition(devnet, tmp_path):
    """HTTP 500 on every request for block 5 (partitions of 5 blocks): partition 0 is written, nothing after."""
    def fault(calls):
        return (500, b"internal error") if any(block_of(c) == 5 for c in calls) else None

    with NodeProxy(devnet.url, fault) as proxy:
        with pytest.raises(NodeError, match="HTTP 500"):
            ingest(proxy.url, "0:60", ["blocks"], tmp_path, partition_size=5, max_retries=2)
        time.sleep(0.2)  # a fetch still running when the error surfaced has ended by now
        assert max(proxy.blocks_asked()) < 15  # at most two partitions in flight: 5 and the next one
    assert list(partition_files(tmp_path, "blocks")) == ["000000000000-000000000004"]


def test_ctrl_c_stops_a_long_ingest(devnet, tmp_path):
    """SIGINT to the main thread while partition 20 is fetched: the ingest stops at once, leaves a prefix of
    whole partitions and starts nothing more."""
    main, sent = threading.main_thread().ident, threading.Event()

    def fault(calls):
        if any(block_of(c) == 20 for c in calls) and not sent.is_set():
            sent.set()
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.3)  # this partition is still in flight when the interrupt lands
        return None

    with NodeProxy(devnet.url, fault) as proxy:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            ingest(proxy.url, "0:150", ["blocks"], tmp_path, partition_size=5)
        assert time.monotonic() - started < 5
        time.sleep(0.5)
        assert sent.is_set() and max(proxy.blocks_asked()) < 30
    written = list(partition_files(tmp_path, "blocks"))
    assert written == [format_key(s, s + 4) for s in range(0, 5 * len(written), 5)]  # whole partitions, in order
    assert len(written) <= 4  # 0, 5, 10, 15 at most: partition 20 was in flight


def test_lowercase_hashes_addresses_and_topics():
    """Nodes may send uppercase hex: every hash, address and topic is stored lowercase."""
    log = {"address": "0x" + "AB" * 20, "topics": ["0x" + "DD" * 32, "0x" + "0A" * 32], "data": "0xFF",
           "blockNumber": "0x1", "blockHash": "0x" + "CC" * 32, "transactionHash": "0x" + "EE" * 32,
           "transactionIndex": "0x0", "logIndex": "0x0"}
    out = logs.convert(pl.DataFrame({"result": [[log]]}, schema={"result": pl.List(logs.LOG)}))
    assert out.row(0, named=True) | {"data": None} == {
        "block_number": 1, "transaction_index": 0, "log_index": 0, "block_hash": "0x" + "cc" * 32,
        "transaction_hash": "0x" + "ee" * 32, "address": "0x" + "ab" * 20, "topic0": "0x" + "dd" * 32,
        "topic1": "0x" + "0a" * 32, "topic2": None, "topic3": None, "data": None}


LOG_LIMIT = 4  # blocks per eth_getLogs the proxy accepts in the tests below


def too_large(code: int, message: str):
    """A fault: refuse every eth_getLogs wider than LOG_LIMIT blocks with this JSON-RPC error."""
    def fault(calls):
        wide = [c for c in calls if c["method"] == "eth_getLogs"
                and int(c["params"][0]["toBlock"], 16) - int(c["params"][0]["fromBlock"], 16) + 1 > LOG_LIMIT]
        if not wide:
            return None
        return 200, orjson.dumps([{"jsonrpc": "2.0", "id": c["id"], "error": {"code": code, "message": message}}
                                  for c in calls])
    return fault


@pytest.mark.parametrize("code, message", [
    (-32005, "query returned more than 10000 results"),
    (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
             "limit on the response size, or you can request any block range with a cap of 10K logs in the response."),
    (-32000, "block range is too large"),
    (-32000, "exceed maximum block range: 4"),
    (-32602, "query exceeds max block range 4"),
])
def test_logs_window_is_halved_when_the_node_says_too_large(devnet, tmp_path, code, message):
    first = devnet.first_block
    spec = f"{first}:{first + 40}"
    expected = ingest(devnet.url, spec, ["logs"], tmp_path / "direct")
    with NodeProxy(devnet.url, too_large(code, message)) as proxy:
        report = ingest(proxy.url, spec, ["logs"], tmp_path / "proxied", max_retries=1)
    assert report.rows["logs"] == expected.rows["logs"] > 0
    assert read_frame(tmp_path / "proxied", "logs").equals(read_frame(tmp_path / "direct", "logs"))


@pytest.mark.parametrize("message", ["invalid block range params",  # geth: fromBlock > toBlock
                                     "exceed max addresses or topics per search position"])  # geth: filter size
def test_logs_errors_unrelated_to_size_are_not_bisected(devnet, tmp_path, message):
    """Errors that merely contain 'range' / 'limit' / 'exceed' fail at once, with the initial windows only."""
    first = devnet.first_block
    with NodeProxy(devnet.url, too_large(-32000, message)) as proxy:
        with pytest.raises(NodeError):
            ingest(proxy.url, f"{first}:{first + 50}", ["logs"], tmp_path, max_retries=1,
                   options={"log_blocks_per_request": 25})
        assert set(proxy.blocks_asked("eth_getLogs")) <= {0, first, first + 25}  # 0: the capability probe
    assert not partition_files(tmp_path, "logs")


def test_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    """The temp file reaches the disk before it takes the real name; the rename is made durable after."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "part" / "data.parquet"
    lake_module.write_parquet_atomic(path, pl.DataFrame({"a": [1, 2]}).to_arrow())
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    tmp = events[0][1]
    assert tmp.endswith(".tmp") and events[1] == ("replace", tmp, str(path)) and events[2][1] == str(path.parent)
    assert pq.read_table(path).num_rows == 2


def test_two_writers_of_one_partition_take_turns(devnet, tmp_path, monkeypatch):
    """Two ingests of disjoint blocks of one partition at once (a CLI run and a Dagster run): both reach the
    write step together unless the partition lock makes the second wait, which then merges onto the first."""
    both_read = threading.Barrier(2)
    real_write = lake_module.write_parquet_atomic

    def write_when_both_have_read(path, table):
        try:
            both_read.wait(timeout=1.5)  # without the lock both writers get here having read the same file
        except threading.BrokenBarrierError:
            pass
        real_write(path, table)

    monkeypatch.setattr(lake_module, "write_parquet_atomic", write_when_both_have_read)
    errors = []

    def run(spec):
        try:
            ingest(devnet.url, spec, ["blocks"], tmp_path, partition_size=PARTITION)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(spec,)) for spec in ("0:50", "50:100")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    blocks = read_frame(tmp_path, "blocks")
    assert blocks["block_number"].to_list() == list(range(100))
    folder = partition_files(tmp_path, "blocks")["000000000000-000000000099"].parent
    assert sorted(p.name for p in folder.iterdir()) == [lake_module.LOCK_FILE, lake_module.DATA_FILE]
    count = duckdb.connect().execute(
        f"select count(*) from read_parquet('{dataset_glob(tmp_path, 'blocks')}', hive_partitioning=true)").fetchone()
    assert count == (100,)  # the lock file is not read as data


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_ingest", Path(__file__).parents[1] / "bench" / "ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fails_when_row_counts_differ(monkeypatch):
    bench = load_bench()
    row = {"dataset": "logs", "rows_chainlake": 10, "rows_cryo": 9, "chainlake_s": 1.0, "cryo_s": 1.0,
           "chainlake_rows_s": 10.0, "cryo_rows_s": 9.0, "ratio": 1.1, "node_cpu_chainlake": 0.1, "node_cpu_cryo": 0.1}
    chain = {"kind": "signed", "blocks": 10, "market_blocks": 5, "txs_sent": 50, "build_seconds": 1.0, "spec": "0:10"}
    written = []
    monkeypatch.setattr(bench, "bench", lambda *args: ([row], chain))
    monkeypatch.setattr(bench, "write_results", written.append)
    monkeypatch.setattr(sys, "argv", ["bench/ingest.py"])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code not in (0, None) and "logs" in str(exit_.value.code)
    assert written == []  # RESULTS.md is not rewritten with a failed check
    monkeypatch.setattr(bench, "bench", lambda *args: ([row | {"rows_cryo": 10}], chain))
    bench.main()
    assert len(written) == 1
    # rows read through the remote-node proxy are checked too, and named as such
    assert bench.row_count_differences([row | {"rows_cryo": 10}, row | {"scenario": "remote"}]) == [
        "logs (remote): chainlake 10 rows, cryo 9"]


def test_bench_proxy_delays_counts_and_forwards():
    """The bench's remote-node proxy: holds each request `latency_ms`, forwards it unchanged (status and body
    back unchanged, large answers included), counts requests / calls / methods, and overlaps requests."""
    bench = load_bench()
    seen = []

    class Upstream(LocalHttpServer):
        def respond(self, body: bytes):
            seen.append(body)
            if body == b"not json":
                return 400, b"bad request", None
            request = orjson.loads(body)
            pad = "x" * (2_000_000 if isinstance(request, list) else 10)  # a large answer arrives in pieces
            return 200, orjson.dumps({"echo": request, "pad": pad}), None

    single = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    batch = [single, {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}, single | {"id": 3}]
    with Upstream() as upstream:
        with bench.Proxy(upstream.url, latency_ms=100) as proxy, \
                httpx.Client(timeout=10) as client:
            for payload in (single, batch):
                started = time.perf_counter()
                answer = client.post(proxy.url, content=orjson.dumps(payload), headers={"Content-Type": "application/json"})
                assert time.perf_counter() - started >= 0.095  # held ~100 ms
                assert answer.status_code == 200 and answer.json()["echo"] == payload
                assert len(answer.json()["pad"]) == (2_000_000 if isinstance(payload, list) else 10)
            answer = client.post(proxy.url, content=b"not json")
            assert (answer.status_code, answer.content) == (400, b"bad request")
            assert seen == [orjson.dumps(single), orjson.dumps(batch), b"not json"]  # forwarded unchanged
            stats = proxy.stats(reset=True)
            assert (stats["requests"], stats["calls"], stats["errors"]) == (3, 4, 0)
            assert stats["methods"] == {"eth_chainId": 3, "eth_blockNumber": 1}
            # requests are held concurrently, not one after another: the proxy counts them in flight together
            # (a count, not a wall-clock bound, which a loaded CI machine could break)
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda _: httpx.post(proxy.url, content=orjson.dumps(single)).status_code,
                                      range(8)))
            assert codes == [200] * 8
            stats = proxy.stats()
            assert (stats["requests"], stats["calls"]) == (8, 8) and stats["peak_in_flight"] >= 4


def test_a_faulty_node_leaves_the_lake_byte_identical(devnet, tmp_path):
    """Timeouts, 429, 5xx, truncated and malformed JSON and dropped connections on ~15% of requests: every
    fault is retried, and the lake's files equal those of a clean run byte for byte."""
    rng = random.Random(5)
    faults = collections.Counter()

    def fault(calls):
        if rng.random() >= 0.15:
            return None
        kind = rng.choice(["timeout", "429", "503", "truncated", "malformed", "drop"])
        faults[kind] += 1
        if kind == "timeout":
            time.sleep(1.2)  # beyond the client's 1 s timeout
            return None
        if kind == "drop":
            raise ConnectionAbortedError("fault: connection dropped")  # the server closes the socket unanswered
        return {"429": (429, b"slow down"), "503": (503, b"unavailable"),
                "truncated": (200, b'{"jsonrpc":"2.0","id":1,"res'), "malformed": (200, b"<html>bad gateway</html>")}[kind]

    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    blocks = f"{devnet.first_block}:{devnet.first_block + 60}"
    ingest(devnet.url, blocks, RAW, clean, partition_size=20)
    with NodeProxy(devnet.url, fault) as proxy:
        ingest(proxy.url, blocks, RAW, faulty, partition_size=20, timeout=1.0, max_retries=8)
    assert sum(faults.values()) >= 5 and len(faults) >= 4, faults
    for name in RAW:
        ours, theirs = partition_files(faulty, name), partition_files(clean, name)
        assert list(ours) == list(theirs)
        assert all(ours[k].read_bytes() == theirs[k].read_bytes() for k in ours), name


def test_kill_9_mid_ingest_leaves_whole_files_and_the_rerun_the_same_rows(devnet, tmp_path):
    """SIGKILL while partitions are being written: every data file present is whole (equal to a clean run's),
    leftovers are only hidden temp files no reader sees, and re-running gives byte-identical files."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    blocks = f"0:{devnet.last_block + 1}"
    ingest(devnet.url, blocks, ["blocks", "logs"], clean, partition_size=5)
    script = ("import sys; from chainlake.ingest import ingest; "
              "ingest(sys.argv[1], sys.argv[2], ['blocks', 'logs'], sys.argv[3], partition_size=5, max_concurrency=1)")
    with NodeProxy(devnet.url, lambda calls: time.sleep(0.01)) as proxy:  # slow enough to be caught mid-way
        child = subprocess.Popen([sys.executable, "-c", script, proxy.url, blocks, str(killed)])
        deadline = time.monotonic() + 30
        while len(partition_files(killed, "logs")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert len(partition_files(killed, "logs")) < len(partition_files(clean, "logs"))  # killed part-way
    for name in ("blocks", "logs"):
        written = partition_files(killed, name)
        assert written
        for key, path in written.items():
            assert path.read_bytes() == partition_files(clean, name)[key].read_bytes()
    visible = [p for p in killed.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts)]
    assert all(p.name == "data.parquet" for p in visible)
    ingest(devnet.url, blocks, ["blocks", "logs"], killed, partition_size=5)
    for name in ("blocks", "logs"):
        ours, theirs = partition_files(killed, name), partition_files(clean, name)
        assert list(ours) == list(theirs) and all(ours[k].read_bytes() == theirs[k].read_bytes() for k in ours)
