"""Write a plan's files to disk: valid FITS, byte-identical on every run, safe to interrupt.

A file is written as `name.part`, fsynced, then renamed, so a file under its final name is always
complete. Re-running skips a file whose size and 2880-byte header match the plan: the header holds
DATASUM and CHECKSUM derived from the seed, so a file of another spec or seed is rewritten. (Data
corrupted on disk after a complete write is not detected by this check; verify with astropy.)

Files go to `OUT/<dataset>/<name>`; `file_path` is the one place that says so.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from nightlake import BadInput
from nightlake.flows.window import Window
from nightlake.night.fits.layout import HEADER_BYTES
from nightlake.night.payload import PayloadStream, open_stream
from nightlake.night.plan import PlannedFile


@dataclass
class GenerateReport:
    written: int = 0
    skipped: int = 0
    bytes_written: int = 0
    bytes_skipped: int = 0
    seconds: float = 0.0


def file_path(out: Path, planned: PlannedFile) -> Path:
    return Path(out) / planned.dataset / planned.name


def is_complete(path: Path, stream: PayloadStream) -> bool:
    """Right size and the planned header (a cheap check that still depends on the seed)."""
    try:
        if path.stat().st_size != stream.size:
            return False
        with open(path, "rb") as f:
            return f.read(HEADER_BYTES) == stream.header
    except FileNotFoundError:
        return False


def write_file(planned: PlannedFile, out: Path) -> bool:
    """Write one file unless already complete; True if it was written. Independent of other files."""
    stream = open_stream(planned)
    path = file_path(out, planned)
    if is_complete(path, stream):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        for segment in stream.segments():
            f.write(segment)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    return True


def generate(files: Iterable[PlannedFile], out: str | Path, workers: int | None = None,
             on_file: Callable[[PlannedFile, bool], None] | None = None) -> GenerateReport:
    """Write all files with a thread pool (writes and numpy release the GIL); `on_file` is called
    per finished file with whether it was written, for progress bars and journals."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot create directory ({exc.strerror})") from None
    workers = workers or min(8, os.cpu_count() or 1)
    report, started = GenerateReport(), time.perf_counter()

    def finish(planned: PlannedFile, future: Future) -> None:
        written = future.result()
        if written:
            report.written, report.bytes_written = report.written + 1, report.bytes_written + planned.size
        else:
            report.skipped, report.bytes_skipped = report.skipped + 1, report.bytes_skipped + planned.size
        if on_file:
            on_file(planned, written)

    with ThreadPoolExecutor(workers) as pool:
        window: Window[PlannedFile] = Window(pool, 4 * workers)  # the plan is never materialised
        for planned in files:
            for finished in window.submit(lambda p: write_file(p, out), planned):
                finish(*finished)
        for finished in window.drain():
            finish(*finished)
    report.seconds = time.perf_counter() - started
    return report


def write_triggered(files: Iterable[PlannedFile], out: str | Path, rate: float, end_markers: bool = False,
                    stopped: Callable[[], bool] = lambda: False) -> int:
    """Write files one after another at `rate` files/s, as an on-site writer does for
    `nightlake daemon`: each complete under its name, then its `<file>.trigger` (a symlink to it);
    with `end_markers`, `<dataset>.end` after a dataset's last file. Returns the files written."""
    out, written, started, dataset = Path(out), 0, time.monotonic(), None
    for planned in files:
        if stopped():
            break
        if end_markers and dataset is not None and planned.dataset != dataset:
            _mark_end(out, dataset)
        dataset = planned.dataset
        if (wait := started + written / rate - time.monotonic()) > 0:
            time.sleep(wait)
        write_file(planned, out)
        path = file_path(out, planned)
        trigger = path.with_name(path.name + ".trigger")
        if not trigger.is_symlink():
            trigger.symlink_to(path.name)
        written += 1
    if end_markers and dataset is not None and not stopped():
        _mark_end(out, dataset)
    return written


def _mark_end(out: Path, dataset: str) -> None:
    (out / dataset / f"{dataset}.end").touch()
