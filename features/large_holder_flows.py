"""Large holders' balance changes in each pool's two tokens, per pool per block, point-in-time.

Balances are running sums of `erc20_transfers` (in minus out, exact integers of the raw amounts), so
they are balances *as seen from the lake's first block*: an address holding tokens before the lake
starts shows only the changes since (it may even look negative). A holder is *large at block b* when its
balance at the end of block b-1 (before the block's moves) is at least 1% of the token's total positive
balance then (the sum of positive balances, i.e. the supply seen so far, the zero address excluded), and
it is neither the zero address nor a pool (every address in `pools`: pools hold the reserves). Only
data of blocks < b decides who is large, and only block b's transfers are the flow.

History: 64 blocks. The balances reach back to the lake's first block, but only through the token ledger's
window rule (`chainlake.features.inputs.window`: the transfers before a window are carried as one transfer
per holder of its balance), so a window of 64 blocks gives the same rows as the whole lake.

Per pool per block: large_holder_net_flow_token0/1 (the large holders' summed balance change in the
block, decimal-adjusted), large_holder_moves (large holders of either token whose balance changed), and
the same net flows summed over blocks b-63..b. Dense grid, zeros when none. Amounts beyond int128 (not
a real token's) are skipped.
"""

import polars as pl

from chainlake.features import feature_view

ZERO_ADDRESS = "0x" + "0" * 40
LARGE_SHARE_PCT = 1  # percent of the token's total positive balance
WINDOW = 64
ZERO = pl.lit(0, pl.Int128)


def holder_moves(erc20_transfers: pl.LazyFrame, wanted: pl.LazyFrame) -> pl.LazyFrame:
    """(token, address, block_number): delta, balance before and after the block (exact int128)."""
    transfers = erc20_transfers.join(wanted, on="token", how="semi")
    amount = pl.col("amount_raw").cast(pl.Int128, strict=False)
    legs = pl.concat([
        transfers.select("token", "block_number", pl.col("from_address").alias("address"),
                         (ZERO - amount).alias("delta")),
        transfers.select("token", "block_number", pl.col("to_address").alias("address"), amount.alias("delta")),
    ]).filter(pl.col("address") != ZERO_ADDRESS)
    return (legs.group_by("token", "address", "block_number").agg(pl.col("delta").sum())
            .sort("token", "address", "block_number")
            .with_columns(pl.col("delta").cum_sum().over("token", "address").alias("after"))
            .with_columns((pl.col("after") - pl.col("delta")).alias("before")))


def positive_supply(moves: pl.LazyFrame) -> pl.LazyFrame:
    """(token, block_number): the total positive balance before the block (sum over addresses of max(b, 0))."""
    change = pl.max_horizontal("after", ZERO) - pl.max_horizontal("before", ZERO)
    return (moves.group_by("token", "block_number").agg(change.sum().alias("change"))
            .sort("token", "block_number")
            .with_columns((pl.col("change").cum_sum().over("token") - pl.col("change")).alias("supply_before")))


@feature_view(entity="pool", owner="research", ttl_blocks=64, history_blocks=WINDOW,
              description="Net balance change of >= 1% holders in the pool's tokens, per block and 64 blocks")
def large_holder_flows(pool_blocks: pl.LazyFrame, pool_reserves: pl.LazyFrame, pools: pl.LazyFrame,
                       tokens: pl.LazyFrame, erc20_transfers: pl.LazyFrame) -> pl.LazyFrame:
    pairs = pool_reserves.group_by("pool").agg(pl.col("token0").first(), pl.col("token1").first())
    wanted = pl.concat([pairs.select(pl.col(c).alias("token")) for c in ("token0", "token1")]).unique()
    moves = holder_moves(erc20_transfers, wanted)
    share_pct = pl.col("before").cast(pl.Float64) * 100  # compared in percent: no rounding of 0.01
    large = (moves.join(positive_supply(moves), on=["token", "block_number"])
             .join(pools.select(pl.col("pool").alias("address")), on="address", how="anti")
             .filter((pl.col("before") > 0) & (pl.col("delta") != 0)
                     & (share_pct >= LARGE_SHARE_PCT * pl.col("supply_before").cast(pl.Float64))))
    flows = (large.group_by("token", "block_number")
             .agg(pl.col("delta").sum().cast(pl.Float64).alias("net_raw"), pl.len().alias("moves"))
             .join(tokens.select("token", "decimals"), on="token", how="left")
             .select("token", "block_number", "moves",
                     (pl.col("net_raw") / pl.lit(10.0).pow(pl.col("decimals").cast(pl.Float64))).alias("net")))
    grid = pool_blocks.select("pool", "block_number").join(pairs, on="pool")
    for side in ("token0", "token1"):
        grid = grid.join(flows.rename({"token": side, "net": f"net_{side}", "moves": f"moves_{side}"}),
                         on=[side, "block_number"], how="left")
    grid = grid.with_columns(  # no large move: 0 (a token of unknown decimals keeps its null flow)
        *[pl.when(pl.col(f"moves_{side}").is_null()).then(0.0).otherwise(pl.col(f"net_{side}")).alias(f"net_{side}")
          for side in ("token0", "token1")],
        pl.col("moves_token0", "moves_token1").fill_null(0),
    ).sort("pool", "block_number")
    return grid.select(
        "pool", "block_number",
        pl.col("net_token0").alias("large_holder_net_flow_token0"),
        pl.col("net_token1").alias("large_holder_net_flow_token1"),
        (pl.col("moves_token0") + pl.col("moves_token1")).cast(pl.Int64).alias("large_holder_moves"),
        *[pl.col(f"net_{side}").rolling_sum_by("block_number", window_size=f"{WINDOW}i").over("pool")
          .alias(f"large_holder_net_flow_{side}_{WINDOW}") for side in ("token0", "token1")],
    )
