"""One exception family so the CLI and Dagster can print a single clear line for bad input."""


class ChainlakeError(Exception):
    """Base of every error chainlake raises on purpose; its message is meant for the user as is."""


class ConfigError(ChainlakeError):
    """Bad user input: a malformed URL, block range, address, dataset name, option."""


class NodeError(ChainlakeError):
    """The node could not be used: unreachable, answered garbage, or failed after retries."""


class MethodUnsupported(NodeError):
    """The node does not serve a JSON-RPC method that a dataset needs."""
