"""The `chainlake` command line: thin wrappers over the library, one clear line for bad input.

Heavy imports (web3, dagster, polars) happen inside the commands so `chainlake --help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from chainlake.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CATALOG,
    DEFAULT_LAKE,
    DEFAULT_LAYOUT,
    DEFAULT_MAX_CONCURRENCY,
    default_tracked,
    resolve_rpc_url,
)
from chainlake.errors import ChainlakeError

app = typer.Typer(help="chainlake: an Ethereum data lake and feature store for DeFi trading agents.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


RpcUrl = typer.Option(None, "--rpc-url", help="JSON-RPC URL; default $ETH_RPC_URL, else the running devnet "
                                               "recorded in warehouse/devnet.json.")
Lake = typer.Option(DEFAULT_LAKE, "--lake", help="Lake folder (Parquet files).")
Catalog = typer.Option(None, "--catalog", help="DuckDB catalog file (default: chainlake.duckdb beside the "
                                                "lake folder, i.e. warehouse/chainlake.duckdb).")


def user_errors(fn):
    """Turn a ChainlakeError into `error: <message>` on stderr and exit code 2, without a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ChainlakeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    return wrapper


def catalog_for(lake: Path, catalog: Path | None) -> Path:
    """The catalog of a lake: the given file, else `chainlake.duckdb` in the lake's parent folder, so an
    ingest into another lake never rewrites the default catalog with that lake's views."""
    return catalog if catalog is not None else lake.parent / DEFAULT_CATALOG.name


def split_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def followed_datasets(datasets: str | None, addresses: list[str]) -> list[str]:
    """The raw datasets a trading loop follows: the given ones, else all (balances only when there are
    addresses to track, as `default_tracked` finds on the devnet)."""
    return split_list(datasets) or ["blocks", "transactions", "logs", "traces"] + (["balances"] if addresses else [])


@app.command()
@user_errors
def devnet(
    port: Optional[int] = typer.Option(None, help="Port on 127.0.0.1 (default: a free one)."),
    blocks: Optional[int] = typer.Option(None, min=1, help="Mine this many blocks of market activity, then stop "
                                                    "(default: run until Ctrl-C)."),
    block_time: Optional[float] = typer.Option(None, "--block-time", help="Seconds between blocks "
                                               "(default: mine as fast as possible)."),
    seed: int = typer.Option(7, help="Seed of the simulated market (same seed, same chain)."),
    txs_per_block: int = typer.Option(10, "--txs-per-block", help="Market transactions per block."),
    layout: Path = typer.Option(DEFAULT_LAYOUT, help="Where to write the URL and contract addresses."),
    keep_serving: bool = typer.Option(False, "--keep-serving", help="After --blocks, keep the node up "
                                      "(no more market) until Ctrl-C, to ingest it from another terminal."),
) -> None:
    """Start anvil with the simulated DEX market (tokens, pools, traders, arbitrageurs, LPs, a sandwich bot)."""
    from chainlake.devnet import run_devnet

    run_devnet(port=port, blocks=blocks, block_time=block_time, seed=seed,
               layout_path=layout, txs_per_block=txs_per_block, keep_serving=keep_serving)


@app.command()
@user_errors
def ingest(
    blocks: str = typer.Option(..., "--blocks", help="Block range START:END (END exclusive, like cryo); "
                                                     "END may be 'latest'."),
    datasets: str = typer.Option("blocks,transactions,logs,traces", "--datasets",
                                 help="Comma-separated datasets (see `chainlake datasets`)."),
    rpc_url: Optional[str] = RpcUrl,
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
    addresses: Optional[str] = typer.Option(None, help="balances: comma-separated addresses to track "
                                                       "(default on the devnet: its pools and agents)."),
    tokens: Optional[str] = typer.Option(None, help="balances: comma-separated ERC-20 tokens "
                                                    "(default on the devnet: its tokens)."),
    concurrency: int = typer.Option(DEFAULT_MAX_CONCURRENCY, min=1, help="Requests in flight at once."),
    rps: Optional[float] = typer.Option(None, "--rps", help="Requests-per-second limit (hosted nodes)."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1,
                                   help="Most JSON-RPC calls per batch request."),
) -> None:
    """Extract raw datasets for a block range into the Parquet lake, then refresh the DuckDB catalog."""
    from chainlake.catalog import build_catalog
    from chainlake.ingest import ingest as run_ingest

    url = resolve_rpc_url(rpc_url)
    watch_addresses, watch_tokens = default_tracked(split_list(addresses), split_list(tokens), url)
    report = run_ingest(url, blocks, split_list(datasets), lake,
                        addresses=watch_addresses, tokens=watch_tokens, progress=sys.stderr.isatty(),
                        max_concurrency=concurrency, requests_per_second=rps, batch_size=batch_size)
    build_catalog(lake, catalog_for(lake, catalog))
    typer.echo(report.summary())


