"""A campaign run: its phases in order, each an ingest (and a watch of its rules) in a run
directory of its own, under one campaign directory (`runs/campaign`).

Every phase is checked before the first one starts (its source, its scope, its RSE and its rules'
expressions against the catalog, its fault against the lake), so a mistake in phase 3 costs
nothing of phases 1 and 2. A re-run skips the finished phases and resumes the interrupted one,
which is an ordinary ingest resume. A phase's condition (`fault = "slow"` on its RSE) is applied
when it starts and cleared when it ends, whatever way it ends; a kill leaves it recorded in the
campaign's state, and the re-run clears it before anything else (the resumed phase applies its
own again).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.catalog.rules import RulePolicy
from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.run import IngestRequest, run_ingest
from nightlake.flows.rules import Poll, listed_since, run_rules, watch
from nightlake.flows.session import DEFAULT_PATIENCE, open_catalog
from nightlake.night.campaign import Campaign, Phase, scaled_spec
from nightlake.observe.events import EventBus, EventLog
from nightlake.runs.campaign import FINISHED, CampaignDir
from nightlake.runs.rundir import INGEST, RunDir


class Faults(Protocol):
    """RSE faults on demand: only the local lake has them (`lake/faults.LakeFaults`)."""

    def check(self, rse: str, mode: str) -> None: ...  # BadInput when the fault cannot be applied
    def inject(self, rse: str, mode: str) -> None: ...
    def clear(self, rse: str) -> None: ...


@dataclass(frozen=True)
class CampaignOptions:
    """`workers`: parallel uploads of each phase's ingest. `patience`: seconds an outage is ridden
    through. `interval`: seconds between two polls of a phase's rules."""

    workers: int = 8
    patience: float = DEFAULT_PATIENCE
    interval: float = 5.0


@dataclass(frozen=True)
class Display:
    """How a campaign is shown: a line per step, each ingest run under a progress display, and a
    listener of each rule poll."""

    say: Callable[[str], None] = lambda line: None
    run: Callable[[Callable[[EventBus], dict]], dict] = lambda work: work(EventBus())
    on_poll: Callable[[], Callable[[Poll], None]] = lambda: (lambda seen: None)


@dataclass(frozen=True)
class PhaseOutcome:
    name: str
    state: str  # finished | incomplete | not started
    files: dict[str, int] | None = None
    rules: dict[str, Any] | None = None  # {"rules", "ok", "stuck", "timed_out"} of the watch


def run_campaign(campaign: Campaign, path: Path, faults: Faults, options: CampaignOptions = CampaignOptions(),
                 display: Display = Display()) -> list[PhaseOutcome]:
    """Check every phase, then run them in order; stop at a phase whose ingest is incomplete
    (a re-run resumes it). Returns each phase's outcome."""
    check_campaign(campaign, open_catalog(EventBus(), options.patience), faults)
    directory = CampaignDir(path)
    directory.open(campaign.description())
    _clear_stale_fault(directory, faults, display)
    outcomes: list[PhaseOutcome] = []
    for index, phase in enumerate(campaign.phases):
        if outcomes and outcomes[-1].state != FINISHED:
            outcomes.append(PhaseOutcome(phase.name, "not started"))
            continue
        outcomes.append(_run_phase(campaign, directory, index, phase, faults, options, display))
    return outcomes


def check_campaign(campaign: Campaign, catalog: Catalog, faults: Faults) -> None:
    """What only the catalog and the lake know, for every phase, before the first one starts."""
    for phase in campaign.phases:
        try:
            spec = _spec(campaign, phase)
            catalog.check_scopes([spec.night.scope if spec else phase.scope])
            catalog.check_expressions(p.rse_expression for p in _policies(phase, spec))
            catalog.rse_info(phase.rse)
            if phase.fault:
                faults.check(phase.rse, phase.fault)
        except BadInput as exc:
            raise BadInput(f"phase {phase.name}: {exc}") from None


def _spec(campaign: Campaign, phase: Phase):
    source = campaign.source(phase)
    return scaled_spec(source, phase.scale)[0] if source.suffix == ".toml" else None


