"""One pool's market as numpy arrays, block by block: what the execution model trades against.

`PoolMarket` holds, for every block of a consecutive range, the pool's reserves *at the end of* that
block (forward-filled from `pool_reserves`), the block's base fee, and the price of ETH in the quote token
(to charge gas). The pair is oriented as base/quote: the agent holds base and quote, and prices are quote
per base. The quote is the more "numeraire" token of the pair: a stablecoin, else WETH, else token1.

Timing convention shared by the env and the backtester (see `rl.execution`): a decision made at as-of
block b knows blocks < b; a trade lands in block b + latency and executes against the reserves at the
start of that block, i.e. the end of block b + latency - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from chainlake.errors import ConfigError
from chainlake.features.inputs import resolve_inputs, scan_lake_table

STABLES = ("USDC", "USDT", "DAI", "FRAX", "LUSD", "USDE", "PYUSD")
ETH_SYMBOLS = ("WETH", "ETH")
V2_FEE = 0.003


@dataclass(frozen=True)
class PoolMarket:
    """A pool's state per block, oriented base/quote (see the module docstring)."""

    pool: str
    base_token: str
    quote_token: str
    base_symbol: str
    quote_symbol: str
    base_is_token0: bool
    fee: float
    blocks: np.ndarray  # int64, consecutive
    reserve_base: np.ndarray  # float64, decimal-adjusted, end of block
    reserve_quote: np.ndarray
    base_fee_gwei: np.ndarray  # the block's base fee
    eth_price_quote: np.ndarray  # quote per ETH at the end of the block (for gas)

    @property
    def mid(self) -> np.ndarray:
        """Quote per base at the end of each block."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.reserve_base > 0, self.reserve_quote / self.reserve_base, np.nan)

    def index(self, blocks: np.ndarray | int) -> np.ndarray:
        """Positions of `blocks` in the arrays; raises if any is outside the range."""
        idx = np.asarray(blocks, dtype=np.int64) - int(self.blocks[0])
        if np.any(idx < 0) or np.any(idx >= len(self.blocks)):
            raise ConfigError(f"blocks outside the market of pool {self.pool} "
                              f"({self.blocks[0]}..{self.blocks[-1]})")
        return idx

    def slice(self, first_block: int, last_block: int) -> PoolMarket:
        lo, hi = self.index(np.array([first_block, last_block]))
        arrays = {name: getattr(self, name)[lo:hi + 1] for name in
                  ("blocks", "reserve_base", "reserve_quote", "base_fee_gwei", "eth_price_quote")}
        return PoolMarket(**{**self.__dict__, **arrays})


def quote_rank(symbol: str | None) -> int:
    """Higher is more numeraire: stablecoins, then ETH, then anything."""
    symbol = (symbol or "").upper()
    return 2 if symbol in STABLES else 1 if symbol in ETH_SYMBOLS else 0


def pool_pair(lake_dir: str | Path, pool: str) -> dict:
    """token0/token1 of a pool with symbols and decimals, from the lake's metadata tables."""
    pool = pool.lower()
    pools = scan_lake_table(lake_dir, "pools").filter(pl.col("pool") == pool).collect()
    if pools.height == 0 or pools.get_column("token0")[0] is None:
        raise ConfigError(f"pool {pool} is not in {lake_dir}/pools: decode its swaps or reserves first")
    tokens = scan_lake_table(lake_dir, "tokens").collect()
    symbol = dict(zip(tokens.get_column("token").to_list(), tokens.get_column("symbol").to_list()))
    token0, token1 = pools.get_column("token0")[0], pools.get_column("token1")[0]
    return {"token0": token0, "token1": token1, "symbol0": symbol.get(token0), "symbol1": symbol.get(token1)}


