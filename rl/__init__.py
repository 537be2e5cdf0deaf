"""The trading agent over the feature store: market data, execution model, Gymnasium env, learning, backtests.

Data flows one way: `rl` reads the lake (pool reserves, blocks) and training frames from
`chainlake.features`; nothing in `chainlake` imports `rl`.
"""
