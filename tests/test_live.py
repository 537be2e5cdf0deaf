"""Live trading on a real devnet: signed swaps, ledger = chain, risk checks, kill switch, dry run, chain-id
guard, replaced and dropped transactions, sends with no clear answer, node errors between decisions, reorgs
of booked swaps, and a key (or node URL) that never leaks.

The module runs its own devnet (same seed as the session one, so the same first 200 blocks), because it
mines blocks and moves pools, which the session devnet's users must not see. Each test trades from its own
dev account (24..39; the deployer is 0, the market uses 1..23), funded by the faucet in the fixture. The
chain moves between trader steps with `dn.run(1)`: the market mines the trader's transactions with its own.
Tests whose chain points depend on timing (the CLI's miner thread) come last.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import traceback
from dataclasses import replace

import polars as pl
import pytest
from eth_account import Account
from typer.testing import CliRunner

from chainlake.catalog import build_catalog, query
from chainlake.cli import app
from chainlake.devnet import Anvil, Devnet, dev_account
from chainlake.devnet.faucet import confirm, fund
from chainlake.devnet.rpc import Rpc, RpcError, encode_call
from chainlake.errors import ConfigError, NodeError
from chainlake.follow import follow_step
from chainlake.rpc import RpcClient
from rl.env import BUY, HOLD, SELL
from rl.live import Chain, LiveConfig, LiveTrader, guard_chain_id, node_origin, run_live
from rl.pipeline import AgentConfig, train
from rl.risk import KillSwitch, Order, RiskLimits, RiskState, check
from rl.trader import PolicyRunner
from rl.wallet import SigningError, Wallet, load_wallet

ACCOUNTS = {"policy": 30, "scripted": 31, "risk": 32, "kill": 33, "dry": 34, "replace": 35, "drop": 36,
            "leak": 37, "cli": 38, "loop": 39, "lost": 24, "unknown": 25, "exposure": 26, "flaky": 27,
            "reorg_gone": 28, "reorg_moved": 29}
FUNDS = {"WETH": 10, "USDC": 30_000}
CASH = {"USDC": 60_000}  # no WETH: a buy is not cut by the position sizing (half the value in base)
FUNDED = {"cli": CASH, "lost": CASH, "exposure": CASH}
WIDE = RiskLimits(max_slippage=0.05)  # the market (sandwich bot included) rarely moves a swap this far
SECRET_URL = "https://node.example.io:8443/v3/SECRETKEY123?apikey=SECRETKEY123"
SMALL = AgentConfig(walk_forward_folds=2, regime_test_rows=60)
DATASETS = ("blocks", "transactions", "logs")


def orders(rows):
    """The ledger's order rows (holds are logged as kind 'decision' rows)."""
    return [r for r in rows if r["kind"] != "decision"]


class Scripted:
    """A stand-in for `rl.trader.PolicyRunner` that plays given actions on WETH/USDC (no lake needed)."""

    name, version, stride = "scripted", "test", 1
    config = AgentConfig()

    def __init__(self, layout, actions):
        pool = layout.pools["WETH/USDC"]
        self.pool = pool.address
        self.base_token, self.quote_token = layout.tokens["WETH"].address, layout.tokens["USDC"].address
        self.base_symbol, self.quote_symbol = "WETH", "USDC"
        self.base_is_token0 = pool.token0 == self.base_token
        self.base_decimals, self.quote_decimals = 18, 6
        self.actions = list(actions)

    def decision_block(self, head):
        return head + 1

    def features_at(self, block):
        return None

    def act(self, features, position_share, cash_share):
        return self.actions.pop(0) if self.actions else HOLD


@pytest.fixture(scope="module")
def dn():
    with Devnet(seed=7) as node:
        node.run(200)
        hashes = [h for who, i in ACCOUNTS.items()
                  for h in fund(node.url, node.layout, dev_account(i)[0], FUNDED.get(who, FUNDS))]
        node.run(1)
        confirm(node.url, hashes)
        yield node


def trader(dn, who, actions, lake=None, echo=None, **config):
    address, key = dev_account(ACCOUNTS[who])
    t = LiveTrader(dn.url, Wallet(key), Scripted(dn.layout, actions), dn.layout.router, lake,
                   LiveConfig(follow=False, **config), echo=echo or (lambda line: None))
    t.start()
    return t


