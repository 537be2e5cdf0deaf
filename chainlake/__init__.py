"""chainlake: a blockchain data lake and feature store for DeFi trading agents.

Data flows one way: rpc -> raw -> decoded -> features -> frames -> policy -> evaluation.
"""

__version__ = "0.1.0"
