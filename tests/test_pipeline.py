"""The pipeline's flow control with small fakes for storage and catalog (the real ones are tested
against the lake): failures stay per file; refused credentials or a dead storage stop the run."""

from __future__ import annotations

import pytest
import requests

from nightlake.catalog.failures import ErrorClass
from nightlake.catalog.retry import AuthFailure, GaveUp, RetryPolicy
from nightlake.flows.failing import STREAKS
from nightlake.flows.ingest.context import IngestOptions
from nightlake.flows.ingest.pipeline import Ingest
from nightlake.runs.journal.ingest import FileState, IngestJournal
from nightlake.storage import Stat, Stored


class FakeStorage:
    """Accepts every put except those to a forbidden PFN, which get HTTP 403, and those to a PFN
    that is down, which get a refused connection."""

    def __init__(self, forbidden=lambda pfn: False, down=lambda pfn: False):
        self.forbidden, self.down, self.stored = forbidden, down, []

    def put(self, pfn, data, *, size, adler32=None):
        if self.down(pfn):
            raise requests.ConnectionError("[Errno 111] Connection refused")
        if self.forbidden(pfn):
            response = requests.Response()
            response.status_code = 403
            raise requests.HTTPError("403 Forbidden", response=response)
        self.stored.append(pfn)
        return Stored(size, "0000abcd")

    def stat(self, pfn):
        return None

    def delete(self, pfn):
        pass


class FakeCatalog:
    """A catalog that accepts everything and knows nothing beforehand."""

    batch_size = 1000

    def __getattr__(self, name):
        return lambda *args, **kwargs: {} if name in ("replicas_on", "existing") else []


def _ingest(tmp_path, n_files, storage, workers=1, open_source=lambda record: (lambda: iter([b"data"])),
            in_place=False, catalog=None):
    journal = IngestJournal.create(tmp_path / "journal.sqlite", {})
    journal.add_files({"scope": "cta", "name": f"f{i:03d}", "dataset": "ds", "source": "payload:1", "bytes": 4,
                       "adler32": None, "meta": {}} for i in range(n_files))
    journal.add_datasets([("cta", "ds")])
    ingest = Ingest(journal, catalog or FakeCatalog(), storage,
                    pfn_of=lambda batch: {f"{r.scope}:{r.name}": f"root://h//rucio/{r.name}" for r in batch},
                    open_source=open_source, options=IngestOptions(rse="ONSITE", workers=workers, in_place=in_place),
                    storage_policy=RetryPolicy(target="ONSITE", sleep=lambda s: None))
    return journal, ingest


def test_a_forbidden_path_fails_only_its_file(tmp_path):
    journal, ingest = _ingest(tmp_path, 10, FakeStorage(forbidden=lambda pfn: pfn.endswith("f003")))
    ingest.run()
    counts = journal.counts()
    assert (counts[FileState.DONE], counts[FileState.FAILED]) == (9, 1)
    failed = next(journal.batches(FileState.FAILED))[0]
    assert (failed.name, failed.error_class) == ("f003", "auth")


def test_credentials_refused_for_many_files_in_a_row_stop_the_run(tmp_path):
    storage = FakeStorage(forbidden=lambda pfn: True)
    journal, ingest = _ingest(tmp_path, 50, storage)
    with pytest.raises(AuthFailure):
        ingest.run()
    counts = journal.counts()
    streak = STREAKS[ErrorClass.AUTH]
    assert counts[FileState.FAILED] == streak
    # the others keep their journaled intent, for the next run to reconcile against storage
    assert (counts[FileState.DONE], counts[FileState.UPLOADING]) == (0, 50 - streak)


def test_storage_that_stays_down_stops_the_run_instead_of_failing_the_night(tmp_path):
    journal, ingest = _ingest(tmp_path, 500, FakeStorage(down=lambda pfn: True))
    with pytest.raises(GaveUp) as stopped:
        ingest.run()
    assert stopped.value.classified.error_class is ErrorClass.TRANSIENT_STORAGE
    counts = journal.counts()
    assert counts[FileState.FAILED] == STREAKS[ErrorClass.TRANSIENT_STORAGE]
    assert counts[FileState.UPLOADING] + counts[FileState.PLANNED] == 500 - counts[FileState.FAILED]


