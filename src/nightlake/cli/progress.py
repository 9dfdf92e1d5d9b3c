"""The live ingest display: a listener on the event stream (accounting is separate from transfer).

Files/s, MB/s, per-stage counts and an ETA, redrawn by rich a few times a second; the pipeline
only emits events and never knows it is being watched.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from nightlake.events import Event


class IngestProgress:
    """Listens to the event stream and draws the progress of one run."""

    def __init__(self, total_files: int, done_files: int, console: Console):
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.uploaded_files = self.uploaded_bytes = self.registered = self.failed = 0
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        self.upload_task = self.progress.add_task("uploaded", total=total_files, completed=done_files)
        self.done_task = self.progress.add_task("registered", total=total_files, completed=done_files)
        self.live = Live(Group(self.progress, Text("")), console=console, refresh_per_second=4, transient=False)

    def __call__(self, event: Event) -> None:
        with self._lock:
            fields = event.fields
            if event.kind == "upload.done":
                self.uploaded_files += 1
                self.uploaded_bytes += fields.get("bytes", 0)
                self.progress.advance(self.upload_task)
            elif event.kind == "done.batch":
                self.registered += fields.get("files", 0)
                self.progress.advance(self.done_task, fields.get("files", 0))
            elif event.kind == "file.failed":
                self.failed += fields.get("files", 0)
            self.live.update(Group(self.progress, self._rates()))

    def _rates(self) -> Text:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return Text(f"{self.uploaded_files / elapsed:8.1f} files/s  {self.uploaded_bytes / 1e6 / elapsed:8.1f} MB/s"
                    f"  registered {self.registered}  failed {self.failed}")

    def __enter__(self) -> "IngestProgress":
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)
