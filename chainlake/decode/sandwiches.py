"""mev_sandwiches: (front-run, victim, back-run) triples found in `dex_swaps`, with the attacker's profit.

The rule is mev-inspect-py's (flashbots/mev-inspect-py, `sandwiches.py`), written here as polars joins:
in one block and one pool,

1. a *front-run*: a swap by attacker A (its tx sender; A is also known by the swap's recipient);
2. one or more *victims*: swaps in the same direction (same token sold and bought) in later txs, by
   others (their tx sender is not A);
3. a *back-run*: the first later swap in the opposite direction by A (same tx sender, or same recipient
   when that recipient is not the router the tx went through), after at least one victim, whose sold
   amount is within BACK_TOLERANCE of what the front-run bought (the attacker unwinds its position).

A back-run closes the latest front-run it matches, so each back-run (and each front-run) appears in one
sandwich. There is one row per victim; sandwich-level columns (profit, gas, `victims`) repeat on each of
its rows: aggregate them over distinct `front_transaction_hash`.

Profit is measured in the token the front-run sold: back-run bought - front-run sold, exact (`profit_raw`,
signed) and decimal-adjusted (`profit`); `gas_cost_wei` is gas_used x effective_gas_price summed over the
front- and back-run txs (from `transactions`), exact. Swaps are the partition's `dex_swaps` rows, built
once per partition through `DecodeContext.once` (shared with the `dex_swaps` table when both are decoded),
so a sandwich is found only within one partition, which is always the case: the three legs share a block.
"""

from __future__ import annotations

import polars as pl

from chainlake.decode import swaps
from chainlake.decode.schemas import MEV_SANDWICHES
from chainlake.decode.table import DecodeContext, DecodedTable, adjusted
from chainlake.ingest.convert import ENGINE

BACK_TOLERANCE = 0.1  # |back sold - front bought| <= 10% of front bought
LEGS = ("front", "victim", "back")
_SWAP = ["transaction_hash", "transaction_index", "log_index", "token_sold", "token_bought", "tx_from", "recipient",
         "tx_to", "token_sold_amount_raw", "token_sold_amount_raw_f64", "token_bought_amount_raw",
         "token_bought_amount_raw_f64"]


def _leg(frame: pl.LazyFrame, leg: str) -> pl.LazyFrame:
    """block_number, pool and the swap columns prefixed `<leg>_` (amount columns shortened to sold/bought)."""
    renames = {c: f"{leg}_{c.replace('token_', '').replace('_amount_raw', '_raw')}" for c in _SWAP}
    return frame.select("block_number", "pool", *_SWAP).rename(renames)


def _int(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int128, strict=False)


def find_sandwiches(trades: pl.DataFrame) -> pl.DataFrame:
    """(front, victim, back) rows of `trades` (dex_swaps columns), one per victim, with leg columns
    `<leg>_transaction_hash`, `<leg>_transaction_index`, `<leg>_log_index`, `<leg>_sold_raw(_f64)`, ...

    One query (see `chainlake.decode.table.DecodeContext`)."""
    trades = trades.lazy()
    front, back, victim = _leg(trades, "front"), _leg(trades, "back"), _leg(trades, "victim")
    router_recipient = pl.col("front_recipient") == pl.col("front_tx_to")
    pairs = front.join(
        back, left_on=["block_number", "pool", "front_sold", "front_bought"],
        right_on=["block_number", "pool", "back_bought", "back_sold"], how="inner", coalesce=False,
    ).drop("block_number_right", "pool_right").filter(
        (pl.col("back_transaction_index") > pl.col("front_transaction_index"))
        & ((pl.col("back_tx_from") == pl.col("front_tx_from"))
           | ((pl.col("back_recipient") == pl.col("front_recipient")) & ~router_recipient))
        & ((pl.col("back_sold_raw_f64") - pl.col("front_bought_raw_f64")).abs()
           <= BACK_TOLERANCE * pl.col("front_bought_raw_f64")))
    triples = pairs.join(
        victim, left_on=["block_number", "pool", "front_sold", "front_bought"],
        right_on=["block_number", "pool", "victim_sold", "victim_bought"], how="inner", coalesce=False,
    ).drop("block_number_right", "pool_right").filter(
        (pl.col("victim_transaction_index") > pl.col("front_transaction_index"))
        & (pl.col("victim_transaction_index") < pl.col("back_transaction_index"))
        & (pl.col("victim_tx_from") != pl.col("front_tx_from"))
        & (pl.col("victim_tx_from") != pl.col("back_tx_from")))
    # mev-inspect: a front-run closes at its first back-run with a victim before it; a back-run closes one front-run
    first_back = pl.col("back_log_index") == pl.col("back_log_index").min().over("block_number", "front_log_index")
    triples = triples.filter(first_back)
    last_front = pl.col("front_log_index") == pl.col("front_log_index").max().over("block_number", "back_log_index")
    triples = triples.filter(last_front)
    victims = pl.len().over("block_number", "front_log_index").cast(pl.Int64).alias("victims")
    return triples.with_columns(victims).collect(engine=ENGINE)


