"""Dagster code location of chainlake; `definitions.py` is where everything meets."""