@app.command()
@user_errors
def decode(
    blocks: str = typer.Option(..., "--blocks", help="Block range START:END (END exclusive, like cryo); "
                                                     "END may be 'latest' (the lake's last block)."),
    tables: Optional[str] = typer.Option(None, "--tables", help="Comma-separated decoded tables (default: all "
                                         "block-partitioned ones; see `chainlake.decode.TABLES`)."),
    rpc_url: Optional[str] = RpcUrl,
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
) -> None:
    """Decode raw logs already in the lake into the decoded tables (transfers, swaps, reserves, liquidity, sandwiches).

    The node is asked only for token and pool metadata not cached in the lake yet (eth_call)."""
    from chainlake.catalog import build_catalog
    from chainlake.decode import decode as run_decode

    report = run_decode(lake, blocks, split_list(tables) or None, rpc_url=rpc_url)
    build_catalog(lake, catalog_for(lake, catalog))
    typer.echo(report.summary())


@app.command()
@user_errors
def mempool(
    seconds: float = typer.Option(30.0, help="How long to watch."),
    interval: float = typer.Option(0.5, help="Seconds between txpool_content polls."),
    rpc_url: Optional[str] = RpcUrl,
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
) -> None:
    """Poll the node's txpool, record pending transactions, and rebuild the joined `mempool` table."""
    from chainlake.catalog import build_catalog
    from chainlake.ingest.mempool import build_mempool, watch
    from chainlake.rpc import RpcClient

    with RpcClient(resolve_rpc_url(rpc_url)) as client:
        recorder = watch(client, lake, seconds=seconds, interval=interval)
    table = build_mempool(lake)
    build_catalog(lake, catalog_for(lake, catalog))
    typer.echo(f"{recorder.snapshots} txpool snapshots; mempool table has {table.num_rows} transactions")


@app.command()
@user_errors
def sql(
    statement: str = typer.Argument(..., help="SQL over the catalog's views, e.g. \"select count(*) from logs\"."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json"),
    limit: int = typer.Option(50, help="Rows shown in table format."),
    catalog: Optional[Path] = Catalog,
    lake: Path = Lake,
) -> None:
    """Run SQL against warehouse/chainlake.duckdb (every dataset is a view)."""
    from chainlake.catalog import query

    table = query(statement, catalog_for(lake, catalog), lake)
    print_table(table, fmt, limit)


def print_table(table, fmt: str, limit: int) -> None:
    from chainlake.errors import ConfigError

    if fmt == "json":
        typer.echo(json.dumps(table.to_pylist(), default=str))
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, sys.stdout.buffer)
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        view = Table(*table.column_names, caption=f"{table.num_rows} rows")
        for row in table.slice(0, limit).to_pylist():
            view.add_row(*("" if v is None else str(v) for v in row.values()))
        Console().print(view)
    else:
        raise ConfigError(f"unknown format {fmt!r}: use table, csv or json")


@app.command()
@user_errors
def catalog(lake: Path = Lake, catalog: Optional[Path] = Catalog) -> None:
    """Rebuild the DuckDB catalog: one view per dataset in the lake."""
    from chainlake.catalog import build_catalog

    path = catalog_for(lake, catalog)
    for view in build_catalog(lake, path):
        typer.echo(f"{view.name:24s} {view.files:6d} files")
    typer.echo(f"catalog: {path}")


@app.command()
@user_errors
def datasets() -> None:
    """List the raw datasets, the RPC methods each needs, and their columns."""
    from chainlake.ingest import DATASETS

    for name, dataset in DATASETS.items():
        typer.echo(f"{name}: methods {', '.join(dataset.methods)}")
        for field in dataset.schema:
            typer.echo(f"    {field.name:28s} {field.type}")


