"""Block-range partitions shared by every raw asset.

Dynamic, because the chain grows: the sensor adds a key each time a fixed-size range is complete and
final. Keys and ranges come from the lake's own partition math, so one Dagster partition is exactly
one lake partition.
"""

import dagster as dg

block_ranges = dg.DynamicPartitionsDefinition(name="block_ranges")