def trade(dn, t, blocks):
    """Let `t` decide, then mine a block with the market, `blocks` times; one last step books the last block."""
    for _ in range(blocks):
        dn.run(1)
        t.step()


def on_chain(dn, t):
    with Rpc(dn.url) as rpc:
        return t.chain.balances(t.tokens, t.address, int(rpc.call("eth_blockNumber"), 16))


def sql(lake, statement):
    """Rows of `statement` against a fresh catalog of `lake` (so `live_ledger` is one of its views)."""
    catalog = lake.parent / f"{lake.name}.duckdb"
    build_catalog(lake, catalog)
    return [tuple(r.values()) for r in query(statement, catalog, lake).to_pylist()]


def nonce(dn, address, tag="pending"):
    with Rpc(dn.url) as rpc:
        return int(rpc.call("eth_getTransactionCount", address, tag), 16)


def test_scripted_swaps_are_mined_and_the_ledger_equals_the_chain(dn, tmp_path):
    t = trader(dn, "scripted", [SELL, HOLD, BUY, SELL], lake=tmp_path / "lake")
    start = on_chain(dn, t)
    trade(dn, t, 6)
    rows = pl.read_parquet(t.ledger.path).filter(pl.col("kind") != "decision")
    assert rows.get_column("status").to_list() == ["mined", "mined", "mined"]
    assert rows.get_column("action").to_list() == ["sell", "buy", "sell"]
    base, quote, eth = on_chain(dn, t)
    assert (base - start[0]) / 1e18 == pytest.approx(rows.get_column("actual_base").sum(), abs=1e-12)
    assert (quote - start[1]) / 1e6 == pytest.approx(rows.get_column("actual_quote").sum(), abs=1e-9)
    assert (t.book.base, t.book.quote, t.book.eth) == (base, quote, eth)  # the ledger's book, to the wei
    assert rows.select(pl.col("recon_base", "recon_quote", "recon_eth").abs().max()).row(0) == (0.0, 0.0, 0.0)
    sells = rows.filter(pl.col("action") == "sell")
    assert (sells.get_column("actual_quote") >= sells.get_column("limit_quote")).all()  # amountOutMin held
    buy = rows.filter(pl.col("action") == "buy").row(0, named=True)
    assert -buy["actual_quote"] <= buy["limit_quote"] and buy["actual_base"] == buy["intended_base"]
    assert (rows.get_column("gas_eth") > 0).all() and rows.get_column("nonce").is_sorted()
    report = t.report()
    assert report.reconciled and report.statuses == {"mined": 3} and report.gas_eth > 0
    assert sql(tmp_path / "lake", "SELECT count(*) FROM live_ledger WHERE status = 'mined'") == [(3,)]
    assert (tmp_path / "lake" / "live_ledger" / f"{t.run_id}.meta.json").exists()
    t.close()


def test_run_live_drives_the_chain_and_settles_what_is_in_flight(dn):
    address, key = dev_account(ACCOUNTS["loop"])
    with Rpc(dn.url) as rpc:  # take the faucet's router approval back: the trader must approve first
        token = dn.layout.tokens["USDC"].address
        rpc.call("eth_sendTransaction", {"from": address, "to": token, "gas": hex(60_000),
                                         "data": encode_call("approve(address,uint256)", dn.layout.router, 0)})
    dn.run(1)
    lines: list[str] = []
    report = run_live(dn.url, Wallet(key), Scripted(dn.layout, [SELL]), dn.layout.router, None, blocks=1,
                      config=LiveConfig(follow=False), echo=lines.append, advance=lambda: dn.run(1))
    assert report.statuses == {"mined": 1} and report.in_flight == 0 and report.reconciled
    approve, swap = orders(report.rows)
    assert approve["kind"] == "approve" and approve["status"] == "mined" and approve["action"] == f"approve {token}"
    assert swap["nonce"] == approve["nonce"] + 1 and swap["mined_block"] == approve["mined_block"] + 1
    assert report.last_head == report.first_head + 2  # the decision's head, then the block that mined it
    assert report.gas_eth > 0 and report.pnl < report.end_equity - report.start_equity  # net of gas
    assert "balances reconciled" in lines[-1]
    assert node_origin("https://mainnet.example.io/v3/SECRET?key=abc") == "https://mainnet.example.io"