def reserves_grid(lake_dir: str | Path, pools: list[str], first: int, last: int) -> pl.DataFrame:
    """(pool, block_number, reserve0, reserve1, base_fee_gwei) for every block first..last, forward-filled."""
    tables = resolve_inputs(["pool_reserves", "blocks"], lake_dir)
    blocks = (tables["blocks"].filter(pl.col("block_number").is_between(first, last))
              .select("block_number", (pl.col("base_fee_per_gas").cast(pl.Float64) / 1e9).alias("base_fee_gwei"))
              .sort("block_number").collect())
    reserves = (tables["pool_reserves"].filter(pl.col("pool").is_in(pools) & (pl.col("block_number") <= last))
                .select("pool", "block_number", "reserve0", "reserve1").sort("block_number").collect())
    grid = blocks.join(pl.DataFrame({"pool": pools}), how="cross").sort("block_number")
    return grid.join_asof(reserves, on="block_number", by="pool", strategy="backward", check_sortedness=False)


def load_pool_market(lake_dir: str | Path, pool: str, first_block: int | None = None,
                     last_block: int | None = None, fee: float = V2_FEE) -> PoolMarket:
    """The pool's market over first..last (default: from its first reserves to the lake's last block)."""
    pool = pool.lower()
    pair = pool_pair(lake_dir, pool)
    base_is_token0 = quote_rank(pair["symbol1"]) >= quote_rank(pair["symbol0"])
    span = (scan_lake_table(lake_dir, "pool_reserves").filter(pl.col("pool") == pool)
            .select(pl.col("block_number").min()).collect().item())
    head = scan_lake_table(lake_dir, "blocks").select(pl.col("block_number").max()).collect().item()
    if span is None:
        raise ConfigError(f"pool {pool} has no reserves in {lake_dir}")
    first = max(span, first_block) if first_block is not None else span
    last = min(head, last_block) if last_block is not None else head
    if first > last:
        raise ConfigError(f"pool {pool}: no blocks in {first_block}..{last_block} (reserves from {span}, head {head})")
    grid = reserves_grid(lake_dir, [pool], first, last)
    blocks = grid.get_column("block_number").to_numpy()
    if len(blocks) != last - first + 1:
        raise ConfigError(f"the lake has gaps in blocks {first}..{last}: ingest them first")
    r0, r1 = grid.get_column("reserve0").to_numpy(), grid.get_column("reserve1").to_numpy()
    reserve_base, reserve_quote = (r0, r1) if base_is_token0 else (r1, r0)
    base_symbol, quote_symbol = (pair["symbol0"], pair["symbol1"]) if base_is_token0 else (pair["symbol1"], pair["symbol0"])
    market = PoolMarket(
        pool=pool, base_token=pair["token0"] if base_is_token0 else pair["token1"],
        quote_token=pair["token1"] if base_is_token0 else pair["token0"], base_symbol=base_symbol or "?",
        quote_symbol=quote_symbol or "?", base_is_token0=base_is_token0, fee=fee, blocks=blocks,
        reserve_base=reserve_base, reserve_quote=reserve_quote,
        base_fee_gwei=grid.get_column("base_fee_gwei").to_numpy(), eth_price_quote=np.ones(len(blocks)))
    return PoolMarket(**{**market.__dict__, "eth_price_quote": eth_price(lake_dir, market, first, last)})


def eth_price(lake_dir: str | Path, market: PoolMarket, first: int, last: int) -> np.ndarray:
    """Quote per ETH per block: 1 if the quote is WETH, the mid if the base is, else via a WETH/quote pool."""
    if market.quote_symbol.upper() in ETH_SYMBOLS:
        return np.ones(len(market.blocks))
    if market.base_symbol.upper() in ETH_SYMBOLS:
        return market.mid
    pools = scan_lake_table(lake_dir, "pools").collect()
    tokens = scan_lake_table(lake_dir, "tokens").collect()
    weth = [t for t, s in zip(tokens.get_column("token"), tokens.get_column("symbol")) if (s or "").upper() in ETH_SYMBOLS]
    for row in pools.iter_rows(named=True):
        pair = {row["token0"], row["token1"]}
        if market.quote_token in pair and pair & set(weth):
            grid = reserves_grid(lake_dir, [row["pool"]], first, last)
            r0, r1 = grid.get_column("reserve0").to_numpy(), grid.get_column("reserve1").to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                price = r1 / r0 if row["token0"] in weth else r0 / r1  # quote per WETH
            return np.where(np.isfinite(price), price, np.nan)
    raise ConfigError(f"pool {market.pool}: no WETH/{market.quote_symbol} pool in the lake to price gas in "
                      f"{market.quote_symbol}")
