"""HTML: report data + PNGs -> one self-contained page (CSS inline, figures as data URIs, no
script, nothing fetched), so the page can be mailed or archived with the night."""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Iterable
from typing import Any

from nightlake.night.spec import human_bytes
from nightlake.observe.report.collect import STATES
from nightlake.runs.journal.ingest import RuleState

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.headline{font-size:1.25em;padding:.6em .9em;border-left:6px solid #2ca02c;background:#f3faf3}
.headline.bad{border-color:#d62728;background:#fdf2f2} .meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{padding:.25em .7em;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} th{background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
td.msg{font-family:ui-monospace,monospace;font-size:.85em;max-width:560px;white-space:pre-wrap;word-break:break-word}
img{max-width:100%;display:block;margin:.6em 0} .scroll{max-height:420px;overflow:auto}
"""


def render_html(data: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The whole report as one page: CSS inline, figures as data URIs, no script, nothing fetched."""
    run = data["run"]
    bad = data["files"]["done"] != data["files"]["total"]
    title = f"nightlake report: {run['description'].get('source', run['path'])}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        f"<p class=meta>run directory {escape(run['path'])} · generated {when(data['generated']['at'])} "
        f"by nightlake {escape(data['generated']['nightlake'])}</p>",
        f"<p class='headline{' bad' if bad else ''}'>{escape(data['headline'])}</p>",
        _files_section(data),
        _figure("Throughput", pngs, "throughput.png",
                "Files and bytes per second in each phase; a batch's files are spread over the time it took."),
        _figure("Progress", pngs, "progress.png", "Running totals from the batch events."),
        _workers_section(data),
        _datasets_section(data, pngs),
        _rses_section(data),
        _rules_section(data, pngs),
        _retrievals_section(data),
        _errors_section(data),
        _provenance_section(data),
    ]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(s for s in sections if s)}</body></html>\n")


