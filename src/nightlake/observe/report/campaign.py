"""The report of a campaign: every phase on one timeline, and a table in the spirit of a data
challenge's slides (phase, time span, RSE, files, bytes, mean rate, errors).

Each phase is an ordinary run directory, collected by the single-run `collect` (its journal read
only, its event log binned), so a phase's numbers here are exactly those of its own report; this
module only puts the phases side by side on the campaign's clock. Written into `out`: index.html,
timeline.png, report.json and phases.csv.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from nightlake import BadInput, __version__
from nightlake.night.spec import NightSpec, human_bytes, load_spec
from nightlake.observe.events import Kind
from nightlake.observe.report import timeline
from nightlake.observe.report.collect import collect
from nightlake.runs.campaign import CampaignDir

PHASE_COLUMNS = ["phase", "state", "rse", "fault", "sizes", "first_utc", "last_utc", "ingest_s", "files", "files_done",
                 "bytes_done", "mb_per_s", "files_per_s", "failed", "quarantined", "replicated", "replicas",
                 "replication_stuck"]


def write_campaign_report(path: Path | str, out: Path | str) -> dict[str, Any]:
    """Write index.html, timeline.png, report.json and phases.csv of the campaign in `path`."""
    from nightlake.observe.report.campaign_page import render_page, timeline_png

    out = Path(out)
    data = collect_campaign(path)
    out.mkdir(parents=True, exist_ok=True)
    png = timeline_png(data)
    if png:
        (out / "timeline.png").write_bytes(png)
    (out / "report.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    with open(out / "phases.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(PHASE_COLUMNS)
        writer.writerows([_csv_row(p) for p in data["phases"]])
    (out / "index.html").write_text(render_page(data, png), encoding="utf-8")
    return data


def collect_campaign(path: Path | str) -> dict[str, Any]:
    """The campaign as plain data (report.json): each phase's own report data, condensed."""
    directory = CampaignDir(Path(path))
    if not directory.is_campaign():
        raise BadInput(f"{directory.path} holds no campaign (no {directory.document.name})")
    document, state = directory.load(), directory.state()
    phases = []
    for index, phase in enumerate(document["phases"]):
        run = directory.phase_run(index, phase["name"])
        record = state["phases"].get(phase["name"], {})
        if not run.journal().exists():
            phases.append({**_identity(phase, index, run.path), "state": "not started", "files": None})
            continue
        phases.append(_phase(phase, index, run.path, record))
    spans = [p["span"] for p in phases if p.get("span")]
    data = {"generated": {"at": time.time(), "nightlake": __version__},
            "campaign": {"name": document["name"], "description": document.get("description", ""),
                         "path": str(directory.path.absolute())},
            "phases": phases,
            "span": {"first": min(s["first"] for s in spans), "last": max(s["last"] for s in spans)} if spans else None}
    data["headline"] = headline(data)
    return data


def headline(data: dict[str, Any]) -> str:
    phases = data["phases"]
    started = [p for p in phases if p["files"]]
    done = sum(p["files"]["done"] for p in started)
    total = sum(p["files"]["total"] for p in started)
    size = sum(p["bytes"]["done"] for p in started)
    finished = sum(p["state"] == "finished" for p in phases)
    return (f"{finished} of {len(phases)} phases finished: {done:,} of {total:,} files done, {human_bytes(size)}, "
            f"{sum(p['errors_total'] for p in started):,} files with errors")


def _identity(phase: dict[str, Any], index: int, run: Path) -> dict[str, Any]:
    return {"index": index + 1, "name": phase["name"], "rse": phase["rse"], "fault": phase.get("fault"),
            "source": phase["source"], "run": str(run.absolute())}


def _phase(phase: dict[str, Any], index: int, run: Path, record: dict[str, Any]) -> dict[str, Any]:
    """One phase: its counts (the journal's), time span, active ingest time, mean rates, size
    class, replication per destination, and errors by class."""
    data = collect(run)
    events = timeline.read_events(run / "events.jsonl")
    ingest_s = ingest_seconds(events)
    files, size = data["files"], data["bytes"]
    ingest_errors = files["failed"] + files["quarantined"]
    replication_stuck = sum(e["files"] for e in data["errors"] if e["source"] == "replication")
    destinations = {e: {"ok": s["ok"][-1], "files": s["files"][-1], "bytes_ok": s["bytes_ok"][-1],
                        "stuck": s["stuck"][-1], "ts": s["ts"], "ok_series": s["ok"]}
                    for e, s in data["destinations"].items()}
    return {**_identity(phase, index, run), "state": record.get("state", "running"),
            "sizes": size_class(data["run"]["description"].get("source"), files, size),
            "files": files, "bytes": size, "span": data["span"], "ingest_s": round(ingest_s, 1),
            "mb_per_s": round(size["done"] / ingest_s / 1e6, 3) if ingest_s else None,
            "files_per_s": round(files["done"] / ingest_s, 3) if ingest_s else None,
            "throughput": data["throughput"], "rules": len(data["rules"]),
            "replication": destinations, "replication_latency": data["replication_latency"],
            "errors": data["errors"], "retries": data["retries"],
            "errors_total": ingest_errors + replication_stuck, "replication_stuck": replication_stuck,
            "sessions": data["run"]["sessions"], "versions": data["run"]["versions"],
            "rucio_host": data["run"]["rucio_host"]}


def ingest_seconds(events: list[dict]) -> float:
    """The time the phase's ingest sessions took: each from its `run.start` to its `run.end`, or
    to its last event when it was killed; the watch of its rules and the pause of a kill excluded."""
    total, start, last = 0.0, None, None
    for event in events:
        if event["kind"] == Kind.RUN_START:
            if start is not None:
                total += last - start  # a session that ended without run.end (killed)
            start = last = event["ts"]
        elif start is not None:
            last = event["ts"]
            if event["kind"] == Kind.RUN_END:
                total += last - start
                start = None
    if start is not None:
        total += last - start
    return total


def size_class(source: str | None, files: dict[str, int], size: dict[str, int]) -> str:
    """The phase's file sizes as its spec draws them, or the mean size of a directory's files."""
    spec = _spec(source)
    if spec is None:
        mean = size["total"] / files["total"] if files["total"] else 0
        return f"mean {human_bytes(mean)}"
    sizes = spec.sizes
    if sizes.kind == "fixed":
        return f"{human_bytes(sizes.size)} each"
    text = f"{human_bytes(sizes.min)} - {human_bytes(sizes.max)} ({sizes.kind}"
    return text + (f", median {human_bytes(sizes.median)})" if sizes.kind == "log-normal" else ")")


def _spec(source: str | None) -> NightSpec | None:
    if not source or not source.endswith(".toml"):
        return None
    try:
        return load_spec(source)
    except BadInput:  # the spec moved or changed since: the report says what the journal says
        return None


def _csv_row(p: dict[str, Any]) -> list[Any]:
    from nightlake.observe.report.html import when

    if not p["files"]:
        return [p["name"], p["state"], p["rse"], p["fault"] or ""] + [""] * (len(PHASE_COLUMNS) - 4)
    replication = p["replication"].values()
    return [p["name"], p["state"], p["rse"], p["fault"] or "", p["sizes"],
            when(p["span"]["first"]) if p["span"] else "", when(p["span"]["last"]) if p["span"] else "",
            p["ingest_s"], p["files"]["total"], p["files"]["done"], p["bytes"]["done"], p["mb_per_s"],
            p["files_per_s"], p["files"]["failed"], p["files"]["quarantined"],
            sum(d["ok"] for d in replication), sum(d["files"] for d in replication), p["replication_stuck"]]
