"""The devnet and its market against a real anvil: determinism, realism of the activity, clean shutdown."""

from __future__ import annotations

import math
import socket
import statistics
from collections import Counter, defaultdict

import polars as pl
import pytest

from chainlake.devnet import Devnet, DevnetLayout, run_devnet
from chainlake.devnet.anvil import Anvil, dev_account
from chainlake.devnet.rpc import Rpc, event_topic
from chainlake.errors import ConfigError

SWAP = event_topic("Swap(address,uint256,uint256,uint256,uint256,address)")
TOPICS = {
    "Swap": SWAP,
    "Sync": event_topic("Sync(uint112,uint112)"),
    "Mint": event_topic("Mint(address,uint256,uint256)"),
    "Burn": event_topic("Burn(address,uint256,uint256,address)"),
    "Transfer": event_topic("Transfer(address,address,uint256)"),
    "Approval": event_topic("Approval(address,address,uint256)"),
    "Deposit": event_topic("Deposit(address,uint256)"),
    "Withdrawal": event_topic("Withdrawal(address,uint256)"),
}


def _block_hashes(url: str, last: int) -> list[str]:
    with Rpc(url) as rpc:
        return [b["hash"] for b in rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(last + 1)])]


def test_same_seed_gives_same_chain(tmp_path):
    runs = []
    for _ in range(2):
        with Devnet(seed=11, txs_per_block=8) as dn:
            summary = dn.run(25, truth_path=tmp_path / "truth.parquet")
            runs.append(_block_hashes(dn.url, summary.last_block))
    assert runs[0] == runs[1]
    assert len(runs[0]) > 25
    with Devnet(seed=12, txs_per_block=8) as dn:
        summary = dn.run(25)
        other = _block_hashes(dn.url, summary.last_block)
    assert other[: dn.layout.deploy_block + 1] == runs[0][: dn.layout.deploy_block + 1]  # deployment does not depend on seed
    assert other[-1] != runs[0][-1]
    truth = pl.read_parquet(tmp_path / "truth.parquet")
    assert truth.height == 25 * 4 and set(truth["regime"]) <= {"bull", "bear", "calm"}


def test_market_produces_dex_activity(devnet):
    first, last = devnet.block_range
    with Rpc(devnet.url) as rpc:
        logs = rpc.call("eth_getLogs", {"fromBlock": hex(first), "toBlock": hex(last)})
    counts = Counter(log["topics"][0] for log in logs if log["topics"])
    for name, topic in TOPICS.items():
        assert counts[topic] > 0, f"no {name} events in blocks {first}..{last}"
    pools = {p.address for p in devnet.layout.pools.values()}
    assert {log["address"] for log in logs if log["topics"][0] == SWAP} == pools
    assert counts[SWAP] > (last - first) * 3


def test_summary_counts(devnet):
    s = devnet.summary
    assert s.blocks == s.last_block - s.first_block + 1
    assert set(s.txs_sent) >= {"noise", "arb", "lp", "transfer", "wrap", "approve", "sandwich"}
    assert s.txs_succeeded["transfer"] == s.txs_sent["transfer"]
    assert s.txs_succeeded["noise"] > 0.8 * s.txs_sent["noise"]
    assert s.pending_left == 0
    assert s.sandwiches_landed >= 1


