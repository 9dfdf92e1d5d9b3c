"""Register: uploaded files become replicas in Rucio, join their datasets and get their metadata,
each step in bulk and journaled before and after; datasets are created first and get their rules
and are closed as soon as all their files are done.

    uploaded --(list_replicas pre-filter, add_replicas)--> registered --(attach per dataset)-->
    attached --(set_dids_metadata_bulk)--> done

Every call takes a whole batch (`catalog` chunks to the server's 1000 and bisects a failure), so a
500,000-file night costs about one call per 200 files. A `Registrar` works with one catalog
client: the register stage and the metadata stage run in threads (`catalog_lanes` each) with one each.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from nightlake.catalog.bulk import Rejected
from nightlake.catalog.client import Catalog
from nightlake.catalog.rules import RulePolicy
from nightlake.flows.ingest import adopt
from nightlake.flows.ingest.context import Context
from nightlake.night import names
from nightlake.observe.events import Kind
from nightlake.runs.journal.ingest import DatasetState, FileRecord, FileState, RuleState

S = FileState


class Registrar:
    """The catalog side of a run with one client; `settling` is the lock the registrars of one run
    share, so that a dataset completed in two lanes at once gets its rules and is closed once."""

    def __init__(self, ctx: Context, catalog: Catalog, settling: threading.Lock | None = None):
        self.ctx, self.catalog = ctx, catalog
        self.dirac = ctx.options.register == "dirac"
        self.settling = settling or threading.Lock()

    def create_datasets(self) -> None:
        """Each dataset is created once per run, in bulk, before any file is attached. Datasets
        that already exist were made by an earlier run whose journal is gone: `adopt` takes over."""
        journal = self.ctx.journal
        planned = [(scope, name) for scope, name, _ in journal.datasets(DatasetState.PLANNED)]
        if not planned or self.dirac:  # DIRAC's registration makes each dataset with its first file
            return
        known = self.catalog.existing(planned)
        closed = {did for did, meta in known.items() if meta.get("is_open") is False}
        for dataset in sorted(closed):
            adopt.check_closed(self.ctx, self.catalog, dataset)
        links = self._create_containers(planned)
        if rejected := self.catalog.add_datasets([did for did in planned if did not in known]):
            raise rejected[0].failure
        if rejected := self.catalog.attach_collections(links):
            raise rejected[0].failure
        journal.mark_datasets([did for did in planned if did not in closed], DatasetState.CREATED)
        journal.mark_datasets(closed, DatasetState.CLOSED)
        self.ctx.bus.emit(Kind.DATASETS_CREATED, datasets=len(planned) - len(known), existing=len(known))
        if known:
            adopt.adopt_registered(self.ctx, self.catalog, closed)

    def _create_containers(self, datasets: list[tuple[str, str]]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        """CTAO's hierarchical namespace: the containers above absolute dataset names (one per
        directory level, each once, in bulk, those Rucio lacks), and the (parent, child) links
        that put every container and dataset in the one above it."""
        links: dict[tuple[str, str], tuple[str, str]] = {}  # child -> parent
        for _, name in datasets:
            if names.is_absolute(name):
                chain = [*names.containers(name), name]
                for above, below in zip(chain, chain[1:]):
                    links[(names.scope_of(below), below)] = (names.scope_of(above), above)
        if not links:
            return []
        containers = sorted({parent for parent in links.values()}, key=lambda did: did[1])
        known = self.catalog.existing(containers)
        if rejected := self.catalog.add_datasets([did for did in containers if did not in known], "CONTAINER"):
            raise rejected[0].failure
        self.ctx.bus.emit(Kind.CONTAINERS_CREATED, containers=len(containers) - len(known), existing=len(known))
        return sorted(((parent, child) for child, parent in links.items()), key=lambda link: link[1][1])

    def leftovers(self) -> None:
        """Files a previous run left between upload and done continue where they stopped."""
        steps = {S.UPLOADED: lambda b: self.set_metadata(self.attach(self.register(b))),
                 S.REGISTERED: lambda b: self.set_metadata(self.attach(b)), S.ATTACHED: self.set_metadata}
        for state, step in steps.items():
            for batch in self.ctx.journal.batches(state, self.catalog.batch_size):
                step(batch)

    def register(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Add replicas in bulk: pre-filter what Rucio already has, journal the intent, call."""
        ctx, rse = self.ctx, self.ctx.options.rse
        known = self.catalog.replicas_on(rse, [(r.scope, r.name) for r in batch])
        clash = [r for r in batch if (r.scope, r.name) in known and
                 (known[(r.scope, r.name)]["bytes"], known[(r.scope, r.name)]["adler32"]) != (r.bytes, r.adler32)]
        if clash:
            ctx.fail(clash, ValueError(f"already registered on {rse} with another size or adler32"))
        batch = [r for r in batch if r not in clash]
        new = [r for r in batch if (r.scope, r.name) not in known]
        ctx.journal.mark([r.id for r in batch], S.REGISTERING)
        add = self.catalog.dirac_add_files if self.dirac else self.catalog.add_replicas
        rejected = add(rse, [{"scope": r.scope, "name": r.name, "bytes": r.bytes, "adler32": r.adler32} for r in new])
        registered = self._settle(batch, rejected, S.REGISTERED)
        if self.dirac:
            planned = {(s, n) for s, n, _ in ctx.journal.datasets(DatasetState.PLANNED)}
            ctx.journal.mark_datasets(planned & {(r.scope, r.dataset) for r in registered}, DatasetState.CREATED)
        ctx.bus.emit(Kind.REGISTER_BATCH, files=len(registered), calls=1 + bool(new), rse=rse)
        return registered

    def attach(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Attach files to their datasets: one bulk call per dataset present in the batch (none
        after DIRAC's registration, which attached them in the same call)."""
        if self.dirac:
            self.ctx.journal.mark([r.id for r in batch], S.ATTACHED)
            return batch
        by_dataset: dict[tuple[str, str], list[FileRecord]] = defaultdict(list)
        for record in batch:
            by_dataset[(record.scope, record.dataset)].append(record)
        attached: list[FileRecord] = []
        for dataset, records in by_dataset.items():
            rejected = self.catalog.attach(dataset, [(r.scope, r.name) for r in records])
            attached += self._settle(records, rejected, S.ATTACHED)
        self.ctx.bus.emit(Kind.ATTACH_BATCH, files=len(attached), calls=len(by_dataset))
        return attached

    def set_metadata(self, batch: list[FileRecord]) -> list[FileRecord]:
        """DID metadata in bulk; the last step, so the files are done."""
        rejected = self.catalog.set_metadata([{"scope": r.scope, "name": r.name, "meta": r.meta} for r in batch])
        done = self._settle(batch, rejected, S.DONE)
        self.ctx.bus.emit(Kind.DONE_BATCH, files=len(done), bytes=sum(r.bytes for r in done))
        return done

    def finish(self, batch: list[FileRecord]) -> list[FileRecord]:
        """Metadata for a batch; then the datasets it completed get their rules and are closed at
        once, while the rest of the night uploads, instead of all of them after the last upload."""
        done = self.set_metadata(batch)
        with self.settling:
            for dataset in sorted(self.ctx.journal.settled_datasets({(r.scope, r.dataset) for r in batch})):
                self.add_rules({dataset})
                if self.ctx.options.close_datasets:
                    self.close_datasets({dataset})
        return done

    def add_rules(self, datasets: set[tuple[str, str]] | None = None) -> None:
        """One rule per (dataset, policy), looked up before it is added so a re-run adds none."""
        for rule in self.ctx.journal.rules(RuleState.PLANNED):
            dataset = (rule["scope"], rule["dataset"])
            if datasets is not None and dataset not in datasets:
                continue
            policy = RulePolicy(rule["rse_expression"], rule["copies"], rule["lifetime"], rule["activity"])
            rule_id, _ = self.catalog.ensure_rule(dataset, policy)
            self.ctx.journal.mark_rule(*dataset, rule["rse_expression"], rule_id)
            self.ctx.bus.emit(Kind.RULE_ADDED, dataset=f"{dataset[0]}:{dataset[1]}", rule_id=rule_id,
                              rse_expression=rule["rse_expression"])

    def close_datasets(self, datasets: set[tuple[str, str]] | None = None) -> None:
        """Close the datasets whose files are all done (or set aside): nothing more will join them."""
        journal = self.ctx.journal
        created = {(scope, name) for scope, name, _ in journal.datasets(DatasetState.CREATED)}
        for dataset in sorted(journal.settled_datasets(created if datasets is None else created & datasets)):
            self.catalog.close(dataset)
            journal.mark_datasets([dataset], DatasetState.CLOSED)
            self.ctx.bus.emit(Kind.DATASET_CLOSED, dataset=f"{dataset[0]}:{dataset[1]}")

    def _settle(self, batch: list[FileRecord], rejected: list[Rejected], state: FileState) -> list[FileRecord]:
        """Fail the rejected items, move the others on; return the ones that moved."""
        bad = {(x.item["scope"], x.item["name"]): x.failure for x in rejected}
        for did, failure in bad.items():
            self.ctx.fail([r for r in batch if (r.scope, r.name) == did], failure)
        good = [r for r in batch if (r.scope, r.name) not in bad]
        self.ctx.journal.mark([r.id for r in good], state)
        return good
