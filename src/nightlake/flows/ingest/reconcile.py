"""Reconcile: settle what a crash may have left uncertain, in bulk, before anything new.

A run always starts here. `uploading` files are looked up on storage (complete -> `uploaded`,
else their leftovers are deleted and they are planned again); `registering` files are looked up in
Rucio with one bulk query per batch (known -> `registered`, else `uploaded`); and `uploaded` files
an earlier run left are checked on storage again before they are registered, because bytes
altered meanwhile must never be registered as good.
"""

from __future__ import annotations

from nightlake.flows.ingest.context import Context
from nightlake.observe.events import Kind
from nightlake.runs.journal.ingest import FileRecord, FileState
from nightlake.storage import Stat

S = FileState


def reconcile(ctx: Context) -> None:
    """Every uncertain state, then the `uploaded` files of an earlier run."""
    _uploads(ctx)
    _registrations(ctx)
    _recheck_uploaded(ctx)


def _uploads(ctx: Context) -> None:
    for batch in ctx.journal.batches(S.UPLOADING, ctx.options.batch_files):
        complete = settle_uploads(ctx, batch)
        ctx.journal.mark_each(S.UPLOADED, [{"id": r.id, "adler32": s.adler32} for r, s in complete])


def settle_uploads(ctx: Context, batch: list[FileRecord]) -> list[tuple[FileRecord, Stat]]:
    """Files whose upload may or may not have happened (a crash, a cluster worker lost with its
    batch): the complete ones are returned with their stat, for the caller to journal; the others'
    leftovers are deleted and they are planned again."""
    complete, redo = [], []
    for record, stat in zip(batch, ctx.stat_all(batch)):
        (complete if _is_complete(ctx, record, stat) else redo).append((record, stat))
    ctx.discard_parts([r for r, _ in complete + redo])
    ctx.delete_quietly(r.pfn for r, s in redo if s is not None)
    ctx.journal.mark([r.id for r, _ in redo], S.PLANNED)
    ctx.bus.emit(Kind.RECONCILE_STORAGE, uploaded=len(complete), replanned=len(redo))
    return complete


def _registrations(ctx: Context) -> None:
    for batch in ctx.journal.batches(S.REGISTERING, ctx.catalog.batch_size):
        known = ctx.catalog.replicas_on(ctx.options.rse, [(r.scope, r.name) for r in batch])
        registered = [r.id for r in batch if (r.scope, r.name) in known]
        uploaded = [r.id for r in batch if (r.scope, r.name) not in known]
        ctx.journal.mark(registered, S.REGISTERED)
        ctx.journal.mark(uploaded, S.UPLOADED)
        ctx.bus.emit(Kind.RECONCILE_CATALOG, registered=len(registered), uploaded=len(uploaded))


def _recheck_uploaded(ctx: Context) -> None:
    """Copies that changed on storage are replaced; in place, the storage holds the user's only
    copy, so such a file fails instead."""
    for batch in ctx.journal.batches(S.UPLOADED, ctx.options.batch_files):
        bad = [(r, s) for r, s in zip(batch, ctx.stat_all(batch))
               if s is None or (s.size, s.adler32) != (r.bytes, r.adler32)]
        if ctx.options.in_place:
            for record, stat in bad:
                ctx.fail([record], ValueError(f"{record.pfn} changed on storage before registration: "
                                              f"{stat.size if stat else 'absent'} bytes, adler32 "
                                              f"{stat.adler32 if stat else '-'}; expected {record.adler32}"))
            continue
        ctx.delete_quietly(r.pfn for r, s in bad if s is not None)
        ctx.journal.mark([r.id for r, _ in bad], S.PLANNED)
        if bad:
            ctx.bus.emit(Kind.RECONCILE_STORAGE, uploaded=0, replanned=len(bad), changed=True)


def _is_complete(ctx: Context, record: FileRecord, stat: Stat | None) -> bool:
    """A file found under its final name counts as uploaded only with the right size and an
    adler32 that matches the source's (computed now for a local file when needed)."""
    if stat is None or stat.size != record.bytes or stat.adler32 is None:
        return False
    try:
        expected = record.adler32 or ctx.source_adler32(record)
    except OSError:
        return False
    return expected == stat.adler32
