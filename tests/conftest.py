"""Shared fixtures: a live devnet with a few hundred blocks of market activity, and a bare anvil.

The `devnet` fixture is session-scoped and stable on purpose: integration tests across the project ingest
the chain it mines. It is deterministic (fixed seed), so block hashes and every count are the same in
every run. Never mock the node: everything here talks to a real anvil.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chainlake.devnet import Anvil, Devnet, DevnetLayout, MarketSummary

DEVNET_SEED = 7
DEVNET_BLOCKS = 200
DEVNET_TXS_PER_BLOCK = 10


@dataclass
class MempoolSnapshot:
    """What an observer saw right before a block was mined."""

    block_number: int
    txpool_content: dict
    wall_time: float


@dataclass
class DevnetRun:
    """The session devnet: where it is, what was deployed, and what the market did.

    `first_block..last_block` are the market blocks; blocks 1..layout.deploy_block hold the deployment.
    `mempool` has one snapshot per market block (taken right before it was mined).
    """

    url: str
    layout: DevnetLayout
    summary: MarketSummary
    first_block: int
    last_block: int
    devnet: Devnet = field(repr=False)
    mempool: list[MempoolSnapshot] = field(repr=False, default_factory=list)

    @property
    def block_range(self) -> tuple[int, int]:
        return self.first_block, self.last_block


@pytest.fixture(scope="session")
def devnet():
    """A started devnet (anvil + DEX) after DEVNET_BLOCKS blocks of simulated market; stopped at session end."""
    snapshots: list[MempoolSnapshot] = []

    def record(number: int, content: dict, wall_time: float) -> None:
        snapshots.append(MempoolSnapshot(number, content, wall_time))

    with Devnet(seed=DEVNET_SEED, txs_per_block=DEVNET_TXS_PER_BLOCK) as dn:
        summary = dn.run(DEVNET_BLOCKS, observers=[record])
        yield DevnetRun(dn.url, dn.layout, summary, summary.first_block, summary.last_block, dn, snapshots)


@pytest.fixture(scope="session")
def anvil():
    """A bare anvil (manual mining, no contracts), stopped at session end. Treat it as shared: don't rely on it staying empty."""
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def feature_lake(devnet, tmp_path_factory):
    """The whole session devnet in a lake: raw, mempool, decoded, and every feature view built."""
    from lakes import fill_lake

    lake = tmp_path_factory.mktemp("feature_lake") / "lake"
    reports = fill_lake(devnet, lake, devnet.last_block)
    return lake, reports


@pytest.fixture(scope="session")
def trained_models(feature_lake, tmp_path_factory):
    """Every policy trained on the session feature lake (small fold settings), in a models folder of its own:
    (lake, models_dir, TrainResult). Treat both as read-only; copy the lake to write to it."""
    from rl.pipeline import AgentConfig, train

    lake, _ = feature_lake
    models = tmp_path_factory.mktemp("trained_models")
    return lake, models, train(lake, AgentConfig(walk_forward_folds=2, regime_test_rows=60), models)
