"""MEV tables: router calldata of pending swaps (`mempool_swaps`) and sandwich triples (`mev_sandwiches`).

Selectors are checked against keccak, the calldata decoder against `eth_abi.encode` (hypothesis), and both
tables against what the session devnet's market did: its sandwich bot's landed sandwiches, and the router
swaps it sent, decoded again from the included transactions with eth_abi.
"""

from __future__ import annotations

import eth_abi
import polars as pl
import pyarrow.parquet as pq
import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from chainlake.decode import abi, decode
from chainlake.decode.mempool_swaps import build_mempool_swaps, decode_mempool_swaps
from chainlake.decode.schemas import MEMPOOL_SWAPS, MEV_SANDWICHES
from chainlake.ingest import ingest, read_range
from chainlake.ingest.mempool import MempoolRecorder, build_mempool


def test_router_selectors_are_keccak_of_the_signatures():
    assert len(abi.ROUTER_SWAPS) == 9
    for selector, fn in abi.ROUTER_SWAPS.items():
        assert selector == fn.selector == "0x" + keccak(text=fn.signature)[:4].hex()
        types = fn.signature[fn.signature.index("(") + 1:-1].split(",")
        assert len(types) == len(fn.args)


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uints = st.integers(min_value=0, max_value=2**256 - 1)


def _mempool_row(data: str, value: int = 0) -> dict:
    return {"transaction_hash": "0x" + "11" * 32, "from_address": "0x" + "22" * 20, "nonce": 0,
            "to_address": "0x" + "33" * 20, "value": str(value), "value_f64": float(value), "input": data,
            "gas_price": 1, "max_priority_fee_per_gas": 1, "first_seen_ms": 0, "first_seen_head": 0, "last_seen_head": 0,
            "included_block": None, "included_index": None, "delay_blocks": None, "delay_seconds": None,
            "status": "pending"}


@pytest.mark.parametrize("fn", list(abi.ROUTER_SWAPS.values()), ids=lambda f: f.name)
@settings(max_examples=25, deadline=None)
@given(a=uints, b=uints, path=st.lists(addresses, min_size=2, max_size=4), to=addresses,
       deadline=st.integers(min_value=0, max_value=2**63 - 1), value=uints)
def test_calldata_decoder_inverts_eth_abi_encode(fn, a, b, path, to, deadline, value):
    types = fn.signature[fn.signature.index("(") + 1:-1].split(",")
    values = dict(zip(fn.args, [a, b] if len(fn.args) == 5 else [a]))
    args = [values.get(name) for name in fn.args]
    args[fn.args.index("path")], args[fn.args.index("recipient")] = path, to
    args[fn.args.index("deadline")] = deadline
    data = fn.selector + eth_abi.encode(types, args).hex()
    out = decode_mempool_swaps(pl.DataFrame([_mempool_row(data, value)], infer_schema_length=None)).to_dicts()
    assert len(out) == 1
    row = out[0]
    assert row["function"] == fn.name and row["path"] == path and row["recipient"] == to
    assert row["deadline"] == deadline and (row["token_in"], row["token_out"]) == (path[0], path[-1])
    if fn.value_as:
        values[fn.value_as] = value
    for amount in ("amount_in", "amount_out_min", "amount_out", "amount_in_max"):
        expected = values.get(amount)
        assert row[f"{amount}_raw"] == (None if expected is None else str(expected)), amount
    assert row["exact_in"] == ("amount_in" in values)


def test_malformed_calldata_is_skipped():
    fn = abi.ROUTER_SWAPS["0x38ed1739"]
    good = fn.selector + eth_abi.encode(["uint256", "uint256", "address[]", "address", "uint256"],
                                        [1, 2, ["0x" + "aa" * 20, "0x" + "bb" * 20], "0x" + "cc" * 20, 3]).hex()
    bad_offset = good[:10] + good[10:138] + "0" * 62 + "41" + good[202:]   # path offset not 32-aligned
    truncated = good[:-64]                                                   # last path item cut off
    dirty_address = good[:10 + 64 * 3] + "f" * 24 + good[10 + 64 * 3 + 24:]  # recipient not zero-padded
    frame = pl.DataFrame([_mempool_row(d) for d in (good, bad_offset, truncated, dirty_address, "0x38ed17", "0x")],
                         infer_schema_length=None)
    out = decode_mempool_swaps(frame)
    assert out.height == 1 and out["amount_in_raw"].to_list() == ["1"]


