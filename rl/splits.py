"""Splits strictly in time over an episode's rows: train / validation / test with embargoes, walk-forward folds,
and folds that test across a regime switch (bull -> bear, bear -> bull).

Pure index math over row positions 0..n-1 (an `Episode`'s rows); nothing here reads data.

Embargo: `embargo` rows are dropped between consecutive parts, so a label that looks `h` rows ahead from
the end of one part can never see the next part when `embargo >= h` (use `embargo_rows` to turn a horizon
in blocks into rows). Every split keeps the parts in time order: train < validation < test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chainlake.errors import ConfigError

EMPTY = range(0)


@dataclass(frozen=True)
class Split:
    """Row positions of each part (ranges, in time order; validation may be empty)."""

    train: range
    validation: range
    test: range
    embargo: int = 0

    def parts(self) -> dict[str, range]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def as_dict(self) -> dict:
        return {name: [r.start, r.stop] for name, r in self.parts().items()} | {"embargo": self.embargo}


@dataclass(frozen=True)
class RegimeFold:
    """A fold whose test window starts at a regime switch (`kind` "bull_to_bear" or "bear_to_bull")."""

    kind: str
    switch: int  # row where the new regime is first known
    split: Split


def embargo_rows(horizon_blocks: int, stride: int = 1, latency_blocks: int = 1) -> int:
    """Rows a label of `horizon_blocks` reaches past its decision row: the fill (latency) plus the horizon."""
    if horizon_blocks < 0 or stride < 1:
        raise ConfigError("need horizon_blocks >= 0 and stride >= 1")
    return math.ceil((horizon_blocks + max(latency_blocks, 0)) / stride)


def time_splits(n: int, train: float = 0.6, validation: float = 0.2, embargo: int = 0) -> Split:
    """One chronological split: the first `train` share of the usable rows, an embargo, `validation`, an
    embargo, the rest as test. Usable rows = n minus the embargoes."""
    if not (0 < train < 1 and 0 <= validation < 1 and train + validation < 1):
        raise ConfigError(f"need 0 < train, 0 <= validation, train + validation < 1; got {train}, {validation}")
    if embargo < 0:
        raise ConfigError("embargo must be >= 0")
    gaps = 2 * embargo if validation > 0 else embargo
    usable = n - gaps
    n_train, n_val = int(usable * train), int(usable * validation)
    n_test = usable - n_train - n_val
    if n_train < 1 or n_test < 1 or (validation > 0 and n_val < 1):
        raise ConfigError(f"{n} rows are too few for train {train}, validation {validation}, embargo {embargo}")
    train_r = range(n_train)
    val_r = range(n_train + embargo, n_train + embargo + n_val) if validation > 0 else EMPTY
    test_start = (val_r.stop if validation > 0 else n_train) + embargo
    return Split(train_r, val_r, range(test_start, n), embargo)


def walk_forward(n: int, folds: int, train_size: int | None, test_size: int, embargo: int = 0,
                 validation_size: int = 0) -> list[Split]:
    """Rolling folds whose test windows tile the end of the series: fold k tests rows
    [n - (folds - k) * test_size, + test_size). Before each test: an embargo, the validation window (if any),
    an embargo, and the train window of `train_size` rows (None: expanding, from row 0)."""
    if folds < 1 or test_size < 1 or embargo < 0 or validation_size < 0:
        raise ConfigError("need folds >= 1, test_size >= 1, embargo >= 0, validation_size >= 0")
    if train_size is not None and train_size < 1:
        raise ConfigError("train_size must be >= 1 (or None for an expanding window)")
    splits = []
    for k in range(folds):
        test_start = n - (folds - k) * test_size
        test = range(test_start, test_start + test_size)
        if validation_size:
            validation = range(test_start - embargo - validation_size, test_start - embargo)
            train_stop = validation.start - embargo
        else:
            validation, train_stop = EMPTY, test_start - embargo
        train_start = 0 if train_size is None else train_stop - train_size
        if train_start < 0 or train_stop <= train_start:
            raise ConfigError(f"{n} rows are too few for {folds} folds of train {train_size}, "
                              f"validation {validation_size}, test {test_size}, embargo {embargo}")
        splits.append(Split(range(train_start, train_stop), validation, test, embargo))
    return splits


def regime_switches(regime: np.ndarray, min_run: int = 1) -> list[tuple[str, int]]:
    """(kind, row) where the regime series switches bull (+1) -> bear (-1) or bear -> bull.

    The series is point-in-time (row t's regime is known at t); unknown rows (0) are skipped, so
    +1, 0, -1 is a switch at the -1 row. A switch counts only if the new regime holds for `min_run` rows
    of known regime (a filter for evaluation windows, not a trading signal).
    """
    regime = np.asarray(regime)
    known = np.flatnonzero(regime != 0)
    switches = []
    for i in range(1, len(known)):
        prev, cur = regime[known[i - 1]], regime[known[i]]
        if prev == cur:
            continue
        run = regime[known[i:i + min_run]]
        if len(run) < min_run or np.any(run != cur):
            continue
        switches.append(("bull_to_bear" if prev > 0 else "bear_to_bull", int(known[i])))
    return switches


def regime_transition_folds(regime: np.ndarray, test_size: int, embargo: int = 0, train_size: int | None = None,
                            validation_size: int = 0, min_train: int = 1, min_run: int = 1,
                            max_per_kind: int | None = 1) -> list[RegimeFold]:
    """Folds whose test window starts at a regime switch: test = [switch, switch + test_size) (cut at the end),
    then, strictly before it, an embargo, the validation window (if any), an embargo and the train window
    (`train_size` rows, or everything before when None). Switches whose train window would hold fewer than
    `min_train` rows are skipped; at most `max_per_kind` folds per kind (earliest first; None: all)."""
    n = len(regime)
    folds: list[RegimeFold] = []
    per_kind: dict[str, int] = {}
    for kind, switch in regime_switches(regime, min_run):
        if max_per_kind is not None and per_kind.get(kind, 0) >= max_per_kind:
            continue
        test = range(switch, min(switch + test_size, n))
        if validation_size:
            validation = range(switch - embargo - validation_size, switch - embargo)
            train_stop = validation.start - embargo
        else:
            validation, train_stop = EMPTY, switch - embargo
        train_start = 0 if train_size is None else max(0, train_stop - train_size)
        if train_stop - train_start < min_train or validation.start < 0:
            continue
        folds.append(RegimeFold(kind, switch, Split(range(train_start, train_stop), validation, test, embargo)))
        per_kind[kind] = per_kind.get(kind, 0) + 1
    return folds