def escape(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def table(headers: Iterable[str] | None, rows: Iterable[Iterable[Any]], scroll: bool = False) -> str:
    """An HTML table; numbers are right-aligned with thousands separators."""
    def cell(value: Any) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"<td class=n>{value:,}</td>"
        if isinstance(value, tuple):  # (text, css class)
            return f"<td class={value[1]}>{escape(value[0])}</td>"
        return f"<td>{escape(value)}</td>"

    head = "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    markup = f"<table>{head}<tbody>{body}</tbody></table>"
    return f"<div class=scroll>{markup}</div>" if scroll else markup


def _figure(title: str, pngs: dict[str, bytes], name: str, caption: str) -> str:
    if name not in pngs:
        return ""
    return f"<h2>{escape(title)}</h2><p class=meta>{escape(caption)}</p>{_img(pngs, name)}"


def _img(pngs: dict[str, bytes], name: str) -> str:
    return (f"<img alt='{escape(name)}' src='data:image/png;base64,"
            f"{base64.b64encode(pngs[name]).decode()}'>") if name in pngs else ""


def _used_states(rows: list[dict]) -> list[str]:
    """Only the states some row has, so a finished run's tables are not mostly zeros."""
    return [s for s in STATES if any(r["files"][s] for r in rows)] or ["done"]


def _files_section(data: dict[str, Any]) -> str:
    states = [*STATES, *data.get("unknown_states", ())]  # a newer nightlake's states are shown, not dropped
    rows = [(s, data["files"][s], human_bytes(data["bytes"][s])) for s in states if data["files"][s]]
    rows.append(("total", data["files"]["total"], human_bytes(data["bytes"]["total"])))
    return "<h2>Files</h2>" + table(["state", "files", "bytes"], rows)


def _workers_section(data: dict[str, Any]) -> str:
    """Per cluster worker, when the bytes moved on a cluster (`--cluster`)."""
    if not data.get("workers"):
        return ""
    rows = [(w["worker"], w["batches"], w["files"], human_bytes(w["bytes"]), w["busy_s"], w["files_per_s"],
             w["mb_per_s"]) for w in data["workers"]]
    return "<h2>Cluster workers</h2>" + table(
        ["worker", "batches", "files", "bytes", "busy s", "files/s busy", "MB/s busy"], rows)


def _datasets_section(data: dict[str, Any], pngs: dict[str, bytes]) -> str:
    states = _used_states(data["datasets"])
    rows = [(f"{d['scope']}:{d['name']}", d["state"], *(d["files"][s] for s in states), d["total"],
             human_bytes(d["bytes"])) for d in data["datasets"]]
    return ("<h2>Datasets</h2>" + _img(pngs, "datasets.png") +
            table(["dataset", "dataset state", *states, "files", "bytes"], rows, scroll=len(rows) > 15))


def _rses_section(data: dict[str, Any]) -> str:
    states = _used_states(data["rses"])
    rows = [(r["rse"], *(r["files"][s] for s in states), human_bytes(r["bytes_done"])) for r in data["rses"]]
    return "<h2>RSEs</h2>" + table(["RSE", *states, "bytes done"], rows)


def _rules_section(data: dict[str, Any], pngs: dict[str, bytes]) -> str:
    rules = data["rules"]
    if not rules:
        return ""
    watched = any(r["ok"] is not None for r in rules)  # `rules watch` has reported progress
    by_expression: dict[str, dict[str, Any]] = {}
    for rule in rules:
        entry = by_expression.setdefault(rule["rse_expression"], {"rules": 0, "created": 0, "ok": 0,
                                                                  "replicating": 0, "stuck": 0})
        entry["rules"] += 1
        entry["created"] += rule["state"] == RuleState.CREATED.value
        for key in ("ok", "replicating", "stuck"):
            entry[key] = entry[key] + (rule[key] or 0) if watched else "-"
    summary = table(["RSE expression", "rules", "created", "files ok", "replicating", "stuck"],
                     [(e, *v.values()) for e, v in by_expression.items()])
    detail = table(["dataset", "RSE expression", "copies", "rule id", "ok", "replicating", "stuck"],
                    [(f"{r['scope']}:{r['dataset']}", r["rse_expression"], r["copies"], r["rule_id"] or "(planned)",
                      *("-" if r[k] is None else r[k] for k in ("ok", "replicating", "stuck"))) for r in rules],
                    scroll=len(rules) > 15)
    return ("<h2>Replication rules</h2>" + summary + _img(pngs, "replication.png") + _destinations(data, pngs)
            + detail)


def _destinations(data: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The real replication: files and bytes per destination at the last poll, over time, and the
    upload-to-replica latency."""
    if not data["destinations"]:
        return ""
    rows = [(e, s["ok"][-1], s["files"][-1], human_bytes(s["bytes_ok"][-1]), human_bytes(s["bytes"][-1]),
             s["stuck"][-1]) for e, s in data["destinations"].items()]
    out = table(["destination", "files ok", "files", "bytes ok", "bytes", "stuck"], rows) + \
        _img(pngs, "destinations.png")
    if latency := data["replication_latency"]:
        out += ("<p class=meta>Latency from a dataset's rule being added (its last file uploaded and "
                "registered) to the poll that saw each replica OK (late by at most one poll interval).</p>" +
                table(["replicas", "p50 (s)", "p90 (s)", "p99 (s)", "max (s)"],
                       [(latency["replicas"], latency["p50_s"], latency["p90_s"], latency["p99_s"],
                         latency["p100_s"])]))
    return out


def _retrievals_section(data: dict[str, Any]) -> str:
    """The retrieve runs of this night's data: each file verified against Rucio's adler32."""
    if not data["retrievals"]:
        return ""
    rows = [(", ".join(r["selection"]["dids"] or [f"{k}={v}" for k, v in (r["selection"]["filters"] or {}).items()]),
             r["from_rse"] or "any", r["files"]["done"], r["files"]["total"], r["files"]["failed"],
             human_bytes(r["bytes"]["done"]), (r["out"], "msg")) for r in data["retrievals"]]
    return ("<h2>Retrieval</h2><p class=meta>Files brought back from the lake, each verified against the "
            "adler32 Rucio holds.</p>" +
            table(["selection", "from RSE", "done", "files", "failed", "bytes done", "into"], rows))


def _errors_section(data: dict[str, Any]) -> str:
    errors = "".join([
        table(["source", "error class", "state", "stage", "files", "sample message"],
               [(e["source"], e["error_class"], e["state"], e["stage"], e["files"], (e["sample"], "msg"))
                for e in data["errors"]]) if data["errors"] else "<p>No failed or quarantined files.</p>",
        table(["target", "error class", "retries"], [tuple(r.values()) for r in data["retries"]])
        if data["retries"] else ""])
    return "<h2>Errors</h2>" + errors


def _provenance_section(data: dict[str, Any]) -> str:
    run, description = data["run"], data["run"]["description"]
    versions = run["versions"]
    rows = [("source", description.get("source")), ("RSE", ", ".join(run["rses"])),
            ("rules", ", ".join(run["rule_expressions"]) or "-"),
            ("options", json.dumps(description.get("options", {}), sort_keys=True)),
            ("nightlake", versions.get("nightlake")), ("rucio-clients", versions.get("rucio_clients")),
            ("Rucio server", f"{versions.get('rucio_server', '?')} at {run['rucio_host']} (account {run['account']})"),
            ("journal created", when(run["created"])), ("first start", when(run["started"])),
            ("last end", when(run["ended"])), ("sessions (run.start)", run["sessions"])]
    return "<h2>Provenance</h2>" + table(None, [(k, (v, "msg")) for k, v in rows])
