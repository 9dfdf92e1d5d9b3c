"""Collect: a run directory (and the directories of the retrieves of its data) -> plain data,
written as report.json and drawn by `figures` and `html`.

Two sources, two jobs: the journal says where every file *stands* (the truth resume trusts),
opened read-only beside a running writer; the event log says *when* things happened (`timeline`).
Every number is an aggregate - GROUP BY on the journal, fixed-width time bins over the events -
and no file is ever listed, so a 500,000-file night collects in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nightlake import BadInput, __version__
from nightlake.night.spec import human_bytes
from nightlake.observe.events import Kind
from nightlake.observe.report import timeline
from nightlake.runs.journal.download import DownloadState
from nightlake.runs.journal.ingest import (
    DatasetState,
    FileState,
    IngestJournal,
    RuleState,
)
from nightlake.runs.rundir import INGEST, RETRIEVE, RunDir
from nightlake.runs.summary import state_totals

STATES = [s.value for s in FileState]
SAMPLE_CHARS = 300
RETRIEVAL_KINDS = (Kind.RETRIEVE_BATCH, Kind.RETRY, Kind.RUN_START, Kind.RUN_END)


def collect(run_path: Path | str, retrieve_paths: Iterable[Path | str] = ()) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data (this is report.json). Retrieve runs add
    their own section, their errors, and the retrieval phase to the time plots."""
    run = RunDir(Path(run_path))
    if run.kind() is not INGEST:
        raise BadInput(f"{run.path} holds a {run.kind().command} run: report the ingest run, with this one "
                       f"as --retrieve")
    with run.load(INGEST) as journal:
        meta, totals = journal.run_meta(), state_totals(journal)
        dataset_states = {(s, n): st.value for s, n, st in journal.datasets()}
        rules = journal.rules()
        datasets = _per_dataset(journal, dataset_states)
        rses = _grouped(journal, "rse")
        errors = _journal_errors(journal)
    events = timeline.read_events(run.events)
    progress = timeline.replication_progress(events)
    retrievals = [_retrieval(Path(path)) for path in retrieve_paths]
    merged = sorted(events + [e for r in retrievals for e in r.pop("events")], key=lambda e: e["ts"])
    data = {
        "generated": {"at": time.time(), "nightlake": __version__},
        "run": _provenance(run, meta, events, rules),
        **totals,
        "datasets": datasets,
        "rses": [{"rse": key[0] or "(not placed yet)", **value} for key, value in rses.items()],
        "rules": _rules_with_progress(rules, progress),
        "errors": errors + timeline.replication_errors(events) + [e for r in retrievals for e in r.pop("errors")],
        "retries": timeline.retries(merged),
        "workers": timeline.workers(events),
        "throughput": timeline.throughput(merged, progress["series"]),
        "progress": timeline.cumulative(merged),
        "replication": progress["series"],
        "destinations": timeline.destinations(events),
        "replication_latency": timeline.replication_latency(events),
        "retrievals": retrievals,
        "span": {"first": merged[0]["ts"], "last": merged[-1]["ts"]} if merged else None,
    }
    data["headline"] = headline(data)
    return data


def headline(data: dict[str, Any]) -> str:
    """One sentence a reader can check against `nightlake status`."""
    files, size = data["files"], data["bytes"]
    closed = sum(d["state"] == DatasetState.CLOSED.value for d in data["datasets"])
    created = sum(r["state"] == RuleState.CREATED.value for r in data["rules"])
    parts = [f"{files['done']:,} of {files['total']:,} files done", human_bytes(size["done"]),
             f"{closed:,} of {len(data['datasets']):,} datasets closed", f"{created:,} rules"]
    parts += [f"{files[s]:,} {s}" for s in ("failed", "quarantined", *data.get("unknown_states", ())) if files[s]]
    if data.get("retrievals"):
        back = sum(r["files"]["done"] for r in data["retrievals"])
        parts.append(f"{back:,} retrieved and verified")
    return ", ".join(parts)


