-- entity: pool
-- event_time: block_number
-- description: Mid price (token1 per token0), reserves and 1/8/64-block log returns
-- owner: research
-- ttl_blocks: 64
-- history_blocks: 65
--
-- pool_reserves has a row only in blocks where a pool's reserves changed; the value holds until the next
-- one, so each grid block takes the latest reserves row at or before it (ASOF JOIN, never a later row).
-- log_return_k = ln(mid_b) - ln(mid_{b-k}) with LAG over the dense grid: null while the pool has fewer
-- than k blocks of history (or when the lake has a gap of blocks in between). History: log_return_64 reads
-- the blocks b-64..b (and the reserves row in force before them): 65 blocks.
WITH px AS (
    SELECT g.pool, g.block_number, r.mid_price, r.reserve0, r.reserve1,
           CASE WHEN r.mid_price > 0 THEN ln(r.mid_price) END AS log_mid
    FROM pool_blocks g
    ASOF LEFT JOIN pool_reserves r ON g.pool = r.pool AND g.block_number >= r.block_number
)
SELECT pool, block_number, mid_price, reserve0, reserve1,
       CASE WHEN LAG(block_number, 1) OVER w = block_number - 1 THEN log_mid - LAG(log_mid, 1) OVER w END
           AS log_return_1,
       CASE WHEN LAG(block_number, 8) OVER w = block_number - 8 THEN log_mid - LAG(log_mid, 8) OVER w END
           AS log_return_8,
       CASE WHEN LAG(block_number, 64) OVER w = block_number - 64 THEN log_mid - LAG(log_mid, 64) OVER w END
           AS log_return_64
FROM px
WINDOW w AS (PARTITION BY pool ORDER BY block_number)
