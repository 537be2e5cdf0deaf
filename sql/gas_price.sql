-- entity: pool
-- event_time: block_number
-- description: Base fee (gwei), its 16-block mean, median/max gas price of the pool's swap txs
-- owner: research
-- ttl_blocks: 16
-- history_blocks: 31
--
-- base_fee_gwei comes from blocks.base_fee_per_gas, forward-filled over at most 15 blocks (pre-London blocks
-- have none; since London every block has one); base_fee_gwei_mean_16 averages the lake's blocks b-15..b
-- (the chain's, not only the pool's); a value filled from block b-15 averages b-30..b-15, hence 31 blocks of
-- history. The swap gas prices are over the distinct transactions with a swap in the pool
-- in the block (dex_swaps carries each transaction's receipt effective_gas_price); null if none.
WITH fee AS (
    SELECT block_number, base_fee_per_gas / 1e9 AS base_fee_gwei,
           avg(base_fee_per_gas / 1e9) OVER (ORDER BY block_number RANGE BETWEEN 15 PRECEDING AND CURRENT ROW)
               AS base_fee_gwei_mean_16
    FROM blocks WHERE base_fee_per_gas IS NOT NULL
),
swap_txs AS (
    SELECT DISTINCT pool, block_number, transaction_hash, effective_gas_price / 1e9 AS gas_price_gwei
    FROM dex_swaps
),
per_block AS (
    SELECT pool, block_number, count(*) AS swap_tx_count,
           median(gas_price_gwei) AS swap_gas_price_median_gwei,
           max(gas_price_gwei) AS swap_gas_price_max_gwei
    FROM swap_txs GROUP BY pool, block_number
),
grid AS (
    SELECT g.pool, g.block_number,
           CASE WHEN g.block_number - f.block_number < 16 THEN f.base_fee_gwei END AS base_fee_gwei,
           CASE WHEN g.block_number - f.block_number < 16 THEN f.base_fee_gwei_mean_16 END AS base_fee_gwei_mean_16
    FROM pool_blocks g ASOF LEFT JOIN fee f ON g.block_number >= f.block_number
)
SELECT g.pool, g.block_number, g.base_fee_gwei, g.base_fee_gwei_mean_16,
       coalesce(p.swap_tx_count, 0) AS swap_tx_count,
       p.swap_gas_price_median_gwei, p.swap_gas_price_max_gwei
FROM grid g LEFT JOIN per_block p ON g.pool = p.pool AND g.block_number = p.block_number