def build(ctx: DecodeContext) -> pl.DataFrame:
    trades = ctx.once(swaps.TABLE.name, swaps.build)
    triples = find_sandwiches(trades)
    tokens = ctx.metadata.tokens(sorted(set(triples["front_sold"].to_list()) | set(triples["front_bought"].to_list())))
    # The rest is one query (see DecodeContext), but for the rare profits beyond Int128 after it
    gas = ctx.transactions.lazy().select(
        "transaction_hash",
        (pl.col("gas_used").cast(pl.UInt128) * pl.col("effective_gas_price").cast(pl.UInt128)).alias("gas_wei"))
    out = triples.lazy()
    for leg in ("front", "back"):
        out = out.join(gas.rename({"transaction_hash": f"{leg}_transaction_hash", "gas_wei": f"{leg}_gas"}),
                       on=f"{leg}_transaction_hash", how="left", maintain_order="left")
    protocols = trades.lazy().select("pool", "protocol").unique(subset="pool")
    out = out.join(protocols, on="pool", how="left", maintain_order="left")
    for side in ("sold", "bought"):
        out = out.join(tokens.lazy().select(pl.col("token").alias(f"front_{side}"),
                                            pl.col("decimals").alias(f"{side}_decimals"),
                                            pl.col("symbol").alias(f"token_{side}_symbol")),
                       on=f"front_{side}", how="left", maintain_order="left")
    profit = _int("back_bought_raw") - _int("front_sold_raw")
    out = out.with_columns(
        pl.col("front_tx_from").alias("attacker"), pl.col("front_recipient").alias("attacker_recipient"),
        pl.col("victim_tx_from").alias("victim_from"),
        pl.col("front_sold").alias("token_sold"), pl.col("front_bought").alias("token_bought"),
        profit.cast(pl.String).alias("profit_raw"),
        (pl.col("back_bought_raw_f64") - pl.col("front_sold_raw_f64")).alias("profit_raw_f64"),
        (pl.col("front_gas") + pl.col("back_gas")).cast(pl.String).alias("gas_cost_wei"),
        (pl.col("front_gas").cast(pl.Float64) + pl.col("back_gas").cast(pl.Float64)).alias("gas_cost_wei_f64"),
    ).with_columns(adjusted("profit_raw_f64", "sold_decimals").alias("profit"))
    renames = {f"{leg}_{side}_raw{suffix}": f"{leg}_{side}_amount_raw{suffix}"
               for leg in LEGS for side in ("sold", "bought") for suffix in ("", "_f64")}
    out = ctx.with_block_time(out.rename(renames))
    out = out.select(MEV_SANDWICHES.names).sort("block_number", "front_log_index", "victim_log_index")
    if not triples.height:  # no sandwich (most blocks): the table's columns, without running the query
        return pl.DataFrame(schema=out.collect_schema())
    out = out.collect(engine=ENGINE)
    if out["profit_raw"].null_count():  # amounts >= 2^127 (rare): exact Python over those sandwiches only
        wide = out.filter(pl.col("profit_raw").is_null())
        exact = [str(int(b) - int(f)) for b, f in zip(wide["back_bought_amount_raw"], wide["front_sold_amount_raw"])]
        rows = out.select(pl.col("profit_raw").is_null().arg_true()).to_series()
        out = out.with_columns(out["profit_raw"].scatter(rows, exact))
    return out


TABLE = DecodedTable(
    name="mev_sandwiches", schema=MEV_SANDWICHES, keys=("block_number", "front_log_index", "victim_log_index"),
    reads=("logs", "transactions", "blocks"), build=build,
    description="Sandwich attacks (mev-inspect-py's rule over dex_swaps): front-run, victim, back-run per row, "
                "attacker, profit in the front-run's sold token, gas paid.",
)
