"""A campaign directory: one run directory per phase, and what ties them into one campaign.

    DIR/campaign.json         the campaign as validated (checked on every re-run: the same phases)
    DIR/state.json            each phase's progress, and the fault in force while a phase runs
    DIR/specs/NN-NAME.toml    a scaled phase's night spec, as ingested
    DIR/NN-NAME/              the phase's run directory (`runs/rundir`), resumable like any run

The fault in force is written before it is applied, so a campaign killed during a faulted phase
leaves a record that the re-run reads to clear it (or re-apply it for the phase it resumes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.runs.rundir import RunDir

IDENTITY = ("name", "source", "rse", "scope", "scale")  # of a phase: what a re-run may not change
FINISHED = "finished"


@dataclass(frozen=True)
class CampaignDir:
    path: Path

    document = property(lambda self: self.path / "campaign.json")
    state_file = property(lambda self: self.path / "state.json")

    def is_campaign(self) -> bool:
        return self.document.is_file()

    def phase_run(self, index: int, name: str) -> RunDir:
        return RunDir(self.path / f"{index + 1:02d}-{name}")

    def spec_path(self, index: int, name: str) -> Path:
        return self.path / "specs" / f"{index + 1:02d}-{name}.toml"

    def open(self, description: dict[str, Any]) -> None:
        """A new campaign directory, or the same campaign's (phase by phase) to resume."""
        if self.is_campaign():
            saved = self.load()
            ours, theirs = description["phases"], saved["phases"]
            if len(ours) != len(theirs):
                raise BadInput(f"{self.path} holds another campaign ({len(theirs)} phases, now {len(ours)}); "
                               "use a new --run directory")
            for mine, old in zip(ours, theirs):
                for key in IDENTITY:
                    if mine.get(key) != old.get(key):
                        raise BadInput(f"{self.path} holds another campaign (phase {old['name']} {key}: "
                                       f"{old.get(key)!r}, now {mine.get(key)!r}); use a new --run directory")
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise BadInput(f"{self.path} is not empty and holds no campaign; use a new --run directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self._write(self.document, description)

    def load(self) -> dict[str, Any]:
        if not self.is_campaign():
            raise BadInput(f"{self.path} holds no campaign (no {self.document.name})")
        return json.loads(self.document.read_text())

    def state(self) -> dict[str, Any]:
        """{"phases": {name: {"state", "started", "ended", ...}}, "fault": {...} or None}."""
        if not self.state_file.exists():
            return {"phases": {}, "fault": None}
        return json.loads(self.state_file.read_text())

    def save_state(self, state: dict[str, Any]) -> None:
        self._write(self.state_file, state)

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        """Atomically: a campaign killed mid-write keeps its previous state."""
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(path)