def test_storage_failures_between_successes_never_stop_the_run(tmp_path):
    flaky = FakeStorage(down=lambda pfn: not pfn.endswith("0"))  # 9 of every 10 files fail, the 10th works
    journal, ingest = _ingest(tmp_path, 500, flaky)
    ingest.run()
    counts = journal.counts()
    assert (counts[FileState.DONE], counts[FileState.FAILED]) == (50, 450)


def test_in_place_says_why_a_source_it_must_compare_with_cannot_be_read(tmp_path):
    class OnStorage(FakeStorage):
        def stat(self, pfn):
            return Stat(4, "0000abcd")

    missing = tmp_path / "gone.fits"
    journal, ingest = _ingest(tmp_path, 1, OnStorage(), open_source=lambda record: missing, in_place=True)
    ingest.run()
    failed = next(journal.batches(FileState.FAILED))[0]
    assert f"{failed.source}: cannot read the source to verify" in failed.error_message
    assert "No such file or directory" in failed.error_message


def test_a_catalog_that_stays_down_stops_the_run_and_keeps_the_uploads_for_a_rerun(tmp_path):
    from nightlake.catalog.failures import Classified

    class DownCatalog(FakeCatalog):
        def replicas_on(self, rse, dids):
            raise GaveUp("catalog", Classified(ErrorClass.TRANSIENT_CATALOG, "ServiceUnavailable"), 5,
                         RuntimeError("down"))

    journal, ingest = _ingest(tmp_path, 3000, FakeStorage(), catalog=DownCatalog())
    with pytest.raises(GaveUp) as stopped:
        ingest.run()
    assert stopped.value.target == "catalog"
    counts = journal.counts()
    assert counts[FileState.FAILED] == counts[FileState.DONE] == 0  # nothing is failed for a catalog outage
    assert counts[FileState.UPLOADED] >= 1000  # what was uploaded waits, journaled, for the next run
    assert counts[FileState.PLANNED] > 0  # and the uploads stopped instead of going on for the whole night


class CountingCatalog(FakeCatalog):
    """Accepts everything, counts each replica added and the calls in flight at once (every call
    takes a few milliseconds, as a server's would); twins share the counts."""

    def __init__(self, shared=None):
        import threading

        self.shared = shared or {"lock": threading.Lock(), "added": [], "in_flight": 0, "most": 0}

    def twin(self):
        return CountingCatalog(self.shared)

    def _call(self, result):
        import time

        with self.shared["lock"]:
            self.shared["in_flight"] += 1
            self.shared["most"] = max(self.shared["most"], self.shared["in_flight"])
        time.sleep(0.005)
        with self.shared["lock"]:
            self.shared["in_flight"] -= 1
        return result

    def add_replicas(self, rse, files):
        with self.shared["lock"]:
            self.shared["added"] += [f["name"] for f in files]
        return self._call([])

    def set_metadata(self, items):
        return self._call([])


def test_several_catalog_lanes_register_each_file_exactly_once(tmp_path):
    journal = IngestJournal.create(tmp_path / "journal.sqlite", {})
    journal.add_files({"scope": "cta", "name": f"f{i:04d}", "dataset": f"ds{i % 3}", "source": "payload:1",
                       "bytes": 4, "adler32": None, "meta": {}} for i in range(1200))
    journal.add_datasets([("cta", f"ds{i}") for i in range(3)])
    catalog = CountingCatalog()
    ingest = Ingest(journal, catalog, FakeStorage(),
                    pfn_of=lambda batch: {f"{r.scope}:{r.name}": f"root://h//rucio/{r.name}" for r in batch},
                    open_source=lambda record: (lambda: iter([b"data"])),
                    options=IngestOptions(rse="ONSITE", workers=4, batch_files=20, catalog_lanes=4),
                    storage_policy=RetryPolicy(target="ONSITE", sleep=lambda s: None), metadata_catalog=catalog.twin())
    ingest.run()
    assert journal.counts()[FileState.DONE] == 1200
    added = catalog.shared["added"]
    assert sorted(added) == [f"f{i:04d}" for i in range(1200)]  # each once
    assert catalog.shared["most"] > 1  # the lanes did call at once
