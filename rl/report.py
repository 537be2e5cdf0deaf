"""Backtest report: an equity-curve + drawdown PNG (for Dagster metadata) and a markdown results table.

Plots go through matplotlib's Agg canvas directly (no pyplot, no global figure state, no display).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rl.backtest import BacktestResult
from rl.metrics import drawdown_curve

TABLE_COLUMNS = ("policy", "split", "total_return", "annualized_return", "sharpe", "sortino", "max_drawdown",
                 "var_95", "cvar_95", "turnover", "hit_rate", "n_trades", "fees_paid", "gas_paid", "slippage_paid",
                 "pnl_net", "pnl_gross")


def _items(results) -> list[tuple[str, BacktestResult]]:
    if isinstance(results, BacktestResult):
        return [(results.name, results)]
    if isinstance(results, Mapping):
        return [(k if isinstance(k, str) else "/".join(map(str, k)), r) for k, r in results.items()]
    return [(r.name, r) for r in results]


def equity_png(results: BacktestResult | Mapping | Sequence[BacktestResult], title: str | None = None,
               gross: bool = True, dpi: int = 100) -> bytes:
    """PNG bytes: equity curves (net solid, gross of fees and gas dotted) over drawdowns, by block."""
    items = _items(results)
    fig = Figure(figsize=(9, 6), dpi=dpi)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for label, r in items:
        (line,) = top.plot(r.blocks, r.equity, label=label, linewidth=1.2)
        if gross:
            top.plot(r.blocks, r.equity_gross, linestyle=":", linewidth=1.0, color=line.get_color())
        drawdown = drawdown_curve(r.equity) * 100
        bottom.plot(r.blocks, drawdown, color=line.get_color(), linewidth=1.0)
        bottom.fill_between(r.blocks, drawdown, 0, color=line.get_color(), alpha=0.12)
    top.set_ylabel("value (quote)")
    top.set_title(title or (f"Backtest of pool {items[0][1].pool[:10]}…" if items else "Backtest"))
    top.grid(alpha=0.3)
    if items:
        top.legend(loc="best", fontsize=8, title="net (solid) / gross (dotted)" if gross else None, title_fontsize=8)
    bottom.set_ylabel("drawdown (%)")
    bottom.set_xlabel("block")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    return str(value)


def markdown_table(table: pl.DataFrame, columns: Sequence[str] | None = TABLE_COLUMNS) -> str:
    """A GitHub-style markdown table of the results (the given columns that exist; None: all)."""
    cols = [c for c in (columns or table.columns) if c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in table.select(cols).iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(results: pl.DataFrame):
    """The out-of-sample comparison as a rich Table (what `make demo` and `chainlake backtest` print): each
    policy and baseline on the holdout test blocks, its mean return over the retrained walk-forward folds,
    and its return in the bull->bear and bear->bull folds. Sorted by holdout return."""
    from rich.table import Column, Table

    holdout = results.filter(pl.col("fold_kind") == "holdout")
    folds = (results.filter(pl.col("fold_kind") != "holdout").group_by("policy", "fold_kind")
             .agg(pl.col("total_return").mean()))
    fold = {(r["policy"], r["fold_kind"]): r["total_return"] for r in folds.iter_rows(named=True)}
    span = (f"holdout blocks {holdout.get_column('first_block').min()}-{holdout.get_column('last_block').max()}"
            if holdout.height else "no holdout rows")
    table = Table(Column("policy", no_wrap=True), "holdout", "sharpe", "max dd", "trades", "costs", "P&L gross",
                  "P&L net", "walk-fwd", "bull>bear", "bear>bull",
                  title=f"out of sample ({span}; returns; fold columns: policies retrained per fold)")

    def pct(value, sign: bool = True) -> str:
        return "-" if value is None else f"{value:+.2%}" if sign else f"{value:.2%}"

    for r in holdout.sort("total_return", descending=True).iter_rows(named=True):
        costs = r["fees_paid"] + r["gas_paid"] + r["slippage_paid"]
        table.add_row(r["policy"], pct(r["total_return"]), f"{r['sharpe']:,.1f}", pct(r["max_drawdown"], False),
                      str(r["n_trades"]), f"{costs:,.1f}", f"{r['pnl_gross']:,.1f}", f"{r['pnl_net']:,.1f}",
                      *[pct(fold.get((r["policy"], kind))) for kind in ("walk_forward", "bull_to_bear", "bear_to_bull")])
    return table