def _policies(phase: Phase, spec) -> tuple[RulePolicy, ...]:
    """The phase's rules; without any, its spec's own (as `nightlake ingest` does)."""
    rules = phase.rules or (spec.rules if spec else [])
    return tuple(RulePolicy(r.rse_expression, r.copies, r.lifetime, r.activity) for r in rules)


def _clear_stale_fault(directory: CampaignDir, faults: Faults, display: Display) -> None:
    state = directory.state()
    if stale := state.get("fault"):
        faults.clear(stale["rse"])
        display.say(f"cleared the fault {stale['mode']} that the interrupted phase {stale['phase']} left on "
                    f"{stale['rse']}")
        directory.save_state({**state, "fault": None})


def _run_phase(campaign: Campaign, directory: CampaignDir, index: int, phase: Phase, faults: Faults,
               options: CampaignOptions, display: Display) -> PhaseOutcome:
    run = directory.phase_run(index, phase.name)
    record = directory.state()["phases"].get(phase.name, {})
    if record.get("state") == FINISHED:
        display.say(f"phase {index + 1} {phase.name}: finished before, skipped")
        return PhaseOutcome(phase.name, FINISHED, record.get("files"), record.get("rules"))
    _record(directory, phase.name, state="running", started=record.get("started") or time.time())
    display.say(f"phase {index + 1} {phase.name}: ingest into {phase.rse}"
                + (f" with the fault {phase.fault} on it" if phase.fault else ""))
    request = IngestRequest(source=_source(campaign, directory, index, phase), run=run.path,
                            options=IngestOptions(rse=phase.rse, workers=options.workers), scope=phase.scope,
                            rules=_policies(phase, None), patience=options.patience)
    with _condition(directory, phase, faults, display):
        summary = display.run(lambda bus: run_ingest(request, bus))
        if not summary["complete"]:
            _record(directory, phase.name, state="incomplete", files=summary["files"])
            return PhaseOutcome(phase.name, "incomplete", summary["files"])
        rules = _watch(run, phase, options, display) if phase.watch else None
    _record(directory, phase.name, state=FINISHED, ended=time.time(), files=summary["files"], rules=rules)
    return PhaseOutcome(phase.name, FINISHED, summary["files"], rules)


def _source(campaign: Campaign, directory: CampaignDir, index: int, phase: Phase) -> Path:
    """The phase's night as ingested: its source, or its scaled spec written into the campaign."""
    source = campaign.source(phase)
    text = scaled_spec(source, phase.scale)[1] if source.suffix == ".toml" else None
    if text is None:
        return source
    path = directory.spec_path(index, phase.name)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


@contextlib.contextmanager
def _condition(directory: CampaignDir, phase: Phase, faults: Faults, display: Display) -> Iterator[None]:
    """The phase's fault while its block runs, recorded before it is applied, cleared after."""
    if not phase.fault:
        yield
        return
    directory.save_state({**directory.state(), "fault": {"rse": phase.rse, "mode": phase.fault,
                                                         "phase": phase.name}})
    faults.inject(phase.rse, phase.fault)
    try:
        yield
    finally:
        faults.clear(phase.rse)
        directory.save_state({**directory.state(), "fault": None})
        display.say(f"phase {phase.name}: fault {phase.fault} on {phase.rse} cleared")


def _watch(run: RunDir, phase: Phase, options: CampaignOptions, display: Display) -> dict[str, Any] | None:
    """The phase's rules followed until settled or `phase.watch` seconds, into its event log."""
    with run.load(INGEST) as journal:
        if not any(r["rule_id"] for r in journal.rules()):
            return None
        tracked, since = run_rules(journal), listed_since(journal)
    display.say(f"phase {phase.name}: following its {len(tracked)} rule(s) for up to {phase.watch:.0f} s")
    bus = EventBus()
    with EventLog(run.events) as log:
        bus.subscribe(log)
        result = watch(open_catalog(bus, options.patience), tracked, bus, phase.watch, options.interval, since,
                       on_poll=display.on_poll())
    return {"rules": len(result.statuses), "ok": sum(s.state == "OK" for s in result.statuses),
            "stuck": len(result.stuck), "timed_out": result.timed_out}


def _record(directory: CampaignDir, name: str, **fields: Any) -> None:
    state = directory.state()
    state["phases"][name] = {**state["phases"].get(name, {}), **fields}
    directory.save_state(state)