def test_oversize_orders_are_blocked_and_nothing_is_sent(dn, tmp_path):
    limits = RiskLimits(max_notional=1_000.0, max_slippage=0.05)
    t = trader(dn, "risk", [SELL, SELL], lake=tmp_path, limits=limits)  # 5 WETH each, ~15k USDC
    before = nonce(dn, t.address)
    trade(dn, t, 3)
    rows = pl.read_parquet(t.ledger.path).filter(pl.col("kind") != "decision")
    assert rows.get_column("status").to_list() == ["blocked:max_notional", "blocked:max_notional"]
    assert rows.get_column("tx_hash").null_count() == 2 and nonce(dn, t.address) == before
    t.close()
    position = trader(dn, "risk", [BUY], limits=RiskLimits(max_position=FUNDS["WETH"] - 1))
    trade(dn, position, 1)
    assert [r["status"] for r in orders(position.ledger.rows)] == ["blocked:max_position"]
    assert nonce(dn, position.address) == before
    position.close()


@pytest.mark.parametrize("order, state, limits, rule", [
    (Order(1.0, 3000.0, 0.001), RiskState(0.0, 0.0), RiskLimits(), None),
    (Order(1.0, 3000.0, 0.001), RiskState(0.0, 0.0, killed=True), RiskLimits(), "kill_switch"),
    (Order(-1.0, 3000.0, 0.001), RiskState(5.0, 0.0), RiskLimits(max_notional=2999.0), "max_notional"),
    (Order(1.0, 3000.0, 0.001), RiskState(4.5, 0.0), RiskLimits(max_position=5.0), "max_position"),
    (Order(-1.0, 3000.0, 0.001), RiskState(9.0, 0.0), RiskLimits(max_position=5.0), None),  # sells reduce risk
    (Order(1.0, 3000.0, 0.02), RiskState(0.0, 0.0), RiskLimits(max_slippage=0.01), "max_slippage"),
    (Order(1.0, 3000.0, 0.001), RiskState(0.0, -101.0), RiskLimits(daily_loss=100.0), "daily_loss"),
    (Order(1.0, 3000.0, 0.001), RiskState(0.0, -99.0), RiskLimits(daily_loss=100.0), None),
    (Order(-1.0, 3000.0, 0.001), RiskState(2.0, -101.0), RiskLimits(daily_loss=100.0), None),  # selling out
])
def test_risk_rules(order, state, limits, rule):
    assert check(order, state, limits) == rule


def test_bad_risk_limits_are_refused():
    with pytest.raises(ConfigError, match="max_slippage"):
        RiskLimits(max_slippage=1.5)
    with pytest.raises(ConfigError, match="max_notional"):
        RiskLimits(max_notional=-1)


def test_kill_file_stops_new_orders_within_one_block_and_in_flight_ones_are_followed(dn, tmp_path):
    kill_file = tmp_path / "STOP"
    t = LiveTrader(dn.url, Wallet(dev_account(ACCOUNTS["kill"])[1]), Scripted(dn.layout, [BUY] + [SELL] * 10),
                   dn.layout.router, tmp_path, LiveConfig(follow=False), KillSwitch(kill_file), lambda line: None)
    t.start()
    dn.run(1)
    t.step()  # sends the buy
    assert [r["status"] for r in orders(t.ledger.rows)] == ["sent"]
    sent_nonce = t.nonce
    kill_file.touch()
    trade(dn, t, 3)
    assert [r["status"] for r in orders(t.ledger.rows)] == ["mined"]  # followed after the trip, nothing new
    assert t.killed_at == t.head - 2 and t.nonce == sent_nonce == nonce(dn, t.address)
    assert t.report().killed == f"kill file {kill_file}" and t.report().reconciled
    t.close()