def test_every_block_holds_the_mempool_it_was_shown(devnet):
    """Observers see the mempool right before each block; that block then holds exactly those txs."""
    snaps = devnet.mempool
    assert [s.block_number for s in snaps] == list(range(devnet.first_block, devnet.last_block + 1))
    with Rpc(devnet.url) as rpc:
        for snap in snaps[:: max(1, len(snaps) // 10)]:
            pending = {tx["hash"] for by_nonce in snap.txpool_content["pending"].values() for tx in by_nonce.values()}
            block = rpc.call("eth_getBlockByNumber", hex(snap.block_number), False)
            assert set(block["transactions"]) == pending


def test_sandwich_lands_in_order_in_one_block(devnet):
    bot = devnet.layout.agents_of("sandwich")[0]
    with Rpc(devnet.url) as rpc:
        blocks = rpc.batch([("eth_getBlockReceipts", [hex(n)]) for n in range(devnet.first_block, devnet.last_block + 1)])
    found = 0
    for receipts in blocks:
        swaps = []  # (tx index, sender, pool, sold token0?) of successful swaps
        for r in receipts:
            for log in r["logs"]:
                if r["status"] == "0x1" and log["topics"][0] == SWAP:
                    amount0_in = int(log["data"][2:66], 16)
                    swaps.append((int(r["transactionIndex"], 16), r["from"], log["address"], amount0_in > 0))
        bot_swaps = [s for s in swaps if s[1] == bot]
        for front, back in zip(bot_swaps, bot_swaps[1:]):
            victims = [s for s in swaps if front[0] < s[0] < back[0] and s[2] == front[2] and s[1] != bot]
            if front[2] == back[2] and front[3] != back[3] and any(v[3] == front[3] for v in victims):
                found += 1
    assert found >= 1
    assert found <= devnet.summary.sandwiches_attempted


def test_arbitrage_keeps_pools_near_reference(devnet):
    by_pool = defaultdict(list)
    for row in devnet.summary.truth:
        by_pool[row["pool"]].append(abs(math.log(row["pool_price"] / row["ref_price"])))
    assert set(by_pool) == set(devnet.layout.pools)
    for pool, deviations in by_pool.items():
        deviations.sort()
        assert statistics.median(deviations) < 0.01, pool
        assert deviations[int(0.9 * len(deviations))] < 0.03, pool


def test_layout_round_trips_and_uses_lowercase_hex(devnet, tmp_path):
    path = devnet.layout.to_json(tmp_path / "layout.json")
    assert DevnetLayout.from_json(path) == devnet.layout
    layout = devnet.layout
    addresses = [layout.router, layout.factory, layout.deployer, *layout.agents.values()]
    addresses += [t.address for t in layout.tokens.values()]
    addresses += [a for p in layout.pools.values() for a in (p.address, p.token0, p.token1)]
    assert all(a == a.lower() and a.startswith("0x") and len(a) == 42 for a in addresses)
    assert layout.tokens["USDC"].decimals == 6 and layout.tokens["WETH"].decimals == 18
    assert len(layout.pools) >= 3
    assert dev_account(0)[0] == layout.deployer and dev_account(1)[0] == layout.agents["noise_0"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_anvil_is_stopped_after_the_context_exits(tmp_path, capsys):
    with Devnet(seed=1) as dn:
        port = dn.anvil.port
        process = dn.anvil.process
        assert _port_open(port)
    assert process.poll() is not None
    assert not _port_open(port)

    summary = run_devnet(port=None, blocks=3, seed=1, layout_path=tmp_path / "layout.json", txs_per_block=5)
    out = capsys.readouterr().out
    assert "http://127.0.0.1:" in out and str(tmp_path / "layout.json") in out
    assert summary.blocks == 3
    port = int(out.split("http://127.0.0.1:")[1].split()[0])
    assert not _port_open(port)


def test_a_busy_port_is_refused_not_shared(anvil):
    """Starting on a port another node already serves must fail, not deploy onto that node."""
    with pytest.raises(ConfigError, match=f"port {anvil.port} .* in use"):
        Anvil(port=anvil.port).start()


def test_unsigned_devnet_runs_the_same_market_without_signatures():
    """signed=False: same senders and activity, transactions impersonated (r = s = 0)."""
    with Devnet(seed=11, txs_per_block=5, signed=False) as unsigned, Devnet(seed=11, txs_per_block=5) as signed:
        a, b = unsigned.run(20), signed.run(20)
        assert a.txs_sent == b.txs_sent and a.sandwiches_landed == b.sandwiches_landed
        with Rpc(unsigned.url) as rpc_u, Rpc(signed.url) as rpc_s:
            block_u = rpc_u.call("eth_getBlockByNumber", hex(a.last_block), True)
            block_s = rpc_s.call("eth_getBlockByNumber", hex(b.last_block), True)
    assert [t["from"] for t in block_u["transactions"]] == [t["from"] for t in block_s["transactions"]]
    assert all(int(t["r"], 16) == 0 for t in block_u["transactions"])
    assert all(int(t["r"], 16) != 0 for t in block_s["transactions"])
