-- entity: pool
-- event_time: block_number
-- description: Trade count and token0/token1 volume per block, summed over 16 and 64 blocks
-- owner: research
-- ttl_blocks: 16
-- history_blocks: 64
--
-- Volume counts each swap once per side: volume_token0 is the token0 amount of the swap, bought or sold.
-- The grid is dense (a block without trades has zeros), and the rolling sums cover the blocks
-- b-15..b and b-63..b (RANGE over block numbers, so a gap in the lake never stretches a window).
WITH pair AS (
    SELECT pool, any_value(token0) AS token0 FROM pool_reserves GROUP BY pool
),
per_block AS (
    SELECT s.pool, s.block_number, count(*) AS trade_count,
           sum(CASE WHEN s.token_bought = p.token0 THEN s.token_bought_amount ELSE s.token_sold_amount END)
               AS volume_token0,
           sum(CASE WHEN s.token_bought = p.token0 THEN s.token_sold_amount ELSE s.token_bought_amount END)
               AS volume_token1
    FROM dex_swaps s JOIN pair p ON s.pool = p.pool
    GROUP BY s.pool, s.block_number
),
dense AS (
    SELECT g.pool, g.block_number,
           coalesce(v.trade_count, 0) AS trade_count,
           CASE WHEN v.trade_count IS NULL THEN 0.0 ELSE v.volume_token0 END AS volume_token0,
           CASE WHEN v.trade_count IS NULL THEN 0.0 ELSE v.volume_token1 END AS volume_token1
    FROM pool_blocks g LEFT JOIN per_block v ON g.pool = v.pool AND g.block_number = v.block_number
)
SELECT pool, block_number, trade_count, volume_token0, volume_token1,
       (sum(trade_count) OVER w16)::BIGINT AS trade_count_16,
       sum(volume_token0) OVER w16 AS volume_token0_16,
       sum(volume_token1) OVER w16 AS volume_token1_16,
       (sum(trade_count) OVER w64)::BIGINT AS trade_count_64,
       sum(volume_token0) OVER w64 AS volume_token0_64,
       sum(volume_token1) OVER w64 AS volume_token1_64
FROM dense
WINDOW w16 AS (PARTITION BY pool ORDER BY block_number RANGE BETWEEN 15 PRECEDING AND CURRENT ROW),
       w64 AS (PARTITION BY pool ORDER BY block_number RANGE BETWEEN 63 PRECEDING AND CURRENT ROW)
