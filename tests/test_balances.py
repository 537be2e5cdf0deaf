"""balances: the derived-then-verified path must give exactly the rows of the exact path (a historical read
at every candidate block), and fall back to the node for a pair whose derivation does not match.

Real anvil nodes only: the session devnet, and a private anvil where ether moves by WETH deposits and
withdrawals, a reverted transaction, miner tips, and an `anvil_setBalance` nothing in the chain records.
"""

from __future__ import annotations

import logging

import httpx
import polars as pl
import pytest

from chainlake.devnet import Anvil
from chainlake.devnet.contracts import load
from chainlake.devnet.rpc import encode_call
from chainlake.ingest import NATIVE_TOKEN, BlockRange, Context, ingest, read_frame
from chainlake.ingest.datasets import balances
from chainlake.rpc import RpcClient

ETHER = 10**18
LOGGER = "chainlake.ingest.datasets.balances"


def rpc(url: str, method: str, *params):
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = httpx.post(url, json=body, timeout=60).json()
    assert "error" not in answer, answer
    return answer["result"]


def node_balance(url: str, address: str, token: str, block: int) -> str | None:
    if token == NATIVE_TOKEN:
        return str(int(rpc(url, "eth_getBalance", address, hex(block)), 16))
    out = rpc(url, "eth_call", {"to": token, "data": "0x70a08231" + address[2:].rjust(64, "0")}, hex(block))
    return str(int(out[:66], 16)) if len(out) > 2 else None


def mismatch_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_derived_rows_equal_the_exact_path_on_the_devnet(devnet, tmp_path, monkeypatch, caplog):
    """All pools and agents, all tokens, from genesis (tokens appear mid-range) in 100-block partitions."""
    layout = devnet.layout
    addresses = [p.address for p in layout.pools.values()] + list(layout.agents.values())
    tokens = [t.address for t in layout.tokens.values()]
    reads = []
    real = balances.read_raw
    monkeypatch.setattr(balances, "read_raw", lambda ctx, keys: reads.append(keys.height) or real(ctx, keys))
    spec, kwargs = f"0:{devnet.last_block + 1}", dict(addresses=addresses, tokens=tokens, partition_size=100)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ingest(devnet.url, spec, ["balances"], tmp_path / "derived", **kwargs)
    derived_reads, reads[:] = sum(reads), []
    ingest(devnet.url, spec, ["balances"], tmp_path / "exact", options={"balances_derive": False}, **kwargs)
    derived, exact = read_frame(tmp_path / "derived", "balances"), read_frame(tmp_path / "exact", "balances")
    assert derived.height > 1000 and derived.equals(exact)
    assert not mismatch_warnings(caplog)
    assert derived_reads * 5 < sum(reads)  # historical state calls: the point of deriving


