"""What `nightlake daemon` was asked, as plain data: `run` checks it, `loop` runs by it, and its
description (`run.json`) is what a restart must match."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nightlake.catalog.rules import RulePolicy
from nightlake.flows.daemon.describe import Naming
from nightlake.flows.session import DEFAULT_PATIENCE


@dataclass(frozen=True)
class DaemonRequest:
    """Everything `nightlake daemon` was asked; times in seconds.

    A batch is registered when it holds `batch_files` files (≤ 1000, the server's limit) or its
    oldest trigger is `batch_age` old. A dataset is closed once its files have been quiet for
    `quiet` seconds, or at once when `<dataset>.end` appears. The tree is rescanned every `rescan`;
    with `inotify`, triggers are also taken as they appear."""

    watch: Path
    run: Path
    rse: str
    scope: str
    rules: tuple[RulePolicy, ...] = ()
    naming: Naming = field(default_factory=Naming)
    required: tuple[str, ...] = ()
    batch_files: int = 1000
    batch_age: float = 5.0
    quiet: float = 300.0
    rescan: float = 1.0
    workers: int = 8
    patience: float = DEFAULT_PATIENCE
    log_every: float = 30.0
    scheme: str | None = None
    inotify: bool = False  # triggers also seen as they are created (inotify_simple), the rescan a fallback

    def description(self) -> dict[str, Any]:
        watch = str(self.watch.absolute())
        return {"command": "daemon", "watch": watch, "source": watch, "rse": self.rse, "scope": self.scope,
                "naming": asdict(self.naming), "required": list(self.required), "batch_files": self.batch_files,
                "batch_age": self.batch_age, "quiet": self.quiet, "rules": [asdict(r) for r in self.rules],
                "in_place": True}
