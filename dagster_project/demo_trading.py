"""The demo's last act: short paper-trading and live-trading runs on the devnet, after training.

Paper: the learned policy with the most holdout trades, and the momentum baseline as a control (the learned
policies mostly hold on the devnet: no edge after costs), side by side on the same new blocks while the market
mines one block every few seconds (`chainlake paper`'s library call). Live: the momentum baseline, signing real
router swaps from a fresh dev account funded with the paper run's capital, the chain stepped one block per
head (`chainlake live`'s library call). Each run is then set beside the backtester on exactly the blocks it
traded, so the table reads "what the backtest says" next to "what paper / live did".
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.table import Table

from chainlake.config import default_tracked
from chainlake.devnet import Devnet, dev_account
from chainlake.devnet.faucet import confirm, fund

PAPER_BLOCKS = 12
LIVE_BLOCKS = 12
BLOCK_SECONDS = 3.0  # the market's pace during paper trading: room for a follow step and the decisions
TRADER_ACCOUNT = 30  # the market's agents use dev accounts 0..23
LIVE_POLICY = "momentum"


def most_active_policy(catalog_path: Path, lake_dir: Path) -> str:
    """The learned policy with the most trades on the holdout (ties: the first in training order)."""
    from chainlake.catalog import query
    from rl.pipeline import POLICIES

    names = ", ".join(f"'{p}'" for p in POLICIES)
    rows = query(f"select policy, n_trades from backtest_results where fold_kind = 'holdout' and policy in ({names})",
                 catalog_path, lake_dir).to_pylist()
    trades = {r["policy"]: r["n_trades"] for r in rows}
    return max(POLICIES, key=lambda p: (trades.get(p, 0), -POLICIES.index(p)))


def write_key_file(path: Path, key: str) -> Path:
    """The devnet trader's key in a git-ignored file readable by its owner only (how `--key-file` wants it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(key + "\n")
    return path


def paper_runs(dn: Devnet, lake_dir: Path, models: Path, policies: list[str], follow_options: dict, console):
    from rl.paper import run_papers

    miner = threading.Thread(target=dn.market.run, args=(PAPER_BLOCKS + 4,), kwargs={"block_time": BLOCK_SECONDS},
                             daemon=True)
    miner.start()
    try:
        return run_papers(lake_dir, dn.url, policies, blocks=PAPER_BLOCKS, models_dir=models, confirmations=12,
                          timeout=(PAPER_BLOCKS + 4) * BLOCK_SECONDS * 2, **follow_options)
    finally:
        miner.join()


def live_run(dn: Devnet, lake_dir: Path, models: Path, capital: float, follow_options: dict, console):
    from rl.live import LiveConfig, run_policy_live
    from rl.trader import PolicyRunner
    from rl.wallet import load_wallet

    runner = PolicyRunner(lake_dir, LIVE_POLICY, models_dir=models)
    address, key = dev_account(TRADER_ACCOUNT)
    key_file = write_key_file(Path("warehouse") / "devnet-trader.key", key)
    del key
    hashes = fund(dn.url, dn.layout, address, {runner.quote_symbol: capital})
    dn.run(1)
    confirm(dn.url, hashes)
    console.print(f"live: account {address} funded with {capital:,.2f} {runner.quote_symbol} (key in {key_file})")
    return run_policy_live(lake_dir, dn.url, LIVE_POLICY, load_wallet(key_file), dn.layout.router, models_dir=models,
                           blocks=LIVE_BLOCKS, advance=lambda: dn.run(1), echo=console.print,
                           config=LiveConfig(follow_options=follow_options))


def backtest_row(lake_dir: Path, models: Path, policy: str, blocks: list[int], capital: float) -> dict | None:
    """The backtester's metrics on the decisions in `blocks` (None when the lake cannot backtest them yet)."""
    from chainlake.errors import ConfigError
    from rl.paper import backtest_window
    from rl.trader import PolicyRunner

    if not blocks:
        return None
    try:
        result = backtest_window(PolicyRunner(lake_dir, policy, models_dir=models), min(blocks), max(blocks), capital)
    except ConfigError:
        return None
    m = result.metrics
    return {"decisions": result.n_steps, "trades": m["n_trades"], "pnl": m["pnl_net"], "return": m["total_return"],
            "costs": m["fees_paid"] + m["gas_paid"], "blocks": f"{result.blocks[0]}-{result.blocks[-2]}"}


def comparison(lake_dir: Path, models: Path, papers, live) -> Table:
    table = Table("run", "policy", "blocks", "decisions", "trades", "P&L (quote)", "return", "fees + gas",
                  title="paper and live trading beside the backtest on the same blocks")

    def add(run: str, policy: str, row: dict | None) -> None:
        if row is None:
            table.add_row(run, policy, "-", "-", "-", "-", "-", "-")
            return
        costs = row["costs"] if isinstance(row["costs"], str) else f"{row['costs']:,.4f}"
        table.add_row(run, policy, row["blocks"], str(row["decisions"]), str(row["trades"]), f"{row['pnl']:+,.4f}",
                      f"{row['return']:+.4%}", costs)

    for report in papers:
        s, ledger = report.summary, report.ledger
        blocks = ledger.get_column("decision_block").to_list()
        policy = ledger.get_column("policy")[0] if ledger.height else "?"
        add("paper", policy, {"decisions": s["decisions"], "trades": s["trades"], "pnl": s["pnl"], "return": s["return"],
                              "costs": s.get("fees", 0.0) + s.get("gas", 0.0),
                              "blocks": f"{min(blocks)}-{max(blocks)}" if blocks else "-"} if blocks else None)
        add("backtest", policy, backtest_row(lake_dir, models, policy, blocks, report.capital))
    if live is not None:
        decided = [r["decision_block"] for r in live.rows if r.get("decision_block") is not None]
        swaps = sum(1 for r in live.rows if r["kind"] == "swap" and r["status"] in ("mined", "replaced"))
        add("live", LIVE_POLICY, {"decisions": len(decided), "trades": swaps, "pnl": live.pnl,
                                  "return": live.pnl / live.start_equity if live.start_equity else 0.0,
                                  "costs": f"{live.gas_eth:.6f} ETH gas",
                                  "blocks": f"{min(decided)}-{max(decided)}" if decided else "-"})
        add("backtest", LIVE_POLICY, backtest_row(lake_dir, models, LIVE_POLICY, decided, live.start_equity))
    return table


def trading_demo(dn: Devnet, lake_dir: Path, catalog_path: Path, console) -> Table:
    """Paper runs, then a live run, then the comparison table (the catalog rebuilt so both ledgers show)."""
    from chainlake.catalog import build_catalog
    from dagster_project.resources import AgentSettings

    models = AgentSettings().models
    addresses, tokens = default_tracked([], [], dn.url)
    follow_options = {"datasets": ["blocks", "transactions", "logs", "traces", "balances"],
                      "addresses": addresses, "tokens": tokens}
    learned = most_active_policy(catalog_path, lake_dir)
    papers = paper_runs(dn, lake_dir, models, [learned, LIVE_POLICY], follow_options, console)
    for report in papers:
        console.print(report.text())
    live = live_run(dn, lake_dir, models, papers[-1].capital, follow_options, console)
    build_catalog(lake_dir, catalog_path)
    return comparison(lake_dir, models, papers, live)
