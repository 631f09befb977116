"""Shared helpers for benchmarks: print a table, write JSON under benchmarks/out/."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

OUT = Path(__file__).resolve().parent / "out"


def emit(name: str, title: str, columns: list[str], rows: list[list], extra: dict | None = None) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in r])
    Console().print(table)
    OUT.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "columns": columns,
        "rows": rows,
        **(extra or {}),
    }
    (OUT / f"{name}.json").write_text(json.dumps(payload, indent=1))
