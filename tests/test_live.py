"""Live trading on a real devnet: signed swaps, ledger = chain, risk checks, kill switch, dry run, chain-id
guard, replaced and dropped transactions, and a key that never leaks.

The module runs its own devnet (same seed as the session one, so the same first 200 blocks), because it
mines blocks and moves pools, which the session devnet's users must not see. Each test trades from its own
dev account (30+; the market uses 0..23), funded by the faucet in the fixture. The chain moves between
trader steps with `dn.run(1)`: the market mines the trader's transactions with its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import polars as pl
import pytest
from eth_account import Account
from typer.testing import CliRunner

from chainlake.catalog import build_catalog, query
from chainlake.cli import app
from chainlake.devnet import Anvil, Devnet, dev_account
from chainlake.devnet.faucet import confirm, fund
from chainlake.devnet.rpc import Rpc, encode_call
from chainlake.errors import ConfigError
from chainlake.follow import follow_step
from chainlake.rpc import RpcClient
from rl.env import BUY, HOLD, SELL
from rl.live import LiveConfig, LiveTrader, guard_chain_id, node_origin, run_live
from rl.pipeline import AgentConfig, train
from rl.risk import KillSwitch, Order, RiskLimits, RiskState, check
from rl.trader import PolicyRunner
from rl.wallet import Wallet, load_wallet

ACCOUNTS = {"policy": 30, "scripted": 31, "risk": 32, "kill": 33, "dry": 34, "replace": 35, "drop": 36,
            "leak": 37, "cli": 38, "loop": 39}
FUNDS = {"WETH": 10, "USDC": 30_000}
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
        hashes = [h for i in ACCOUNTS.values() for h in fund(node.url, node.layout, dev_account(i)[0], FUNDS)]
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


def test_the_key_never_leaks(dn, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _, key = dev_account(ACCOUNTS["leak"])
    digits = key[2:]
    errors = []
    for bad in (key[:-1], key + "00", "0x" + "g" * 64):
        with pytest.raises(ConfigError) as exc:
            Wallet(bad)
        errors.append(str(exc.value))
    bad_file = tmp_path / "key.txt"
    bad_file.write_text(f"private key: {key}\n")
    with pytest.raises(ConfigError) as exc:
        load_wallet(bad_file)
    errors.append(str(exc.value))
    with pytest.raises(ConfigError) as exc:
        load_wallet(tmp_path / "missing.txt")
    errors.append(str(exc.value))
    good_file = tmp_path / "good.txt"
    good_file.write_text(key + "\n")
    good_file.chmod(0o600)
    wallet = load_wallet(good_file)
    assert key[2:] not in repr(wallet) + str(wallet) and wallet.address in repr(wallet)
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


def test_the_cli_trades_a_stored_policy_until_the_kill_file(dn, policy_lake, tmp_path):
    lake, models = policy_lake
    address, key = dev_account(ACCOUNTS["cli"])
    key_file = tmp_path / "key"
    key_file.write_text(key)
    key_file.chmod(0o600)
    kill_file = tmp_path / "STOP"
    start = nonce(dn, address, "latest")
    stop = threading.Event()

    def mine():  # the chain moves while the command runs; after 6 blocks, the kill file
        for i in range(40):
            if stop.wait(0.4):
                return
            dn.run(1)
            if i == 6:
                kill_file.touch()

    miner = threading.Thread(target=mine)
    miner.start()
    try:
        result = CliRunner().invoke(app, [
            "live", "--policy", "sarsa", "--rpc-url", dn.url, "--key-file", str(key_file), "--router",
            dn.layout.router, "--blocks", "30", "--kill-file", str(kill_file), "--lake", str(lake),
            "--models", str(models), "--max-slippage", "0.02", "--datasets", ",".join(DATASETS)])
    finally:
        stop.set()
        miner.join()
    assert result.exit_code == 0, result.output
    assert "kill switch (kill file" in result.output and "balances reconciled" in result.output
    assert "ledger: " in result.output or "no orders" in result.output
    assert key[2:] not in result.output
    decisions = sql(lake, f"SELECT status FROM live_ledger WHERE address = '{address}' AND kind = 'decision'")
    ledger = sql(lake, f"SELECT status FROM live_ledger WHERE address = '{address}' AND kind = 'swap'")
    assert len(decisions) + len(ledger) >= 1 and {s for (s,) in decisions} <= {"hold"}  # every decision logged
    assert {s for (s,) in ledger} <= {"mined", "reverted", "blocked:in_flight", "blocked:max_slippage"}
    assert nonce(dn, address, "latest") == start + sum(s in ("mined", "reverted") for (s,) in ledger)