def _grouped(journal: IngestJournal, columns: str) -> dict[tuple, dict[str, Any]]:
    """Files and bytes per state for each value of `columns`, in one GROUP BY."""
    out: dict[tuple, dict[str, Any]] = {}
    for *key, state, n, size in journal.per_state_by(columns):
        entry = out.setdefault(tuple(key), {"files": dict.fromkeys(STATES, 0), "bytes": 0, "bytes_done": 0})
        entry["files"][state] = n
        entry["bytes"] += size
        entry["bytes_done"] += size if state == FileState.DONE.value else 0
    return out


def _per_dataset(journal: IngestJournal, dataset_states: dict[tuple[str, str], str]) -> list[dict]:
    return [{"scope": scope, "name": name, "state": dataset_states.get((scope, name), "unknown"),
             "total": sum(v["files"].values()), **v}
            for (scope, name), v in _grouped(journal, "scope, dataset").items()]


def _journal_errors(journal: IngestJournal) -> list[dict[str, Any]]:
    """Failed and quarantined files per error class and stage, with one sample message each."""
    rows = journal.error_groups((FileState.FAILED, FileState.QUARANTINED),
                                by="error_class, state, COALESCE(failed_from, state)")
    return [{"source": "ingest", "error_class": cls or "unclassified", "state": state, "stage": stage,
             "files": n, "bytes": size, "sample": (sample or "")[:SAMPLE_CHARS]}
            for cls, state, stage, n, size, sample in rows]


def _retrieval(path: Path) -> dict[str, Any]:
    """One retrieve run: what it selected, how far it got, its errors (aggregated) and its events."""
    run = RunDir(path)
    if not run.journal(RETRIEVE).is_file():
        raise BadInput(f"--retrieve {path}: holds no retrieve run (no {RETRIEVE.journal_name})")
    with run.load(RETRIEVE) as journal:
        description = journal.run_meta().get("description", {})
        totals = state_totals(journal)
        rows = journal.error_groups((DownloadState.FAILED,))
    errors = [{"source": "retrieve", "error_class": cls or "unclassified", "state": "failed", "stage": "download",
               "files": n, "bytes": total, "sample": (sample or "")[:SAMPLE_CHARS]} for cls, n, total, sample in rows]
    events = [e for e in timeline.read_events(run.events) if e["kind"] in RETRIEVAL_KINDS]
    return {"path": str(path.absolute()), "selection": {k: description.get(k) for k in ("dids", "filters", "scope")},
            "out": description.get("out"), "from_rse": description.get("from_rse"),
            **totals,
            "errors": errors, "events": events}


def _provenance(run: RunDir, meta: dict[str, Any], events: list[dict], rules: list[dict]) -> dict[str, Any]:
    """What ran, with which versions, against which server and RSEs, and when."""
    description = meta.get("description", {})
    starts = [e["ts"] for e in events if e["kind"] == Kind.RUN_START]
    ends = [e["ts"] for e in events if e["kind"] == Kind.RUN_END]
    rses = sorted({description.get("rse")} | {e["rse"] for e in events if e.get("rse")} - {None})
    return {"path": str(run.path.absolute()), "description": description,
            "versions": meta.get("versions", {}), "rucio_host": meta.get("rucio_host"),
            "account": meta.get("account"), "rses": rses,
            "rule_expressions": sorted({r["rse_expression"] for r in rules}),
            "created": meta.get("created_at"), "started": starts[0] if starts else None,
            "ended": ends[-1] if ends else None, "sessions": len(starts),
            "first_event": events[0]["ts"] if events else None,
            "last_event": events[-1]["ts"] if events else None}


def _rules_with_progress(rules: list[dict], progress: dict[str, Any]) -> list[dict[str, Any]]:
    latest = progress["latest"]
    out = []
    for rule in rules:
        seen = latest.get(rule["rule_id"]) or latest.get(f"{rule['scope']}:{rule['dataset']}") or {}
        out.append({**rule, **{k: seen.get(k) for k in ("ok", "replicating", "stuck")}})
    return out