@app.command()
@user_errors
def demo(
    blocks: int = typer.Option(3000, min=1, help="Blocks of market activity to mine."),
    seed: int = typer.Option(7, help="Market seed."),
    txs_per_block: int = typer.Option(10, "--txs-per-block"),
    partition_size: int = typer.Option(1000, "--partition-size", help="Blocks per lake partition."),
    no_trading: bool = typer.Option(False, "--no-trading", help="Skip the closing paper and live trading runs."),
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
) -> None:
    """Start the devnet, run the market, materialize every Dagster asset, paper- and live-trade, print a summary.

    The devnet is a new chain each time, so a lake left by an earlier devnet run is replaced."""
    from dagster_project.demo import run_demo

    run_demo(blocks=blocks, seed=seed, txs_per_block=txs_per_block, lake_dir=lake, catalog_path=catalog_for(lake, catalog),
             partition_size=partition_size, trading=not no_trading)


features_app = typer.Typer(help="Feature views (sql/*.sql, features/*.py): list, show, build, training frames.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")


@features_app.command("list")
@user_errors
def features_list(lake: Path = Lake) -> None:
    """Every registered feature view: kind, entity, TTL, what it reads, and whether it is built."""
    import pyarrow.parquet as pq

    from chainlake.features import load_registry, state_path

    for view in load_registry().views.values():
        path = state_path(lake, view)
        built = f"{pq.ParquetFile(path).metadata.num_rows:,} rows" if path.exists() else "not built"
        typer.echo(f"{view.name}  [{view.kind}, entity {view.entity}, ttl {view.ttl_blocks or '-'} blocks, "
                   f"{built}]  {view.source.name}")
        typer.echo(f"    {view.description}")
        typer.echo(f"    reads: {', '.join(view.reads)}")


@features_app.command("show")
@user_errors
def features_show(name: str = typer.Argument(..., help="A view name (feature_ prefix optional)."),
                  lake: Path = Lake, rows: int = typer.Option(5, help="Latest rows shown if built.")) -> None:
    """One view: its metadata, its source file, its columns and latest rows if built."""
    import polars as pl

    from chainlake.features import load_registry, state_path

    view = load_registry().get(name)
    for key, value in (("view", view.name), ("table", view.table), ("kind", view.kind), ("source", view.source),
                       ("entity", view.entity), ("event_time", view.event_time), ("ttl_blocks", view.ttl_blocks),
                       ("owner", view.owner), ("reads", ", ".join(view.reads)), ("description", view.description)):
        typer.echo(f"{key + ':':13s}{value}")
    typer.echo("")
    typer.echo(view.source.read_text().rstrip())
    path = state_path(lake, view)
    if path.exists():
        state = pl.read_parquet(path)
        typer.echo(f"\nbuilt: {state.height:,} rows in {path}")
        for column, dtype in state.schema.items():
            typer.echo(f"    {column:32s} {dtype}")
        print_table(state.sort(view.event_time, view.entity).tail(rows).to_arrow(), "table", rows)
    else:
        typer.echo(f"\nnot built in {lake}: chainlake features build {view.name}")


@features_app.command("build")
@user_errors
def features_build(
    names: Optional[list[str]] = typer.Argument(None, help="Views to build (default: all); the views they read "
                                                           "are built too."),
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
    check: bool = typer.Option(False, "--check", help="Also run the causality check on each view."),
) -> None:
    """Compute the views' state tables into the lake, then refresh the catalog (views feature_<name>).

    Every view is computed before any is written: an error leaves the lake as it was."""
    from chainlake.catalog import build_catalog
    from chainlake.errors import ConfigError
    from chainlake.features import build_features, lake_causality_check, load_registry

    registry = load_registry()
    reports = build_features(lake, names or None, registry)
    for report in reports:
        typer.echo(report.summary())
    build_catalog(lake, catalog_for(lake, catalog))
    if check:
        failed = []
        for report in reports:
            outcome = lake_causality_check(lake, report.view)
            typer.echo(("ok    " if outcome.passed else "FAIL  ") + outcome.description)
            failed += [] if outcome.passed else [report.view.name]
        if failed:
            raise ConfigError(f"look-ahead in {', '.join(failed)}")