def test_kill_signal_trips_the_switch_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGUSR1)
    with KillSwitch() as kill:
        assert not kill.tripped()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert kill.wait(2.0) and kill.reason == "signal SIGUSR1"
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C after the trip: out at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_dry_run_prints_the_transaction_and_sends_nothing(dn, tmp_path):
    lines: list[str] = []
    address, key = dev_account(ACCOUNTS["dry"])
    t = trader(dn, "dry", [SELL, BUY], lake=tmp_path, echo=lines.append, dry_run=True)
    before = nonce(dn, address)
    trade(dn, t, 3)
    dry = [line for line in lines if "would send" in line]
    assert len(dry) == 2 and "swapExactTokensForTokens(amountIn=" in dry[0] and "swapTokensForExactTokens" in dry[1]
    assert f"nonce={before}" in dry[0] and f"from={address}" in dry[0] and "chainId=31337" in dry[0]
    assert [r["status"] for r in orders(t.ledger.rows)] == ["dry_run", "dry_run"]
    assert nonce(dn, address) == before and on_chain(dn, t)[:2] == (t.book.base, t.book.quote)
    assert all(key[2:] not in line for line in lines)
    t.close()


def test_chain_id_guard_refuses_other_chains_without_the_flag(dn):
    guard_chain_id(31337, LiveConfig())
    guard_chain_id(1, LiveConfig(dry_run=True))
    with pytest.raises(ConfigError, match="--allow-chain-id 1"):
        guard_chain_id(1, LiveConfig())
    key = dev_account(ACCOUNTS["leak"])[1]
    with Anvil(chain_id=4242) as other:
        refused = LiveTrader(other.url, Wallet(key), Scripted(dn.layout, []), dn.layout.router, None,
                             LiveConfig(follow=False), echo=lambda line: None)
        with pytest.raises(ConfigError, match="chain id is 4242"):
            refused.start()
        allowed = LiveTrader(other.url, Wallet(key), Scripted(dn.layout, []), dn.layout.router, None,
                             LiveConfig(follow=False, allow_chain_id=4242), echo=lambda line: None)
        with pytest.raises(Exception) as past_the_guard:  # a bare node has no router: the next check fails
            allowed.start()
        assert "chain id" not in str(past_the_guard.value)
        with Rpc(other.url) as rpc:
            assert rpc.call("txpool_status")["pending"] == "0x0"
        refused.close(), allowed.close()


def test_a_replaced_transaction_is_detected_and_its_replacement_booked(dn, tmp_path):
    address, key = dev_account(ACCOUNTS["replace"])
    t = trader(dn, "replace", [BUY], lake=tmp_path)
    dn.run(1)
    t.step()
    (row,) = orders(t.ledger.rows)
    replacement = Account.from_key(key).sign_transaction({
        "type": 2, "chainId": 31337, "nonce": row["nonce"], "to": Account.from_key(key).address, "value": 0,
        "gas": 21_000, "maxFeePerGas": 200 * 10**9, "maxPriorityFeePerGas": 5 * 10**9, "data": "0x"})
    with Rpc(dn.url) as rpc:
        replaced_by = rpc.call("eth_sendRawTransaction", replacement.raw_transaction.to_0x_hex())
    trade(dn, t, 2)
    (row,) = orders(t.ledger.rows)
    assert row["status"] == "replaced" and row["replaced_by"] == replaced_by
    assert row["actual_base"] == 0 and row["gas_eth"] == pytest.approx(21_000 * 1e-18 * int(
        t.chain.receipt(replaced_by)["effectiveGasPrice"], 16))
    assert t.report().reconciled and t.nonce == nonce(dn, address)
    t.close()


def test_a_dropped_transaction_is_detected_and_its_nonce_reused(dn, tmp_path):
    address, _ = dev_account(ACCOUNTS["drop"])
    t = trader(dn, "drop", [BUY, BUY, SELL], lake=tmp_path, drop_after_blocks=2)
    dn.run(1)
    t.step()
    first = orders(t.ledger.rows)[0]
    with Rpc(dn.url) as rpc:
        rpc.call("anvil_dropTransaction", first["tx_hash"])
    dn.run(1)
    t.step()  # gone, but only one block old: still in flight, and the next decision waits for it
    assert [r["status"] for r in orders(t.ledger.rows)] == ["sent", "blocked:in_flight"]
    trade(dn, t, 3)
    # two blocks after sending it is dropped, and the same step's decision (the sell) goes out with its nonce
    assert [r["status"] for r in orders(t.ledger.rows)] == ["dropped", "blocked:in_flight", "mined"]
    assert orders(t.ledger.rows)[2]["nonce"] == first["nonce"]  # the dropped nonce is used again
    assert t.report().reconciled and nonce(dn, address, "latest") == first["nonce"] + 1
    t.close()


