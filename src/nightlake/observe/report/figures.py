"""Figures: report data -> PNG bytes, one function per figure; a figure without data is left out.
matplotlib's object API only (no pyplot): no global state, no GUI backend."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from nightlake.observe.report.collect import STATES

DATASET_BARS = 40  # the figure shows the least complete datasets; the table shows all
COLOURS = {"planned": "#b0b0b0", "uploading": "#9ecae1", "uploaded": "#6baed6", "registering": "#4292c6",
           "registered": "#2171b5", "attached": "#08519c", "done": "#2ca02c", "failed": "#d62728",
           "quarantined": "#ff7f0e", "upload": "#1f77b4", "registration": "#9467bd",
           "replication": "#17becf", "retrieval": "#8c564b", "ok": "#2ca02c", "replicating": "#1f77b4",
           "stuck": "#d62728"}


def figures(data: dict[str, Any]) -> dict[str, bytes]:
    """The report's PNGs by file name; a figure without data is left out."""
    makers = {"throughput.png": _throughput_figure, "progress.png": _progress_figure,
              "replication.png": _replication_figure, "destinations.png": _destinations_figure,
              "datasets.png": _datasets_figure}
    out = {}
    for name, make in makers.items():
        figure = make(data)
        if figure is not None:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            out[name] = buffer.getvalue()
    return out


def time_axis(span_s: float) -> tuple[float, str]:
    """Divisor and label that keep elapsed-time ticks readable for a 5 s demo and an 8 h night."""
    if span_s < 300:
        return 1, "s"
    return (60, "min") if span_s < 3 * 3600 else (3600, "h")


def new_figure(rows: int = 1, height: float = 3.2):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(10, height * rows), layout="constrained")
    return figure, figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]


def _throughput_figure(data: dict[str, Any]):
    throughput = data["throughput"]
    if not throughput:
        return None
    width, bins = throughput["bin_s"], throughput["bins"]
    scale, unit = time_axis(width * bins)
    edges = np.arange(bins + 1) * width / scale
    figure, (files_ax, bytes_ax) = new_figure(2)
    for phase, values in throughput["phases"].items():
        files_ax.stairs(np.asarray(values["files"]) / width, edges, label=phase, color=COLOURS[phase], lw=1.5)
        if values["bytes"] is not None:
            bytes_ax.stairs(np.asarray(values["bytes"]) / width / 1e6, edges, label=phase,
                            color=COLOURS[phase], lw=1.5)
    files_ax.set(ylabel="files/s", title=f"Throughput per phase ({width} s bins)")
    bytes_ax.set(ylabel="MB/s", xlabel=f"time since first event ({unit})")
    for ax in (files_ax, bytes_ax):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right")
    return figure


def _progress_figure(data: dict[str, Any]):
    series = dict(data["progress"])
    if data["replication"]:
        series["replicated"] = {"ts": data["replication"]["ts"], "files": data["replication"]["ok"]}
    if not series:
        return None
    start, end = data["span"]["first"], data["span"]["last"]  # the night's events and its retrieves'
    scale, unit = time_axis(end - start)
    figure, (ax,) = new_figure(1, 3.6)
    colours = {"uploaded": COLOURS["upload"], "done": COLOURS["done"], "replicated": COLOURS["replication"],
               "retrieved": COLOURS["retrieval"]}
    for name, values in series.items():  # from 0 at the start to the last value at the end
        ts = (np.asarray([start, *values["ts"], max(end, values["ts"][-1])]) - start) / scale
        ax.step(ts, [0, *values["files"], values["files"][-1]], where="post", label=name, color=colours[name],
                ls="--" if name == "replicated" else "-", lw=1.8)
    ax.axhline(data["files"]["total"], color="#555", ls=":", lw=1, label="files in run")
    ax.set(title="Cumulative files per phase", ylabel="files", xlabel=f"time since first event ({unit})")
    ax.set_xlim(0, (end - start) / scale)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def _replication_figure(data: dict[str, Any]):
    series = data["replication"]
    if not series:
        return None
    start, end = series["ts"][0], max(series["ts"][-1], data["span"]["last"])
    scale, unit = time_axis(end - start)
    figure, (ax,) = new_figure(1, 3.2)
    ts = (np.asarray([*series["ts"], end]) - start) / scale  # hold the last counts until the end
    ax.stackplot(ts, *([*series[k], series[k][-1]] for k in ("ok", "replicating", "stuck")),
                 labels=["ok", "replicating", "stuck"],
                 colors=[COLOURS[k] for k in ("ok", "replicating", "stuck")], step="post")
    ax.set(title="Replication: files per rule state (all rules)", ylabel="files",
           xlabel=f"time since the first poll of the rules ({unit})")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return figure


def _destinations_figure(data: dict[str, Any]):
    """Files and bytes replicated per destination, as `rules watch` polled them."""
    destinations = data["destinations"]
    if not destinations:
        return None
    start = min(series["ts"][0] for series in destinations.values())
    end = max(max(series["ts"][-1] for series in destinations.values()), data["span"]["last"])
    scale, unit = time_axis(end - start)
    figure, (files_ax, bytes_ax) = new_figure(2)
    for expression, series in destinations.items():
        ts = (np.asarray([*series["ts"], end]) - start) / scale
        line = files_ax.step(ts, [*series["ok"], series["ok"][-1]], where="post", label=expression, lw=1.8)[0]
        files_ax.axhline(series["files"][-1], color=line.get_color(), ls=":", lw=1)
        bytes_ax.step(ts, np.asarray([*series["bytes_ok"], series["bytes_ok"][-1]]) / 1e6, where="post",
                      color=line.get_color(), label=expression, lw=1.8)
    files_ax.set(title="Replicated per destination (dotted: files to replicate)", ylabel="files (locks OK)")
    bytes_ax.set(ylabel="MB", xlabel=f"time since the first poll ({unit})")
    for ax in (files_ax, bytes_ax):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left")
    return figure


def _datasets_figure(data: dict[str, Any]):
    datasets = sorted(data["datasets"], key=lambda d: d["files"]["done"] / max(d["total"], 1))[:DATASET_BARS]
    if not datasets:
        return None
    figure, (ax,) = new_figure(1, max(1.6, 0.28 * len(datasets) + 1.0))
    labels = [d["name"] for d in datasets][::-1]
    left = np.zeros(len(datasets))
    for state in STATES:
        counts = np.asarray([d["files"][state] for d in datasets][::-1], dtype=float)
        if counts.any():
            ax.barh(labels, counts, left=left, color=COLOURS[state], label=state, height=0.7)
            left += counts
    shown = "all datasets" if len(datasets) == len(data["datasets"]) else \
        f"the {len(datasets)} least complete of {len(data['datasets'])} datasets"
    ax.set(title=f"Files per state, {shown}", xlabel="files")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return figure