# -- the session devnet -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mev_lake(devnet, tmp_path_factory):
    lake = tmp_path_factory.mktemp("mev") / "lake"
    recorder = MempoolRecorder(lake)
    for snap in devnet.mempool:
        recorder.observe(snap.txpool_content, snap.block_number - 1, snap.wall_time)
    recorder.flush()
    stop = devnet.last_block + 1
    ingest(devnet.url, f"0:{stop}", ["blocks", "transactions", "logs"], lake, partition_size=100)
    build_mempool(lake)
    decode(lake, f"0:{stop}", ["dex_swaps", "mev_sandwiches"], rpc_url=devnet.url)
    return lake


def test_devnet_sandwiches_are_the_bots_landed_sandwiches(devnet, mev_lake):
    rows = read_range(mev_lake, "mev_sandwiches", 0, devnet.last_block)
    assert pq.read_schema(next((mev_lake / "mev_sandwiches").rglob("*.parquet"))).remove_metadata() == MEV_SANDWICHES
    assert rows.select("block_number", "front_log_index", "victim_log_index").is_unique().all()
    # The market counts a sandwich as landed when front, victim and back are in one block, in that order, and
    # all three succeeded; a reverted leg emits no Swap log, so the table finds exactly those. The bot brackets
    # one victim per block, so there is one row per sandwich.
    sandwiches = rows.unique("front_transaction_hash")
    assert sandwiches.height == rows.height == devnet.summary.sandwiches_landed > 0
    assert (rows["victims"] == 1).all()
    bot = devnet.layout.agents_of("sandwich")[0]
    assert set(rows["attacker"]) == {bot} and set(rows["attacker_recipient"]) == {bot}
    assert bot not in set(rows["victim_from"])
    assert ((rows["front_transaction_index"] < rows["victim_transaction_index"])
            & (rows["victim_transaction_index"] < rows["back_transaction_index"])).all()
    # The back-run sells what the front-run's amountOutMin was, never more than it bought.
    assert (rows["back_sold_amount_raw"].cast(pl.Int128) <= rows["front_bought_amount_raw"].cast(pl.Int128)).all()
    exact = rows["back_bought_amount_raw"].cast(pl.Int128) - rows["front_sold_amount_raw"].cast(pl.Int128)
    assert (rows["profit_raw"].cast(pl.Int128) == exact).all()
    # The bot only fires with a modelled profit >= $25; most land in profit (slippage left to the back-run).
    assert (rows["profit_raw"].cast(pl.Int128) > 0).sum() >= 0.8 * rows.height
    assert (rows["gas_cost_wei"].cast(pl.Int128) > 0).all() and rows["profit"].is_not_null().all()
    txs = read_range(mev_lake, "transactions", 0, devnet.last_block)
    by_hash = {r["transaction_hash"]: r for r in txs.to_dicts()}
    for row in rows.head(20).to_dicts():
        front, back = by_hash[row["front_transaction_hash"]], by_hash[row["back_transaction_hash"]]
        assert front["from_address"] == back["from_address"] == bot
        assert int(row["gas_cost_wei"]) == sum(t["gas_used"] * t["effective_gas_price"] for t in (front, back))


