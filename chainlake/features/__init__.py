"""The feature store: feature views as files, point-in-time state tables, and training frames.

- `feature_view`: the decorator for `features/<name>.py`; SQL views are `sql/<name>.sql` with a header;
- `load_registry`: every view of the project; `build_features`: compute and write their state tables;
- `training_frame`: Feast's `get_historical_features` over the lake, with no look-ahead.
"""

from chainlake.features.engine import (
    BuildReport,
    build_features,
    causality_check,
    compute_view,
    lake_causality_check,
    state_path,
    to_state,
    write_state,
)
from chainlake.features.frames import training_frame
from chainlake.features.registry import Registry, discover, load_registry
from chainlake.features.view import FeatureView, feature_view

__all__ = [
    "BuildReport", "FeatureView", "Registry", "build_features", "causality_check", "compute_view", "discover",
    "feature_view", "lake_causality_check", "load_registry", "state_path", "to_state", "training_frame",
    "write_state",
]
