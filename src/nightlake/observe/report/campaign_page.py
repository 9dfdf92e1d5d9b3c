"""The campaign report's figure and page: every phase on one timeline (files/s, MB/s, files
replicated, each phase's span shaded and named with its RSE and file sizes), then the phases'
table, their replication and their errors by class. One self-contained page, like a run's."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from nightlake.night.spec import human_bytes
from nightlake.observe.report.figures import new_figure, time_axis
from nightlake.observe.report.html import CSS, escape, table, when

PHASE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def timeline_png(data: dict[str, Any]) -> bytes | None:
    """One timeline of the whole campaign: three rows sharing the campaign's clock."""
    if not data["span"]:
        return None
    start, end = data["span"]["first"], data["span"]["last"]
    scale, unit = time_axis(end - start)
    figure, (files_ax, bytes_ax, replicated_ax) = new_figure(3, 2.6)
    for i, phase in enumerate(p for p in data["phases"] if p.get("span")):
        colour = PHASE_COLOURS[i % len(PHASE_COLOURS)]
        label = f"{phase['name']} → {phase['rse']}, {phase['sizes']}" + (f", fault {phase['fault']}"
                                                                         if phase["fault"] else "")
        first, last = ((phase["span"][k] - start) / scale for k in ("first", "last"))
        for ax in (files_ax, bytes_ax, replicated_ax):
            ax.axvspan(first, last, color=colour, alpha=0.08, lw=0)
        files_ax.text(first, 1.0, f" {phase['index']}", transform=files_ax.get_xaxis_transform(), va="top",
                      color=colour, fontweight="bold")
        if phase["mb_per_s"] is not None:  # a throttled phase's rate is a line on the floor: say it
            bytes_ax.text(first, 0.98, f" mean {phase['mb_per_s']:.2f} MB/s", va="top", fontsize=8, color=colour,
                          transform=bytes_ax.get_xaxis_transform())
        _rates(files_ax, bytes_ax, phase, start, scale, colour, label)
        _replicated(replicated_ax, phase, start, end, scale, colour)
    files_ax.set(ylabel="files/s", title=f"Campaign {data['campaign']['name']}: upload rate per phase")
    bytes_ax.set(ylabel="MB/s")
    replicated_ax.set(ylabel="files replicated", xlabel=f"time since the campaign's first event ({unit})")
    for ax in (files_ax, bytes_ax, replicated_ax):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.set_xlim(0, max(1.02 * (end - start) / scale, 1e-9))  # a margin shows the last poll's counts
    if files_ax.get_legend_handles_labels()[0]:
        figure.legend(*files_ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _rates(files_ax, bytes_ax, phase: dict[str, Any], start: float, scale: float, colour: str, label: str) -> None:
    """The phase's own upload bins, placed on the campaign's clock."""
    throughput = phase["throughput"]
    upload = (throughput or {}).get("phases", {}).get("upload")
    if not upload:
        return
    width = throughput["bin_s"]
    edges = (throughput["start"] - start + np.arange(throughput["bins"] + 1) * width) / scale
    files_ax.stairs(np.asarray(upload["files"]) / width, edges, color=colour, lw=1.5, label=label)
    if upload["bytes"] is not None:
        bytes_ax.stairs(np.asarray(upload["bytes"]) / width / 1e6, edges, color=colour, lw=1.5)


def _replicated(ax, phase: dict[str, Any], start: float, end: float, scale: float, colour: str) -> None:
    """Files replicated (locks OK) per destination of the phase's rules, as they were polled."""
    for expression, series in phase["replication"].items():
        ts = (np.asarray([*series["ts"], end]) - start) / scale
        ax.step(ts, [*series["ok_series"], series["ok_series"][-1]], where="post", color=colour, lw=1.8,
                label=f"{phase['name']} → {expression}")
        ax.axhline(series["files"], color=colour, ls=":", lw=1)


def render_page(data: dict[str, Any], png: bytes | None) -> str:
    campaign = data["campaign"]
    title = f"nightlake campaign report: {campaign['name']}"
    names = ", ".join(p["name"] for p in data["phases"])
    figure = (f"<h2>Timeline</h2><p class=meta>Upload rate of each phase (its own bins), files replicated "
              f"per destination (dotted: files to replicate); shaded: each phase's span.</p>"
              f"<img id=timeline alt='timeline of {len(data['phases'])} phases: {escape(names)}' "
              f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>") if png else ""
    bad = any(p["state"] != "finished" or p.get("errors_total") for p in data["phases"])
    sections = [f"<h1>{escape(title)}</h1>",
                f"<p class=meta>{escape(campaign['description'])}</p>",
                f"<p class=meta>campaign directory {escape(campaign['path'])} · generated "
                f"{when(data['generated']['at'])} by nightlake {escape(data['generated']['nightlake'])}</p>",
                f"<p class='headline{' bad' if bad else ''}'>{escape(data['headline'])}</p>",
                _phases_section(data), figure, _replication_section(data), _errors_section(data),
                _provenance_section(data)]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(s for s in sections if s)}</body></html>\n")


def _span(phase: dict[str, Any]) -> str:
    if not phase.get("span"):
        return "-"
    first, last = phase["span"]["first"], phase["span"]["last"]
    return f"{when(first)[11:19]} - {when(last)[11:19]} ({last - first:.0f} s)"


def _phases_section(data: dict[str, Any]) -> str:
    """The slide: phase, time span, RSE, file sizes, files, bytes, mean rate, errors."""
    rows = []
    for p in data["phases"]:
        if not p["files"]:
            rows.append((f"{p['index']} {p['name']}", p["state"], "-", p["rse"], p["fault"] or "-", *["-"] * 7))
            continue
        rows.append((f"{p['index']} {p['name']}", p["state"], _span(p), p["rse"], p["fault"] or "-", p["sizes"],
                     f"{p['files']['done']:,} / {p['files']['total']:,}", human_bytes(p["bytes"]["done"]),
                     "-" if p["mb_per_s"] is None else f"{p['mb_per_s']:.2f} MB/s",
                     "-" if p["files_per_s"] is None else f"{p['files_per_s']:.2f}", _replicated_text(p),
                     p["errors_total"]))
    return "<h2>Phases</h2>" + table(
        ["phase", "state", "time span (UTC)", "RSE", "condition", "file sizes", "files done", "bytes done",
         "mean rate", "files/s", "replicated", "files with errors"], rows)


def _replicated_text(phase: dict[str, Any]) -> str:
    """Locks OK of all the phase's destinations at the last poll, of all its locks."""
    destinations = phase["replication"].values()
    if not destinations:
        return "-"
    return f"{sum(d['ok'] for d in destinations):,} / {sum(d['files'] for d in destinations):,}"


def _replication_section(data: dict[str, Any]) -> str:
    rows = [(p["name"], expression, d["ok"], d["files"], human_bytes(d["bytes_ok"]), d["stuck"])
            for p in data["phases"] if p["files"] for expression, d in p["replication"].items()]
    if not rows:
        return ""
    return ("<h2>Replication per phase</h2><p class=meta>Locks per destination of each phase's rules at the "
            "last poll of its watch.</p>" + table(["phase", "destination", "files ok", "files", "bytes ok",
                                                    "stuck"], rows))


def _errors_section(data: dict[str, Any]) -> str:
    rows = [(p["name"], e["source"], e["error_class"], e["stage"], e["files"], (e["sample"], "msg"))
            for p in data["phases"] if p["files"] for e in p["errors"]]
    retries = [(p["name"], r["target"], r["error_class"], r["retries"])
               for p in data["phases"] if p["files"] for r in p["retries"]]
    body = table(["phase", "source", "error class", "stage", "files", "sample message"], rows) if rows \
        else "<p>No failed, quarantined or stuck files in any phase.</p>"
    if retries:
        body += table(["phase", "target", "error class", "retries"], retries)
    return "<h2>Errors per phase</h2>" + body


def _provenance_section(data: dict[str, Any]) -> str:
    rows = [(p["name"], (p["source"], "msg"), (p["run"], "msg"), p.get("sessions", "-"),
             (p.get("versions") or {}).get("rucio_server", "-"), p.get("rucio_host") or "-") for p in data["phases"]]
    return "<h2>Provenance</h2>" + table(["phase", "source", "run directory", "sessions", "Rucio server",
                                           "at"], rows)