def test_devnet_mempool_swaps_match_the_included_calldata(devnet, mev_lake):
    table = build_mempool_swaps(mev_lake)
    assert table.schema == MEMPOOL_SWAPS
    assert pq.read_schema(mev_lake / "mempool_swaps" / "data.parquet").remove_metadata() == MEMPOOL_SWAPS
    swaps = pl.from_arrow(table)
    assert swaps["transaction_hash"].is_unique().all()
    router = devnet.layout.router
    txs = read_range(mev_lake, "transactions", 0, devnet.last_block)
    mempool = pl.read_parquet(mev_lake / "mempool" / "data.parquet")
    sent = txs.filter((pl.col("to_address") == router) & pl.col("input").str.slice(0, 10).is_in(list(abi.ROUTER_SWAPS))
                      & pl.col("transaction_hash").is_in(mempool["transaction_hash"].implode()))
    assert sent.height > 100
    assert set(swaps["transaction_hash"]) == set(sent["transaction_hash"])
    decoded = {r["transaction_hash"]: r for r in swaps.to_dicts()}
    for tx in sent.to_dicts():
        fn = abi.ROUTER_SWAPS[tx["input"][:10]]
        types = fn.signature[fn.signature.index("(") + 1:-1].split(",")
        values = dict(zip(fn.args, eth_abi.decode(types, bytes.fromhex(tx["input"][10:]))))
        if fn.value_as:
            values[fn.value_as] = int(tx["value"])
        row = decoded[tx["transaction_hash"]]
        assert row["function"] == fn.name and row["router"] == router
        for amount in ("amount_in", "amount_out_min", "amount_out", "amount_in_max"):
            assert row[f"{amount}_raw"] == (str(values[amount]) if amount in values else None)
        assert row["path"] == [a.lower() for a in values["path"]] and row["recipient"] == values["recipient"].lower()
        assert row["deadline"] == values["deadline"]
        assert row["status"] == "included" and row["included_block"] == tx["block_number"]
        assert row["delay_blocks"] == 1
    functions = set(swaps["function"])
    assert {"swapExactTokensForTokens", "swapTokensForExactTokens", "swapExactETHForTokens",
            "swapExactTokensForETH"} <= functions


def _trade(tx: int, sender: str, sold: str, bought: str, sold_amount: int, bought_amount: int, pool: str = "0xp",
           block: int = 1) -> dict:
    return {"block_number": block, "pool": pool, "transaction_hash": f"0x{block:02d}{tx:02d}", "transaction_index": tx,
            "log_index": tx, "token_sold": sold, "token_bought": bought, "tx_from": sender, "recipient": sender,
            "tx_to": "0xrouter", "token_sold_amount_raw": str(sold_amount), "token_sold_amount_raw_f64": float(sold_amount),
            "token_bought_amount_raw": str(bought_amount), "token_bought_amount_raw_f64": float(bought_amount)}


def test_sandwich_rule_on_synthetic_swaps():
    from chainlake.decode.sandwiches import find_sandwiches

    a, b = "0xa", "0xb"
    trades = pl.DataFrame([
        _trade(0, "0xatk", a, b, 100, 50),
        _trade(1, "0xv1", a, b, 1000, 400),
        _trade(2, "0xother", b, a, 50, 90),      # opposite direction, not the attacker: not a back-run
        _trade(3, "0xv2", a, b, 500, 150),
        _trade(4, "0xatk", b, a, 50, 130),       # back-run: sells what the front-run bought
        _trade(5, "0xatk", a, b, 10, 3),         # a later front-run with no victim and no back-run
        _trade(0, "0xatk", a, b, 100, 50, block=2),
        _trade(1, "0xatk", b, a, 50, 110, block=2),  # no victim in between: no sandwich
        _trade(0, "0xatk", a, b, 100, 50, block=3),
        _trade(1, "0xv", a, b, 100, 40, block=3),
        _trade(2, "0xatk", b, a, 20, 60, block=3),   # sells 40% of what it bought: not an unwind
        _trade(0, "0xatk", a, b, 100, 50, block=4),
        _trade(1, "0xv", a, b, 100, 40, pool="0xq", block=4),  # another pool
        _trade(2, "0xatk", b, a, 50, 120, block=4),
    ], infer_schema_length=None)
    out = find_sandwiches(trades).sort("victim_log_index")
    assert out["block_number"].to_list() == [1, 1]
    assert out["victim_tx_from"].to_list() == ["0xv1", "0xv2"] and out["victims"].to_list() == [2, 2]
    assert set(out["front_log_index"]) == {0} and set(out["back_log_index"]) == {4}
