"""The catalog is the truth when the journal is lost: a run that finds its datasets already in
Rucio takes over what an earlier run did instead of doing it again.

A run directory can be lost (a disk died, a mistake); the same command into a new one must then
converge, not upload twice or refuse. When `Registrar.create_datasets` finds some of the run's
datasets already in Rucio:

- a closed dataset is accepted only when it holds exactly the files this run plans (names, sizes,
  adler32): nothing can be attached to it any more, so it must already be complete; otherwise it
  is bad input, said in one line, before any upload;
- planned files that Rucio already lists on the upload RSE with the right size and adler32 are
  journaled as uploaded, without a new upload (and as attached, in a closed dataset, which holds
  them); registration then finds them known, attaching is idempotent, metadata is set again;
- rules are looked up before they are added (`Catalog.ensure_rule`), so none is added twice.

This costs one `list_replicas` per 1000 planned files, and only in a run that found existing
datasets: a fresh night pays nothing.
"""

from __future__ import annotations

from nightlake import BadInput
from nightlake.catalog.client import Catalog
from nightlake.flows.ingest.context import Context
from nightlake.night import sources
from nightlake.night.payload import open_stream
from nightlake.observe.events import Kind
from nightlake.runs.journal.ingest import FileRecord, FileState

S = FileState
Did = tuple[str, str]


def check_closed(ctx: Context, catalog: Catalog, dataset: Did) -> None:
    """A closed dataset must already hold exactly the run's files; BadInput says how it differs."""
    planned = {(r.scope, r.name): r for r in ctx.journal.dataset_files(*dataset)}
    held = {(f["scope"], f["name"]): f for f in catalog.files_in([dataset])}
    missing, extra = sorted(set(planned) - set(held)), sorted(set(held) - set(planned))
    differ = sorted(did for did in set(planned) & set(held) if not _same(ctx, planned[did], held[did]))
    if missing or extra or differ:
        what = "; ".join(f"{label} {len(dids)} ({dids[0][1]}{' ...' if len(dids) > 1 else ''})"
                         for label, dids in (("missing", missing), ("not planned", extra), ("different", differ))
                         if dids)
        raise BadInput(f"dataset {dataset[0]}:{dataset[1]} exists and is closed, and holds other files than this "
                       f"run plans: {what}; choose other dataset names, or reopen it")


def adopt_registered(ctx: Context, catalog: Catalog, closed: set[Did]) -> None:
    """Journal the planned files Rucio already has on the upload RSE as uploaded (attached, in a
    closed dataset), a batch at a time."""
    for batch in ctx.journal.batches(S.PLANNED, ctx.options.batch_files):
        known = catalog.replicas_on(ctx.options.rse, [(r.scope, r.name) for r in batch])
        found = [r for r in batch if (r.scope, r.name) in known and _same(ctx, r, known[(r.scope, r.name)])]
        if not found:
            continue
        pfns = ctx.pfn_of(found)
        ctx.journal.mark_each(S.UPLOADED, [{"id": r.id, "pfn": pfns[f"{r.scope}:{r.name}"], "rse": ctx.options.rse,
                                            "adler32": known[(r.scope, r.name)]["adler32"]} for r in found])
        held = [r.id for r in found if (r.scope, r.dataset) in closed]
        for state in (S.REGISTERING, S.REGISTERED, S.ATTACHED):  # the closed dataset holds them
            ctx.journal.mark(held, state)
        ctx.bus.emit(Kind.RECONCILE_CATALOG, registered=len(found), uploaded=0, adopted=len(found))


def _same(ctx: Context, record: FileRecord, replica: dict) -> bool:
    """The catalog's file is this one: same size, and same adler32 (the source's, computed when
    the journal has none: a payload's without a data pass, a local file's by reading it)."""
    if replica.get("bytes") != record.bytes:
        return False
    if record.adler32 is None and record.source.startswith(sources.PAYLOAD):
        return open_stream(sources.planned_file(record)).adler32 == replica.get("adler32")
    try:
        return (record.adler32 or ctx.source_adler32(record)) == replica.get("adler32")
    except OSError:
        return False