@features_app.command("frame")
@user_errors
def features_frame(
    features: Optional[str] = typer.Option(None, help="Comma-separated views or view:column (default: all views)."),
    stride: int = typer.Option(1, help="One row per pool every this many blocks."),
    pools: Optional[str] = typer.Option(None, help="Comma-separated pool addresses (default: all)."),
    out: Optional[Path] = typer.Option(None, help="Parquet file (default: LAKE/training_frame/data.parquet)."),
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
) -> None:
    """Build a point-in-time training frame over the pool-block grid and write it as Parquet."""
    from chainlake.catalog import build_catalog
    from chainlake.features.frames import build_training_frame

    frame, path = build_training_frame(lake, split_list(features) or None, stride=stride,
                                       pools=split_list(pools) or None, out=out)
    typer.echo(f"training frame: {frame.height:,} rows x {len(frame.columns)} columns -> {path}")
    if out is None:
        build_catalog(lake, catalog_for(lake, catalog))


def agent_config(pool: str | None, stride: int, latency: int, folds: int, seed: int):
    from rl.pipeline import AgentConfig
    from rl.tabular import LearnConfig

    return AgentConfig(pool=pool, stride=stride, latency_blocks=latency, walk_forward_folds=folds,
                       learn=LearnConfig(seed=seed))


Pool = typer.Option(None, "--pool", help="Pool address (default: the most liquid pool quoted in a stablecoin).")
Models = typer.Option(Path("warehouse/models"), "--models", help="Folder of versioned policies.")
Stride = typer.Option(1, "--stride", min=1, help="Blocks between decisions.")
Latency = typer.Option(1, "--latency", min=0, help="Blocks between a decision and its trade landing (<= stride).")
Folds = typer.Option(3, "--folds", min=1, help="Walk-forward folds in the backtest.")
Seed = typer.Option(0, "--seed", help="Seed of every learner and of the random baseline.")


@app.command()
@user_errors
def train(pool: Optional[str] = Pool, stride: int = Stride, latency: int = Latency, seed: int = Seed,
          lake: Path = Lake, models: Path = Models) -> None:
    """Train every policy (supervised, linear, tabular DP, Q-learning, SARSA) on the holdout split's train
    rows and store each as a new version under warehouse/models/."""
    from rl.pipeline import train as train_policies

    result = train_policies(lake, agent_config(pool, stride, latency, 3, seed), models)
    market = result.episode.market
    typer.echo(f"pool {market.pool} ({market.base_symbol}/{market.quote_symbol}), {len(result.episode)} decisions; "
               f"split {result.split.as_dict()}")
    for name, stored in result.stored.items():
        report = result.report.get(name, {})
        facts = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()
                          if isinstance(v, (int, float, bool)))
        typer.echo(f"policy_{name} {stored.version}: {facts}")
    tabular = result.report.get("tabular", {})
    for method in ("policy_iteration", "value_iteration"):
        if isinstance(tabular.get(method), dict):
            typer.echo(f"    {method}: {json.dumps(tabular[method], default=str)}")


@app.command()
@user_errors
def backtest(pool: Optional[str] = Pool, stride: int = Stride, latency: int = Latency, folds: int = Folds,
             seed: int = Seed, as_json: bool = typer.Option(False, "--json", help="Every result row as JSON."),
             no_folds: bool = typer.Option(False, "--no-folds", help="Only the holdout test (no retrained folds)."),
             lake: Path = Lake, catalog: Optional[Path] = Catalog, models: Path = Models) -> None:
    """Backtest the stored policies and the baselines out of sample; write table backtest_results and the
    equity chart; print the comparison."""
    from chainlake.catalog import build_catalog
    from rl.pipeline import evaluate, write_results

    evaluation = evaluate(lake, agent_config(pool, stride, latency, folds, seed), models, folds=not no_folds)
    path, png = write_results(lake, evaluation, models)
    build_catalog(lake, catalog_for(lake, catalog))
    if as_json:
        typer.echo(json.dumps(evaluation.results.to_dicts(), default=str))
        return
    from rich.console import Console

    from rl.report import comparison_table

    Console(width=None if sys.stdout.isatty() else 140).print(comparison_table(evaluation.results))
    typer.echo(f"backtest_results: {evaluation.results.height} rows -> {path} (catalog view backtest_results)")
    typer.echo(f"equity chart: {png}")


