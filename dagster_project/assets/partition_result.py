"""What every block-range asset reports once its partition is written: metadata and check results."""

import dagster as dg
import polars as pl

from chainlake.quality import CheckOutcome


def preview_markdown(frame: pl.DataFrame, rows: int = 5, max_chars: int = 24) -> str:
    """A small markdown table for the Dagster UI; long hex strings are shortened."""
    head = frame.head(rows)
    header = "| " + " | ".join(head.columns) + " |\n|" + "---|" * len(head.columns) + "\n"
    body = "".join("| " + " | ".join("" if v is None else str(v)[:max_chars] for v in row) + " |\n"
                   for row in head.iter_rows())
    return header + body


def partition_result(lake, name: str, frame: pl.DataFrame, start: int, end: int,
                     outcomes: dict[str, CheckOutcome]) -> dg.MaterializeResult:
    """Rows, block range, path and a preview of the written partition, plus its asset checks."""
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "block_range": f"{start}-{end}",
            "path": dg.MetadataValue.path(str(lake / name)),
            "preview": dg.MetadataValue.md(preview_markdown(frame)),
        },
        check_results=[
            dg.AssetCheckResult(check_name=check, passed=o.passed, description=o.description,
                                metadata={k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v
                                          for k, v in o.metadata.items()})
            for check, o in outcomes.items()
        ],
    )
