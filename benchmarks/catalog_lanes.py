"""Catalog lanes: an ingest's catalog throughput against the bulk calls it keeps in flight.

Method: the real ingest pipeline (`flows.ingest.pipeline.Ingest`: journal, upload window,
register and metadata stages) over a journal of N planned files, with a storage that stores
nothing (every put succeeds at once) and a simulated catalog: each bulk call holds one of the
server's `--slots` (a semaphore shared by every client, as gunicorn's workers are) for
`--latency` seconds plus `--per-file` seconds per item. With one lane per stage the run waits on
latency; more lanes keep more calls in flight, until the server's slots are full. The baseline is
1 lane, measured in the same run. Files/s are for the whole run (journal included).

    .venv/bin/python benchmarks/catalog_lanes.py [--files 10000] [--batch 100] [--latency 0.05]
        [--per-file 0.00005] [--slots 4] [--lanes 1,2,4,8]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from benchlib import write_result
from nightlake.catalog.retry import RetryPolicy
from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.pipeline import Ingest
from nightlake.runs.journal.ingest import FileState, IngestJournal
from nightlake.storage import Stored


class Server:
    """A catalog server with a fixed number of slots; each call holds one for its service time."""

    def __init__(self, slots: int, latency: float, per_file: float):
        self.slots, self.latency, self.per_file = threading.Semaphore(slots), latency, per_file
        self.calls = 0
        self._lock = threading.Lock()

    def serve(self, items: int) -> None:
        with self.slots:
            time.sleep(self.latency + self.per_file * items)
        with self._lock:
            self.calls += 1


class SimulatedCatalog:
    """The bulk calls the ingest makes, each served by `Server`; nothing is known beforehand."""

    batch_size = 1000

    def __init__(self, server: Server):
        self.server = server

    def twin(self) -> SimulatedCatalog:
        return SimulatedCatalog(self.server)

    def existing(self, dids):
        self.server.serve(len(dids))
        return {}

    def replicas_on(self, rse, dids):
        self.server.serve(len(dids))
        return {}

    def add_datasets(self, dids):
        self.server.serve(len(dids))
        return []

    def add_replicas(self, rse, files):
        self.server.serve(len(files))
        return []

    def attach(self, dataset, dids):
        self.server.serve(len(dids))
        return []

    def attach_collections(self, links):
        if links:
            self.server.serve(len(links))
        return []

    def set_metadata(self, items):
        self.server.serve(len(items))
        return []

    def close(self, dataset):
        self.server.serve(1)


class NoStorage:
    def put(self, pfn, data, *, size, adler32=None):
        return Stored(size, "00000001")

    def stat(self, pfn):
        return None

    def delete(self, pfn):
        pass


def run(files: int, batch: int, lanes: int, server: Server, work: Path) -> dict:
    journal = IngestJournal.create(work / f"lanes-{lanes}.sqlite", {})
    journal.add_files({"scope": "cta", "name": f"f{i:06d}", "dataset": f"ds{i // 500}", "source": "payload:1",
                       "bytes": 1, "adler32": None, "meta": {"i": i}} for i in range(files))
    journal.add_datasets(sorted({("cta", f"ds{i // 500}") for i in range(files)}))
    catalog = SimulatedCatalog(server)
    ingest = Ingest(journal, catalog, NoStorage(),
                    pfn_of=lambda b: {f"{r.scope}:{r.name}": f"root://h//rucio/{r.name}" for r in b},
                    open_source=lambda record: (lambda: iter([b"x"])),
                    options=IngestOptions(rse="SIM", workers=4, batch_files=batch, catalog_lanes=lanes,
                                          queue_depth=max(2, lanes)),
                    storage_policy=RetryPolicy(target="SIM"), metadata_catalog=catalog.twin())
    calls, started = server.calls, time.perf_counter()
    ingest.run()
    seconds = time.perf_counter() - started
    assert journal.counts()[FileState.DONE] == files
    return {"lanes": lanes, "seconds": round(seconds, 2), "files_per_s": round(files / seconds, 1),
            "catalog_calls": server.calls - calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--per-file", type=float, default=0.00005)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--lanes", default="1,2,4,8")
    parser.add_argument("--name", default="catalog_lanes")
    args = parser.parse_args()
    print(__doc__.split("\n\n")[1])
    print(f"inputs: {args.files} files, {args.batch} per batch, call latency {args.latency} s + "
          f"{args.per_file} s per item, {args.slots} server slots")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for lanes in (int(x) for x in args.lanes.split(",")):
            rows.append(run(args.files, args.batch, lanes, Server(args.slots, args.latency, args.per_file),
                            Path(work)))
            base = rows[0]["files_per_s"]
            print(f"  lanes {lanes:>2}: {rows[-1]['files_per_s']:>8.1f} files/s ({rows[-1]['seconds']} s, "
                  f"{rows[-1]['catalog_calls']} calls), x{rows[-1]['files_per_s'] / base:.2f} vs 1 lane")
    path = write_result(args.name, {"inputs": vars(args), "runs": rows})
    print(f"written {path.name}")


if __name__ == "__main__":
    main()
