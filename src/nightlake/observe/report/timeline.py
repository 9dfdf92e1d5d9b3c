"""The timeline of a run, from its event log: when things happened, binned for rates and totals.

A batch event is stamped when its batch finishes; `throughput` spreads each batch's files and
bytes over the time it took (`_batch_starts`), in fixed-width bins, so 500 batches or 500,000
cost the same. Replication progress comes from `rules.progress` (per rule) and
`replication.progress` (per destination) polls, its latency from `rule.added` to the poll that saw
a lock OK; retries from `retry`.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import numpy as np

from nightlake import BadInput
from nightlake.observe.events import Kind

# Batch events with a rate, and the phase whose batches each one waits for (see `_batch_starts`).
PHASES = {Kind.UPLOAD_BATCH: ("upload", None), Kind.REGISTER_BATCH: ("registration", Kind.UPLOAD_BATCH),
          Kind.RETRIEVE_BATCH: ("retrieval", None)}
BIN_WIDTHS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
MAX_BINS = 240
SAMPLE_CHARS = 300


def read_events(path: Path) -> list[dict[str, Any]]:
    """The event log, in time order; a torn last line (crash mid-write) is skipped. The log is
    ASCII JSON lines, so bytes that are not UTF-8 mean the file is not (only) an event log."""
    if not path.exists():
        return []
    events = []
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(event, dict) and "ts" in event and "kind" in event:
                    events.append(event)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not a nightlake event log (bytes that are not UTF-8: {exc.reason})") from None
    events.sort(key=lambda e: e["ts"])
    return events


def _bin_width(span_s: float) -> int:
    """The smallest round width that keeps the plot under MAX_BINS bins."""
    return next((w for w in BIN_WIDTHS_S if span_s / w <= MAX_BINS), BIN_WIDTHS_S[-1])


def throughput(events: list[dict], replication: dict[str, list] | None) -> dict[str, Any] | None:
    """Files and bytes per time bin for each phase that has batch events (plus replication)."""
    if not events:
        return None
    start, end = events[0]["ts"], events[-1]["ts"]
    width = _bin_width(end - start)
    edges = start + width * np.arange(int((end - start) // width) + 2)
    boundaries = [e["ts"] for e in events if e["kind"].endswith((".start", ".end"))] or [start]
    phases = {}
    for kind, (phase, upstream) in PHASES.items():
        batches = [e for e in events if e["kind"] == kind]
        if not batches:
            continue
        ends = [e["ts"] for e in batches]
        starts = _batch_starts(ends, boundaries, [e["ts"] for e in events if e["kind"] == upstream])
        files = _spread(starts, ends, [e.get("files", 0) for e in batches], edges)
        has_bytes = any("bytes" in e for e in batches)
        size = _spread(starts, ends, [e.get("bytes", 0) for e in batches], edges) if has_bytes else None
        phases[phase] = {"files": files, "bytes": size}
    if replication and len(replication["ts"]) > 1:
        ts, ok = replication["ts"], replication["ok"]
        gains = [max(0, b - a) for a, b in zip(ok, ok[1:])]  # newly replicated between two polls
        phases["replication"] = {"files": _spread(ts[:-1], ts[1:], gains, edges), "bytes": None}
    return {"start": start, "bin_s": width, "bins": len(edges) - 1, "phases": phases} if phases else None


def _batch_starts(ends: list[float], boundaries: list[float], upstream: list[float]) -> list[float]:
    """When each batch's work began, so its files can be spread over the time it took.

    A batch event is stamped when the batch finishes; its work began when the previous batch of the
    same phase finished, but not before the run (re)started and, for the first batch after a
    (re)start, not before the first upstream batch it was waiting for had arrived.
    """
    starts, previous = [], float("-inf")
    for end in ends:
        i = bisect.bisect_right(boundaries, end)
        segment = boundaries[i - 1] if i else end
        if previous < segment:
            j = bisect.bisect_left(upstream, segment)
            previous = upstream[j] if j < len(upstream) and upstream[j] <= end else segment
        starts.append(previous)
        previous = end
    return starts


def _spread(starts: list[float], ends: list[float], amounts: list[float], edges: np.ndarray) -> list[float]:
    """Amount per bin, each batch spread evenly over [start, end]: a piecewise-linear cumulative
    curve sampled at the bin edges (vectorised: 500 batches or 500,000 cost the same)."""
    amounts = np.asarray(amounts, dtype=float)
    cumulative = np.cumsum(amounts)
    xp = np.column_stack([starts, ends]).ravel()
    fp = np.column_stack([cumulative - amounts, cumulative]).ravel()
    return np.diff(np.interp(edges, xp, fp)).round(3).tolist()


def replication_progress(events: list[dict]) -> dict[str, Any]:
    """Latest ok/replicating/stuck per rule, and their totals over time (from `rules.progress`)."""
    latest: dict[str, dict] = {}
    series: dict[str, list] = {"ts": [], "ok": [], "replicating": [], "stuck": []}
    for event in (e for e in events if e["kind"] == Kind.RULES_PROGRESS):
        latest[event.get("rule_id") or event.get("dataset")] = event
        series["ts"].append(event["ts"])
        for key in ("ok", "replicating", "stuck"):
            series[key].append(sum(r.get(key, 0) for r in latest.values()))
    return {"latest": latest, "series": series if series["ts"] else None}


def destinations(events: list[dict]) -> dict[str, dict[str, list]]:
    """Files and bytes replicated per destination (RSE expression) over time, from every
    `replication.progress` poll of `rules watch`."""
    out: dict[str, dict[str, list]] = {}
    for event in (e for e in events if e["kind"] == Kind.REPLICATION_PROGRESS):
        series = out.setdefault(event.get("rse_expression", "?"), {"ts": [], "ok": [], "files": [], "bytes_ok": [],
                                                                   "bytes": [], "stuck": []})
        series["ts"].append(event["ts"])
        for key in ("ok", "files", "bytes_ok", "bytes", "stuck"):
            series[key].append(event.get(key, 0))
    return out


LATENCY_PERCENTILES = (50, 90, 99, 100)


def replication_latency(events: list[dict]) -> dict[str, Any] | None:
    """Percentiles of the time from a dataset's rule being added (the ingest adds it once the
    dataset's last file is uploaded and registered) to the `rules.progress` poll that saw each of
    its locks OK: the upload-to-replica latency, late by at most one poll interval."""
    added: dict[str, float] = {}
    for event in (e for e in events if e["kind"] == Kind.RULE_ADDED):
        added.setdefault(event.get("rule_id"), event["ts"])
    seen: dict[str, int] = {}
    waits: list[float] = []
    for event in (e for e in events if e["kind"] == Kind.RULES_PROGRESS):
        rule_id, ok = event.get("rule_id"), event.get("ok", 0)
        gained, seen[rule_id] = max(0, ok - seen.get(rule_id, 0)), max(ok, seen.get(rule_id, 0))
        if rule_id in added and gained:
            waits += [event["ts"] - added[rule_id]] * gained
    if not waits:
        return None
    values = np.percentile(waits, LATENCY_PERCENTILES)
    return {"replicas": len(waits), **{f"p{p}_s": round(float(v), 1) for p, v in zip(LATENCY_PERCENTILES, values)}}


def cumulative(events: list[dict]) -> dict[str, dict[str, list]]:
    """Running totals of files per phase, for the progress figure."""
    out = {}
    for kind, name in ((Kind.UPLOAD_BATCH, "uploaded"), (Kind.DONE_BATCH, "done"), (Kind.RETRIEVE_BATCH, "retrieved")):
        batches = [e for e in events if e["kind"] == kind]
        if batches:
            out[name] = {"ts": [e["ts"] for e in batches],
                         "files": np.cumsum([e.get("files", 0) for e in batches]).tolist()}
    return out


def replication_errors(events: list[dict]) -> list[dict[str, Any]]:
    """Replication errors per group from `replication.error`, stuck locks apart from the failed
    attempts of rules still replicating; `count` is the group's running total, so the latest event
    of each group wins."""
    groups = {(e.get("group", "unclassified"), bool(e.get("retrying"))): e
              for e in events if e["kind"] == Kind.REPLICATION_ERROR}
    return [{"source": "replication", "error_class": group, "state": "failed, retried" if retrying else "stuck",
             "stage": f"transfer to {', '.join(e.get('rses') or ['?'])}",
             "files": e.get("count", 0), "bytes": None, "sample": str(e.get("sample", ""))[:SAMPLE_CHARS]}
            for (group, retrying), e in sorted(groups.items(), key=lambda item: -item[1].get("count", 0))]


def retries(events: list[dict]) -> list[dict[str, Any]]:
    """Retries per target and error class, if the pipeline reports `retry` events."""
    counts: dict[tuple[str, str], int] = {}
    for event in (e for e in events if e["kind"] == Kind.RETRY):
        key = (event.get("target", "?"), event.get("error_class", "?"))
        counts[key] = counts.get(key, 0) + 1
    return [{"target": t, "error_class": c, "retries": n} for (t, c), n in sorted(counts.items())]


def workers(events: list[dict]) -> list[dict[str, Any]]:
    """Per cluster worker (`worker.batch`): its batches, files and bytes, and its rates while busy
    (the time its batches took), so a slow node shows against the others."""
    totals: dict[str, list[float]] = {}
    for event in (e for e in events if e["kind"] == Kind.WORKER_BATCH):
        t = totals.setdefault(str(event.get("worker", "?")), [0, 0, 0, 0.0])
        t[0] += 1
        t[1] += event.get("files", 0)
        t[2] += event.get("bytes", 0)
        t[3] += event.get("seconds", 0.0)
    return [{"worker": w, "batches": n, "files": f, "bytes": b, "busy_s": round(s, 1),
             "files_per_s": round(f / s, 1) if s else None, "mb_per_s": round(b / s / 1e6, 2) if s else None}
            for w, (n, f, b, s) in sorted(totals.items())]