@app.command()
@user_errors
def paper(
    policy: list[str] = typer.Option(..., "--policy", help="Policy to trade: a stored one (supervised, tabular, "
                                     "...) or a baseline (momentum, random, ...); repeat it to trade several side "
                                     "by side on the same blocks."),
    blocks: int = typer.Option(20, "--blocks", min=1, help="Stop after this many new blocks."),
    rpc_url: Optional[str] = RpcUrl,
    version: Optional[str] = typer.Option(None, help="Policy version (default: the latest)."),
    capital: Optional[float] = typer.Option(None, help="Starting quote balance (default: the trained "
                                                              "share of the pool's quote reserve)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Continue this saved paper run."),
    confirmations: int = typer.Option(12, min=0, help="Deepest reorg expected (as for `chainlake follow`)."),
    timeout: Optional[float] = typer.Option(None, help="Stop after this many seconds even if blocks stop coming."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Raw datasets the follow loop ingests (must "
                                           "include blocks; default: all, balances only where addresses are known)."),
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
    models: Path = Models,
) -> None:
    """Paper-trade a stored policy on new blocks: follow the head, decide for each next block, fill with the
    backtester's execution model, keep the ledger in table paper_ledger (running Sharpe, drawdown, VaR)."""
    from chainlake.catalog import build_catalog
    from rl.paper import run_papers

    url = resolve_rpc_url(rpc_url)
    addresses, tokens = default_tracked([], [], url)
    followed = followed_datasets(datasets, addresses)
    catalog_path = catalog_for(lake, catalog)

    def show(name: str, row: dict) -> None:
        fill = (f"{row['side']} {abs(row['base_delta']):.6g} @ {row['exec_price']:.6g} in block {row['exec_block']}"
                if row["traded"] else "no trade")
        timing = f", decided in {row['decision_ms']:.0f} ms" if row["decision_ms"] is not None else ""
        typer.echo(f"{name} block {row['decision_block']}: {fill}; equity {row['equity']:.4f}{timing}")

    try:
        reports = run_papers(lake, url, policy, blocks=blocks, models_dir=models, version=version, capital=capital,
                             run_id=run_id, confirmations=confirmations, timeout=timeout, on_row=show,
                             datasets=followed, addresses=addresses, tokens=tokens)
    except KeyboardInterrupt:
        typer.echo("stopped")
        return
    build_catalog(lake, catalog_path)
    for report in reports:
        typer.echo(report.text())
        typer.echo(f"paper_ledger: {report.ledger.height} rows -> {report.path} (catalog view paper_ledger)")


@app.command()
@user_errors
def follow(
    rpc_url: Optional[str] = RpcUrl,
    confirmations: int = typer.Option(12, min=0, help="Deepest reorg expected; deeper ones stop with an error."),
    interval: float = typer.Option(2.0, help="Seconds between catch-ups."),
    steps: Optional[int] = typer.Option(None, min=1, help="Stop after this many catch-ups (default: until Ctrl-C)."),
    no_features: bool = typer.Option(False, "--no-features", help="Do not rebuild the feature views each step."),
    datasets: str = typer.Option("blocks,transactions,logs,traces,balances", "--datasets",
                                 help="Comma-separated raw datasets to follow (must include blocks)."),
    addresses: Optional[str] = typer.Option(None, help="balances: comma-separated addresses to track "
                                                       "(default on the devnet: its pools and agents)."),
    tokens: Optional[str] = typer.Option(None, help="balances: comma-separated ERC-20 tokens "
                                                    "(default on the devnet: its tokens)."),
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
) -> None:
    """Follow the node's head: ingest and decode each new block, roll back reorged blocks, rebuild features.

    Blocks more than --confirmations below the head are final (recorded in LAKE/_follow.json); a reorg
    reaching them stops with an error and leaves the lake as it is."""
    from chainlake.catalog import build_catalog
    from chainlake.follow import follow as run_follow

    url = resolve_rpc_url(rpc_url)
    catalog_path = catalog_for(lake, catalog)
    watch_addresses, watch_tokens = default_tracked(split_list(addresses), split_list(tokens), url)

    def report(step) -> None:
        typer.echo(step.summary())
        if step.ingested or step.fork is not None:
            build_catalog(lake, catalog_path)

    try:
        run_follow(url, lake, confirmations=confirmations, interval=interval, steps=steps, on_step=report,
                   features=not no_features, datasets=split_list(datasets), addresses=watch_addresses,
                   tokens=watch_tokens)
    except KeyboardInterrupt:
        typer.echo("stopped")


def devnet_router(url: str, layout_path: Path = DEFAULT_LAYOUT) -> str | None:
    """The router of the devnet recorded in warehouse/devnet.json, when `url` is that devnet."""
    if not layout_path.exists():
        return None
    layout = json.loads(layout_path.read_text())
    return layout["router"] if layout.get("url") == url else None


@app.command()
@user_errors
def live(
    policy: str = typer.Option(..., "--policy", help="A trained policy (e.g. supervised or policy_supervised)."),
    rpc_url: Optional[str] = RpcUrl,
    key_file: Optional[Path] = typer.Option(None, "--key-file", help="File holding the signing key (hex); "
                                            "default: $CHAINLAKE_PRIVATE_KEY."),
    router: Optional[str] = typer.Option(None, "--router", help="Uniswap-V2-style router (default: the devnet's)."),
    blocks: Optional[int] = typer.Option(None, "--blocks", min=1, help="Stop after this many new blocks "
                                         "(default: until Ctrl-C or the kill file)."),
    max_position: Optional[float] = typer.Option(None, "--max-position", min=0, help="Most base held (base units)."),
    max_notional: Optional[float] = typer.Option(None, "--max-notional", min=0, help="Largest trade (quote units)."),
    max_slippage: float = typer.Option(0.01, "--max-slippage", min=0, max=0.99,
                                       help="Largest price impact and on-chain slippage bound (0.01 = 1%)."),
    daily_loss: Optional[float] = typer.Option(None, "--daily-loss", min=0, help="No more buys for the UTC day "
                                               "after losing this much (quote units); sells still go."),
    kill_file: Optional[Path] = typer.Option(None, "--kill-file", help="Creating this file stops new orders."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the transactions instead of sending them."),
    allow_chain_id: Optional[int] = typer.Option(None, "--allow-chain-id", help="Confirm sending on this chain "
                                                 "id (anything but the devnet's 31337 is refused without it)."),
    version: Optional[str] = typer.Option(None, "--policy-version", help="Policy version (default: the latest)."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Raw datasets followed into the lake each "
                                           "block (must include blocks; default: all, balances only where "
                                           "addresses are known)."),
    max_failed_heads: int = typer.Option(5, "--max-failed-heads", min=1, help="Stop after node errors at this "
                                         "many heads in a row (transactions in flight are followed until then)."),
    models: Path = Models,
    lake: Path = Lake,
    catalog: Optional[Path] = Catalog,
) -> None:
    """Trade a stored policy on the DEX with real signed swaps, risk checks, a kill switch and a ledger
    (table live_ledger): follow the head, reconcile on-chain balances, decide, check, sign and send."""
    from chainlake.errors import ConfigError
    from rl.live import LiveConfig, run_policy_live
    from rl.risk import RiskLimits
    from rl.wallet import load_wallet

    url = resolve_rpc_url(rpc_url)
    router = router or devnet_router(url)
    if router is None:
        raise ConfigError("no router given: pass --router (only the devnet's is known)")
    limits = RiskLimits(max_position=max_position, max_notional=max_notional, max_slippage=max_slippage,
                        daily_loss=daily_loss)
    addresses, tokens = default_tracked([], [], url)
    followed = followed_datasets(datasets, addresses)
    follow_options = {"datasets": followed, "addresses": addresses, "tokens": tokens}
    config = LiveConfig(limits=limits, dry_run=dry_run, allow_chain_id=allow_chain_id, follow_options=follow_options,
                        max_failed_heads=max_failed_heads)
    report = run_policy_live(lake, url, policy, load_wallet(key_file), router, version=version, models_dir=models,
                             blocks=blocks, config=config, kill_file=kill_file, echo=typer.echo)
    if report.ledger_path is not None:
        from chainlake.catalog import build_catalog

        build_catalog(lake, catalog_for(lake, catalog))
        typer.echo(f"ledger: {report.ledger_path} (catalog view live_ledger)")


if __name__ == "__main__":
    app()
