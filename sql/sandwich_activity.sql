-- entity: pool
-- event_time: block_number
-- description: Sandwiches, victims and attacker profit per block; counts over 64/256 blocks
-- owner: research
-- ttl_blocks: 64
-- history_blocks: 256
--
-- mev_sandwiches has one row per (front-run, victim, back-run); sandwich-level columns (profit) repeat
-- per victim, so a sandwich is counted once, by its front-run transaction. Profit is in the token the
-- front-run sold, which is token0 for some sandwiches and token1 for others: it is summed per token
-- (attacker_profit_token0 / _token1, decimal-adjusted), never across tokens. Dense grid, zeros when none.
WITH pair AS (
    SELECT pool, any_value(token0) AS token0, any_value(token1) AS token1 FROM pool_reserves GROUP BY pool
),
sandwiches AS (
    SELECT pool, block_number, front_transaction_hash,
           any_value(token_sold) AS token_sold, any_value(profit) AS profit,
           count(DISTINCT victim_transaction_hash) AS victims
    FROM mev_sandwiches
    GROUP BY pool, block_number, front_transaction_hash
),
per_block AS (
    SELECT s.pool, s.block_number, count(*) AS sandwiches, sum(s.victims)::BIGINT AS victims,
           coalesce(sum(s.profit) FILTER (WHERE s.token_sold = p.token0), 0.0) AS attacker_profit_token0,
           coalesce(sum(s.profit) FILTER (WHERE s.token_sold = p.token1), 0.0) AS attacker_profit_token1
    FROM sandwiches s JOIN pair p ON s.pool = p.pool
    GROUP BY s.pool, s.block_number
),
dense AS (
    SELECT g.pool, g.block_number,
           coalesce(s.sandwiches, 0) AS sandwiches, coalesce(s.victims, 0) AS victims,
           coalesce(s.attacker_profit_token0, 0.0) AS attacker_profit_token0,
           coalesce(s.attacker_profit_token1, 0.0) AS attacker_profit_token1
    FROM pool_blocks g LEFT JOIN per_block s ON g.pool = s.pool AND g.block_number = s.block_number
)
SELECT pool, block_number, sandwiches, victims, attacker_profit_token0, attacker_profit_token1,
       (sum(sandwiches) OVER w64)::BIGINT AS sandwiches_64,
       (sum(victims) OVER w64)::BIGINT AS victims_64,
       (sum(sandwiches) OVER w256)::BIGINT AS sandwiches_256,
       (sum(victims) OVER w256)::BIGINT AS victims_256
FROM dense
WINDOW w64 AS (PARTITION BY pool ORDER BY block_number RANGE BETWEEN 63 PRECEDING AND CURRENT ROW),
       w256 AS (PARTITION BY pool ORDER BY block_number RANGE BETWEEN 255 PRECEDING AND CURRENT ROW)