@pytest.fixture(scope="module")
def weth_chain():
    """A private anvil: WETH, then deposits, withdrawals (internal value calls), a reverted withdrawal, plain
    transfers, a tracked coinbase (priority fees), and ether set on `d` by anvil_setBalance mid-range."""
    with Anvil() as node:
        url = node.url
        a, b, c, d, miner = rpc(url, "eth_accounts")[:5]
        rpc(url, "anvil_setCoinbase", miner)
        weth = deploy(url, a, load("WETH").bytecode)
        start = int(rpc(url, "eth_blockNumber"), 16) + 1
        mine(url, tx(a, weth, 5 * ETHER, encode_call("deposit()")), tx(b, c, ETHER))
        mine(url, tx(a, weth, 0, encode_call("withdraw(uint256)", 2 * ETHER)),
             tx(c, weth, ETHER, encode_call("deposit()")))
        mine(url, tx(a, weth, 0, encode_call("withdraw(uint256)", 100 * ETHER), gas=100_000),  # reverts
             tx(b, weth, 0, encode_call("transfer(address,uint256)", d, 1)))  # b has no WETH: reverts
        rpc(url, "anvil_setBalance", d, hex(777 * ETHER))  # no transaction, no trace, no log
        mine(url, tx(b, a, 1))
        mine(url, tx(d, b, ETHER), tx(c, weth, 0, encode_call("transfer(address,uint256)", a, ETHER // 2)))
        mine(url, tx(c, weth, 0, encode_call("withdraw(uint256)", ETHER // 4)))
        last = int(rpc(url, "eth_blockNumber"), 16)
        yield url, weth, [x.lower() for x in (a, b, c, d, miner, weth)], BlockRange(start, last)


def deploy(url: str, sender: str, code: str) -> str:
    mine(url, {"from": sender, "data": code, "gas": hex(3_000_000)})
    block = rpc(url, "eth_getBlockReceipts", "latest")
    return block[0]["contractAddress"].lower()


def tx(sender: str, to: str, value: int, data: str = "0x", gas: int = 200_000) -> dict:
    return {"from": sender, "to": to, "value": hex(value), "data": data, "gas": hex(gas)}


def mine(url: str, *txs: dict) -> None:
    for t in txs:  # one transaction per sender per block: anvil picks the nonces
        rpc(url, "eth_sendTransaction", t)
    rpc(url, "evm_mine")


def test_unmodelled_change_falls_back_to_the_node(weth_chain, caplog):
    url, weth, tracked, blocks = weth_chain
    d = tracked[3]
    with RpcClient(url) as client, caplog.at_level(logging.INFO, logger=LOGGER):
        ctx = Context(client, 31337, blocks.last, {"traces": "trace_block", "receipts": "eth_getBlockReceipts"},
                      tuple(tracked), (weth,))
        derived, exact = balances.collect(ctx, blocks), balances.collect_exact(ctx, blocks)
    assert derived.equals(exact)
    warned = mismatch_warnings(caplog)
    assert len(warned) == 1 and f"{d}/ETH" in warned[0] and "1 pair(s)" in warned[0]
    for row in derived.iter_rows(named=True):  # every value is the node's, at its block
        assert row["balance"] == node_balance(url, row["address"], row["token"], row["block_number"]), row
    assert d in derived.filter(pl.col("token") == NATIVE_TOKEN)["address"].to_list()


def test_derived_pairs_hold_the_node_value_at_every_block(weth_chain):
    """Gas, tips, reverted calls, internal value and WETH logs: as-of balance = node, block by block."""
    url, weth, tracked, blocks = weth_chain
    with RpcClient(url) as client:
        ctx = Context(client, 31337, blocks.last, {"traces": "trace_block", "receipts": "eth_getBlockReceipts"},
                      tuple(tracked), (weth,))
        rows = balances.collect(ctx, blocks)
    for address in tracked[:3] + tracked[4:]:  # d's ether is the unmodelled one
        for token in (NATIVE_TOKEN, weth):
            series = rows.filter((pl.col("address") == address) & (pl.col("token") == token)).sort("block_number")
            for block in blocks.numbers():
                as_of = series.filter(pl.col("block_number") <= block)["balance"][-1]
                assert as_of == node_balance(url, address, token, block), (address, token, block)


def test_without_traces_or_receipts_native_pairs_are_read_exactly(devnet):
    blocks = BlockRange(devnet.first_block, devnet.first_block + 15)
    layout = devnet.layout
    addresses = tuple(layout.agents_of("arb") + layout.agents_of("retail"))
    tokens = tuple(t.address for t in layout.tokens.values())
    with RpcClient(devnet.url) as client:
        for methods in ({}, {"traces": "trace_block"}):
            ctx = Context(client, 31337, devnet.last_block, methods, addresses, tokens)
            assert balances.collect(ctx, blocks).equals(balances.collect_exact(ctx, blocks))


# -- pure parts -------------------------------------------------------------------------------------------
def traces_frame(rows: list[dict]) -> pl.DataFrame:
    columns = {"block_number": pl.Int64, "tx": pl.Int64, "traceAddress": pl.List(pl.Int64), "type": pl.String,
               "callType": pl.String, "error": pl.String, "from": pl.String, "to": pl.String, "value": pl.String,
               "address": pl.String, "refundAddress": pl.String, "balance": pl.String, "author": pl.String,
               "result|address": pl.String}
    return pl.DataFrame([{**dict.fromkeys(columns), "block_number": 1, "tx": 0, **r} for r in rows], schema=columns)


def test_value_moves_skip_failed_subtrees_and_delegatecalls():
    frames = traces_frame([
        {"traceAddress": [], "type": "call", "callType": "call", "from": "0xa", "to": "0xb", "value": "0x10"},
        {"traceAddress": [0], "type": "call", "callType": "call", "from": "0xb", "to": "0xc", "value": "0x1",
         "error": "Reverted"},
        {"traceAddress": [0, 0], "type": "call", "callType": "call", "from": "0xc", "to": "0xd", "value": "0x2"},
        {"traceAddress": [1], "type": "call", "callType": "delegatecall", "from": "0xb", "to": "0xe", "value": "0x10"},
        {"traceAddress": [2], "type": "create", "from": "0xb", "value": "0x3", "result|address": "0xf"},
        {"traceAddress": [3], "type": "suicide", "address": "0xf", "refundAddress": "0xa", "balance": "0x3"},
        {"traceAddress": [], "tx": 1, "type": "call", "callType": "call", "from": "0xa", "to": "0xb", "value": "0x5",
         "error": "Reverted"},
    ])
    moves = balances._value_moves(frames).sort("address", "amount")
    assert moves.select("address", "amount").rows() == [
        ("0xa", "-0x10"), ("0xa", "0x3"), ("0xb", "-0x3"), ("0xb", "0x10"), ("0xf", "-0x3"), ("0xf", "0x3")]


def test_token_deltas_and_exact_fold():
    word = lambda v: "0x" + format(v, "064x")  # noqa: E731
    topic = lambda a: "0x" + a[2:].rjust(64, "0")  # noqa: E731
    a, b, token = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "1" * 40
    big = 2**255 + 3
    logs = pl.DataFrame([
        (2, token, balances.TRANSFER, topic(a), topic(b), None, word(big)),
        (3, token, balances.DEPOSIT, topic(b), None, None, word(5)),
        (3, token, balances.WITHDRAWAL, topic(b), None, None, word(2)),
        (4, token, balances.TRANSFER, topic(a), topic(b), topic("0x07"), "0x"),  # ERC-721 shape: ignored
    ], schema=["block_number", "address", "topic0", "topic1", "topic2", "topic3", "data"], orient="row")
    deltas = balances.token_deltas(logs, [a, b])
    rows, final = balances.fold(deltas, {(a, token): (1, big + 1), (b, token): (1, 0)})
    assert sorted(rows) == [(2, a, token, hex(1)), (2, b, token, hex(big)), (3, b, token, hex(big + 3))]
    assert final == {(a, token): 1, (b, token): big + 3}
    _, below_zero = balances.fold(deltas, {(a, token): (1, big - 1), (b, token): (2, 0)})
    assert below_zero == {(a, token): None, (b, token): 3}  # b starts after block 2: only block 3 counts
