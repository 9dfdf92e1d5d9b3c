"""The data-challenge report of one run: an HTML page, its figures, and the numbers as JSON and CSV.

It reads only the run directory (and the directories of the retrieve runs that brought its data
back, when given), so copied directories report the same anywhere. `docs/report.md` explains each
section and where its numbers come from.

Layers, one way: `collect` (run directory -> plain dict, also written as report.json; the times
from `timeline`) -> `figures` (dict -> PNG bytes) -> `html` (dict + PNGs -> one self-contained page).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nightlake.observe.report.collect import STATES, collect
from nightlake.observe.report.figures import figures
from nightlake.observe.report.html import render_html, when


def write_report(run_path: Path | str, out: Path | str, retrieve_paths: Iterable[Path | str] = ()) -> dict[str, Any]:
    """Write index.html, the PNGs, report.json, throughput.csv and datasets.csv into `out`."""
    out = Path(out)
    data = collect(run_path, retrieve_paths)
    out.mkdir(parents=True, exist_ok=True)
    pngs = figures(data)
    for name, png in pngs.items():
        (out / name).write_bytes(png)
    (out / "report.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    _write_csv(out / "throughput.csv", *_throughput_rows(data["throughput"]))
    _write_csv(out / "datasets.csv", ["scope", "dataset", "dataset_state", "files", "bytes", *STATES],
               [[d["scope"], d["name"], d["state"], d["total"], d["bytes"], *(d["files"][s] for s in STATES)]
                for d in data["datasets"]])
    (out / "index.html").write_text(render_html(data, pngs), encoding="utf-8")
    return data


def _throughput_rows(throughput: dict[str, Any] | None) -> tuple[list[str], list[list[Any]]]:
    header = ["bin_start_utc", "bin_offset_s", "phase", "files", "bytes", "files_per_s", "mb_per_s"]
    if not throughput:
        return header, []
    width, rows = throughput["bin_s"], []
    for phase, values in throughput["phases"].items():
        for i, files in enumerate(values["files"]):
            size = values["bytes"][i] if values["bytes"] is not None else None
            rows.append([when(throughput["start"] + i * width), i * width, phase, files,
                         "" if size is None else round(size), round(files / width, 3),
                         "" if size is None else round(size / width / 1e6, 3)])
    return header, rows


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