def shown(exc: BaseException) -> str:
    """All a traceback of `exc` can show: message, chained exceptions and every frame's locals (the
    test's own frame, which holds the key, left out)."""
    return "".join(traceback.TracebackException(type(exc), exc, exc.__traceback__.tb_next,
                                                capture_locals=True).format())


def test_the_key_never_leaks(dn, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _, key = dev_account(ACCOUNTS["leak"])
    digits = key[2:]
    errors = []

    def refused(exc):
        assert exc.__context__ is None and exc.__cause__ is None  # no library exception (nor its frames) kept
        errors.extend([str(exc), shown(exc)])

    secp_order = "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    for bad in (key[:-1], key + "00", "0x" + "g" * 64, secp_order):
        with pytest.raises(ConfigError) as exc:
            Wallet(bad)
        refused(exc.value)
    assert secp_order[2:] not in shown(exc.value)  # an invalid key is not shown either
    bad_file = tmp_path / "key.txt"
    bad_file.write_text(f"private key: {key}\n")
    with pytest.raises(ConfigError) as exc:
        load_wallet(bad_file)
    refused(exc.value)
    binary_file = tmp_path / "key.bin"
    binary_file.write_bytes(key.encode() + b"\xff")
    with pytest.raises(ConfigError, match="ASCII") as exc:
        load_wallet(binary_file)
    refused(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_wallet(tmp_path / "missing.txt")
    refused(exc.value)
    good_file = tmp_path / "good.txt"
    good_file.write_text(key + "\n")
    good_file.chmod(0o600)
    wallet = load_wallet(good_file)
    assert key[2:] not in repr(wallet) + str(wallet) and wallet.address in repr(wallet)
    with pytest.raises(SigningError) as exc:  # eth_account's frames below hold the key
        wallet.sign({"to": wallet.address, "chainId": 31337, "nonce": "not a number", "gas": 21_000, "value": 0})
    refused(exc.value)
    with pytest.raises(TypeError):
        __import__("pickle").dumps(wallet)
    lines: list[str] = []
    t = LiveTrader(dn.url, wallet, Scripted(dn.layout, [SELL]), dn.layout.router, tmp_path / "lake",
                   LiveConfig(follow=False), echo=lines.append)
    t.start()
    t.nonce = 0  # long used: the node rejects the swap ("nonce too low")
    trade(dn, t, 1)
    (row,) = orders(t.ledger.rows)
    assert row["status"] == "rejected" and row["error"] and t.nonce == nonce(dn, wallet.address)
    t.close()
    written = "".join(p.read_bytes().hex() + p.read_text(errors="replace")
                      for p in (tmp_path / "lake").rglob("*") if p.is_file())
    texts = errors + lines + [caplog.text, capsys.readouterr().out, written, row["error"]]
    for text in texts:
        assert digits not in text.lower() and digits.upper() not in text


@pytest.fixture(scope="module")
def policy_lake(dn, tmp_path_factory):
    """The module devnet in a lake (followed, features built) and every learner trained on it."""
    lake = tmp_path_factory.mktemp("live_lake") / "lake"
    with RpcClient(dn.url) as client:
        follow_step(client, dn.url, lake, datasets=DATASETS, partition_size=100)
    models = lake.parent / "models"
    train(lake, SMALL, models)
    return lake, models


def test_a_stored_policy_trades_live_on_the_followed_lake(dn, policy_lake, tmp_path):
    lake, models = policy_lake
    runner = PolicyRunner(lake, "sarsa", models_dir=models)
    assert runner.pool == dn.layout.pools["WETH/USDC"].address
    address, key = dev_account(ACCOUNTS["policy"])
    unfollowable = LiveTrader(dn.url, Wallet(key), runner, dn.layout.router, lake, LiveConfig(), echo=print)
    with pytest.raises(ConfigError, match="balances"):  # every raw dataset by default: balances need addresses
        unfollowable.start()
    unfollowable.close()
    config = LiveConfig(follow_options={"datasets": DATASETS})
    with LiveTrader(dn.url, Wallet(key), runner, dn.layout.router, lake, config, echo=lambda line: None) as t:
        t.start()
        start = on_chain(dn, t)
        for _ in range(6):
            t.step()  # follows the lake to the head, then decides for the next block
            dn.run(1)
        t.step(decide=False)  # books the last block, sends nothing new
        rows = pl.DataFrame(orders(t.report().rows))
        assert t.head == t.first_head + 6 and rows.height >= 1
        mined = rows.filter(pl.col("status") == "mined")
        assert mined.height >= 1 and set(rows.get_column("status")) <= {"mined", "blocked:in_flight"}
        assert (rows.get_column("decision_block") > t.first_head).all()
        base, quote, eth = on_chain(dn, t)
        assert (t.book.base, t.book.quote, t.book.eth) == (base, quote, eth) and t.report().reconciled
        assert (base - start[0]) / 1e18 == pytest.approx(mined.get_column("actual_base").sum(), abs=1e-12)
        assert nonce(dn, address, "latest") - rows.get_column("nonce").min() == mined.height


def lose_answer(t, send: bool = True, error: Exception | None = None) -> None:
    """`t`'s next eth_sendRawTransaction gets no answer (an httpx timeout becomes a NodeError naming the
    node's URL); with `send`, the node has the transaction anyway."""
    real = t.chain.send_raw

    def flaky(raw):
        t.chain.send_raw = real
        if send:
            real(raw)
        raise error or NodeError(f"cannot reach {SECRET_URL}: timed out")

    t.chain.send_raw = flaky


def no_secret(texts) -> bool:
    return all("SECRETKEY" not in (text or "") for text in texts)


def test_a_send_whose_answer_is_lost_is_followed_and_counts_against_the_limits(dn):
    """The node got the swap but its answer timed out: in flight, mined, booked; the next buy sees it."""
    lines: list[str] = []
    t = trader(dn, "lost", [BUY, BUY], echo=lines.append, limits=replace(WIDE, max_position=7.0))
    lose_answer(t)
    trade(dn, t, 4)
    rows = orders(t.ledger.rows)
    assert [r["status"] for r in rows if r["kind"] == "swap"] == ["mined", "blocked:max_position"]
    swap = [r for r in rows if r["kind"] == "swap"][0]
    assert swap["tx_hash"] and "timed out" in swap["error"] and "https://node.example.io:8443" in swap["error"]
    base, quote, eth = on_chain(dn, t)
    assert (t.book.base, t.book.quote, t.book.eth) == (base, quote, eth) and t.report().reconciled
    assert base / 1e18 <= 7.0 and not t.in_flight
    assert no_secret(lines + [r["error"] for r in rows])
    t.close()


@pytest.mark.parametrize("error", ["transport", "already known"])
def test_a_send_with_no_clear_answer_is_followed_until_it_is_dropped(dn, error):
    """The send's answer is lost (and so is the look-up), or the node says "already known" without having
    it: the swap is in flight as "unknown", blocks the next one, and is dropped later; its nonce is reused."""
    t = trader(dn, "unknown", [SELL, SELL, SELL], drop_after_blocks=2, limits=WIDE)
    start_nonce = t.nonce
    lose_answer(t, send=False, error=RpcError("eth_sendRawTransaction", {"code": -32000, "message": "already known"})
                if error == "already known" else None)
    if error == "transport":  # the look-up fails too: nothing is known
        real = t.chain.transaction
        t.chain.transaction = lambda tx_hash: (setattr(t.chain, "transaction", real),
                                               (_ for _ in ()).throw(NodeError("timed out")))[1]
    dn.run(1)
    t.step()
    (row,) = orders(t.ledger.rows)
    assert row["status"] == "unknown" and row["nonce"] == start_nonce and len(t.in_flight) == 1
    trade(dn, t, 3)
    assert [r["status"] for r in orders(t.ledger.rows)] == ["dropped", "blocked:in_flight", "mined"]
    assert orders(t.ledger.rows)[2]["nonce"] == start_nonce  # the nonce the unknown send held is used
    assert t.report().reconciled and nonce(dn, t.address, "latest") == start_nonce + 1
    t.close()


def test_the_limits_see_the_chain_and_a_lasting_mismatch_trips_the_kill_switch(dn):
    """WETH arrives that no transaction of ours explains: the buy is checked against what the chain holds
    (not the ledger's 0), and the mismatch, still there at the next head with nothing in flight, kills."""
    lines: list[str] = []
    t = trader(dn, "exposure", [BUY, HOLD, BUY], echo=lines.append,
               limits=replace(WIDE, max_position=7.0))
    weth = dn.layout.tokens["WETH"].address
    with Rpc(dn.url) as rpc:
        rpc.call("eth_sendTransaction", {"from": dn.layout.deployer, "to": weth, "gas": hex(60_000),
                                         "data": encode_call("transfer(address,uint256)", t.address, 4 * 10**18)})
    dn.run(1)
    t.step()  # 4 WETH on chain, 0 in the book: a 5 WETH buy would hold 9 > 7
    assert [r["status"] for r in orders(t.ledger.rows) if r["kind"] == "swap"] == ["blocked:max_position"]
    assert len(t.mismatches) == 1 and not t.kill.tripped()
    dn.run(1)
    t.step()  # the same difference at a second head, nothing in flight
    assert t.kill.reason == "reconciliation mismatch" and t.killed_at == t.head
    dn.run(1)
    t.step()  # killed: the last buy is never decided
    assert [r["status"] for r in orders(t.ledger.rows) if r["kind"] == "swap"] == ["blocked:max_position"]
    assert t.report().killed == "reconciliation mismatch" and not t.report().reconciled
    assert any("kill switch (reconciliation mismatch)" in line for line in lines)
    t.close()


def test_node_errors_outside_the_decision_are_retried_then_stop_the_run(dn, tmp_path, monkeypatch):
    """Following fails at two heads (the swap is booked at the third), then at every head: the run stops
    after `max_failed_heads`, with its report, the ledger written and the swap still in flight listed."""
    address, key = dev_account(ACCOUNTS["flaky"])
    failing = {"heads": 0}
    real_receipt = Chain.receipt

    def receipt(self, tx_hash):
        if failing["heads"]:
            raise NodeError(f"cannot reach {SECRET_URL}: connection refused")
        return real_receipt(self, tx_hash)

    def advance():
        failing["heads"] = max(failing["heads"] - 1, 0)
        dn.run(1)

    def echo(line):
        lines.append(line)
        if "sent swap" in line:  # two failing heads after the first swap, then for good
            failing["heads"] = 3 if sum("sent swap" in x for x in lines) == 1 else 10**6

    lines: list[str] = []
    monkeypatch.setattr(Chain, "receipt", receipt)
    report = run_live(dn.url, Wallet(key), Scripted(dn.layout, [SELL, HOLD, SELL]), dn.layout.router, tmp_path,
                      blocks=20, config=LiveConfig(follow=False, max_failed_heads=4, limits=WIDE), echo=echo,
                      advance=advance)
    failed = [line for line in lines if "cannot follow the transactions in flight" in line]
    assert len(failed) == 2 + 4 and "https://node.example.io:8443: connection refused" in failed[0]
    assert report.stopped == "node errors at 4 consecutive heads" and "stopped: node errors" in lines[-1]
    assert report.in_flight == 1 and report.statuses == {"mined": 1, "sent": 1}
    on_disk = pl.read_parquet(report.ledger_path).filter(pl.col("kind") == "swap")
    assert on_disk.get_column("status").to_list() == ["mined", "sent"]
    assert no_secret(lines + on_disk.get_column("error").to_list())


def reorg_last_block(dn, ours: str, place: str) -> int:
    """Replace the head block by one with the same market transactions, ours dropped ("gone") or first
    ("moved"); the market's nonces and clock are unchanged. The block's number."""
    with Rpc(dn.url) as rpc:
        block = rpc.call("eth_getBlockByNumber", "latest", False)
        raws = {h: rpc.call("eth_getRawTransactionByHash", h) for h in block["transactions"]}
        others = [raws[h] for h in block["transactions"] if h != ours]
        txs = ([raws[ours]] if place == "moved" else []) + others
        rpc.call("anvil_reorg", 1, [[raw, 0] for raw in txs])
        assert rpc.call("eth_getBlockByNumber", block["number"], False)["hash"] != block["hash"]
    return int(block["number"], 16)


@pytest.mark.parametrize("place", ["gone", "moved"])
def test_a_booked_swap_is_revisited_after_a_reorg(dn, place):
    """A mined swap's block is replaced: gone, its fills are reversed and it is in flight again (then
    dropped, its nonce reused); moved within the new block, it is re-booked from its new receipt."""
    lines: list[str] = []
    t = trader(dn, f"reorg_{place}", [SELL], echo=lines.append, drop_after_blocks=2, limits=WIDE)
    dn.run(1)
    t.step()
    dn.run(1)
    t.step()
    (row,) = orders(t.ledger.rows)
    assert row["status"] == "mined" and row["mined_block"] == t.head
    number = reorg_last_block(dn, row["tx_hash"], place)
    dn.run(1)
    t.step()
    (row,) = orders(t.ledger.rows)
    assert (t.book.base, t.book.quote, t.book.eth) == on_chain(dn, t) and t.report().reconciled
    if place == "gone":
        assert row["status"] == "reorged" and row["mined_block"] is None and len(t.in_flight) == 1
        assert any(f"is no longer on the chain" in line for line in lines)
        trade(dn, t, 2)
        (row,) = orders(t.ledger.rows)
        assert row["status"] == "dropped" and t.nonce == row["nonce"] == nonce(dn, t.address)
    else:
        receipt = t.chain.receipt(row["tx_hash"])
        assert row["status"] == "mined" and row["mined_block"] == number and not t.in_flight
        assert receipt["transactionIndex"] == "0x0" and any("re-booked after a reorg" in line for line in lines)
    assert (t.book.base, t.book.quote, t.book.eth) == on_chain(dn, t) and t.report().reconciled
    t.close()


def test_the_cli_trades_a_stored_policy_until_the_kill_file(dn, policy_lake, tmp_path):
    """`buy_and_hold` (a baseline with the trained settings, so it buys at once) through the CLI; the kill
    file appears once the ledger holds a mined swap and a logged hold, and the run stops at the next head."""
    lake, models = policy_lake
    address, key = dev_account(ACCOUNTS["cli"])
    key_file = tmp_path / "key"
    key_file.write_text(key)
    key_file.chmod(0o600)
    kill_file = tmp_path / "STOP"
    start = nonce(dn, address, "latest")
    stop = threading.Event()

    def ledger() -> list[dict]:
        rows = []
        for path in (lake / "live_ledger").glob("*.parquet"):
            rows += pl.read_parquet(path).filter(pl.col("address") == address).to_dicts()
        return rows

    def mine():  # the chain moves while the command runs
        for _ in range(60):
            if stop.wait(0.3):
                return
            dn.run(1)
            rows = ledger()
            if (any(r["kind"] == "swap" and r["status"] == "mined" for r in rows)
                    and any(r["kind"] == "decision" for r in rows)):
                kill_file.touch()

    miner = threading.Thread(target=mine)
    miner.start()
    try:
        result = CliRunner().invoke(app, [
            "live", "--policy", "buy_and_hold", "--rpc-url", dn.url, "--key-file", str(key_file), "--router",
            dn.layout.router, "--blocks", "30", "--kill-file", str(kill_file), "--lake", str(lake),
            "--models", str(models), "--max-slippage", "0.02", "--datasets", ",".join(DATASETS)])
    finally:
        stop.set()
        miner.join()
    assert result.exit_code == 0, result.output
    assert "balances reconciled" in result.output and "ledger: " in result.output
    assert key[2:] not in result.output
    first = int(re.search(r"chain 31337, head (\d+);", result.output).group(1))
    killed = int(re.search(r"block (\d+): kill switch \(kill file", result.output).group(1))
    swaps = sql(lake, f"SELECT status, decision_block, mined_block FROM live_ledger "
                      f"WHERE address = '{address}' AND kind = 'swap' ORDER BY decision_block")
    holds = sql(lake, f"SELECT status, decision_block FROM live_ledger WHERE address = '{address}' "
                      f"AND kind = 'decision'")
    assert holds and {s for s, _ in holds} == {"hold"}  # every decision is logged, holds too
    assert swaps[0][0] == "mined" and first < swaps[0][1] < min(b for _, b in holds)  # it bought first
    assert {s for s, _, _ in swaps} <= {"mined", "blocked:in_flight"}
    assert max(b for _, b, _ in swaps + [(s, b, None) for s, b in holds]) <= killed  # nothing decided after
    assert max(m for _, _, m in swaps if m is not None) < killed < first + 30  # the kill, not --blocks, ended it
    approvals = sql(lake, f"SELECT count(*) FROM live_ledger WHERE address = '{address}' AND kind = 'approve' "
                          f"AND status = 'mined'")[0][0]
    assert nonce(dn, address, "latest") == start + approvals + sum(s == "mined" for s, _, _ in swaps)
