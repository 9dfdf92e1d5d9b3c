"""`nightlake report` on synthetic run directories: a journal built through the journal's own API
and an event log written by hand, so these tests need no lake (tests/test_report_lake.py has one)."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import pytest

from conftest import CHROMIUM, nightlake, open_in_chromium
from nightlake.observe.report import write_report
from nightlake.observe.report.collect import collect
from nightlake.runs.journal.ingest import DatasetState, FileState, IngestJournal

S = FileState
T0 = 1_800_000_000.0
DESCRIPTION = {"command": "ingest", "source": "/data/night.toml", "rse": "ONSITE", "options": {"workers": 8}}
VERSIONS = {"nightlake": "0.1.0", "rucio_clients": "41.5.1", "rucio_server": "41.5.1"}
PATH_TO_DONE = (S.UPLOADING, S.UPLOADED, S.REGISTERING, S.REGISTERED, S.ATTACHED, S.DONE)


def make_run(path: Path, datasets: int = 3, files: int = 20, size: int = 1_000_000) -> Path:
    """A run of `datasets` x `files`: most done, 2 failed, 1 quarantined, 1 still planned per dataset;
    the first dataset closed, one rule per dataset, and the batch events of a 60 s run."""
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(DESCRIPTION))
    with IngestJournal.create(path / "journal.sqlite", {"description": DESCRIPTION}) as journal:
        journal.set_meta(versions=VERSIONS, rucio_host="https://127.0.0.1:28000", account="root")
        names = [f"ds{d}" for d in range(datasets)]
        journal.add_files({"scope": "cta", "name": f"{ds}_{i:06d}.fits", "dataset": ds, "source": "x",
                           "bytes": size, "adler32": None, "meta": {}} for ds in names for i in range(files))
        journal.add_datasets(("cta", ds) for ds in names)
        journal.mark_datasets([("cta", names[0])], DatasetState.CLOSED)
        for ds in names:
            journal.add_rule("cta", ds, "OFFSITE-A")
            journal.mark_rule("cta", ds, "OFFSITE-A", f"rule-{ds}")
        ids = [r.id for batch in journal.batches(S.PLANNED) for r in batch]
        per = {ds: ids[i * files:(i + 1) * files] for i, ds in enumerate(names)}
        journal.quarantine([per[ds][0] for ds in names], "missing required metadata: ['OBS_ID']")
        journal.fail([per[ds][1] for ds in names], "permanent", "Data identifier 'cta:ds' is closed")
        journal.fail([per[ds][2] for ds in names], "transient_storage", "timeout after 30 s")
        done = [i for ds in names for i in per[ds][4:]]
        for state in PATH_TO_DONE:
            journal.mark(done, state, rse="ONSITE" if state is S.UPLOADING else None)
    write_events(path / "events.jsonl", len(done), size)
    return path


def write_events(path: Path, done: int, size: int) -> None:
    """A 60 s run: four upload/register/done batches, then the run end."""
    events = [{"ts": T0, "kind": "run.start", "rse": "ONSITE", "files": done}]
    quarter = done // 4
    for b in range(4):
        n = quarter if b < 3 else done - 3 * quarter
        t = T0 + 10 * (b + 1)
        events += [{"ts": t, "kind": "upload.batch", "files": n, "bytes": n * size, "rse": "ONSITE"},
                   {"ts": t + 2, "kind": "register.batch", "files": n, "calls": 1, "rse": "ONSITE"},
                   {"ts": t + 3, "kind": "done.batch", "files": n, "bytes": n * size}]
    events.append({"ts": T0 + 60, "kind": "run.end", "complete": False, "failed": 6})
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def append_events(path: Path, *events: dict) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run")


@pytest.fixture
def report(run, tmp_path):
    out = tmp_path / "report"
    return write_report(run, out), out


def test_report_writes_the_page_figures_and_exports(report):
    _, out = report
    for name in ("index.html", "report.json", "throughput.csv", "datasets.csv", "throughput.png",
                 "progress.png", "datasets.png"):
        assert (out / name).stat().st_size > 0, name


def test_headline_numbers_equal_the_journal_counts(report, run):
    data, out = report
    with IngestJournal.open(run / "journal.sqlite") as journal:
        counts = journal.counts()
    total = sum(counts.values())
    assert (counts[S.DONE], counts[S.FAILED], counts[S.QUARANTINED]) == (48, 6, 3)
    page = (out / "index.html").read_text()
    for text in (f"{counts[S.DONE]} of {total} files done", "48 MB", "1 of 3 datasets closed", "3 rules",
                 f"{counts[S.FAILED]} failed", f"{counts[S.QUARANTINED]} quarantined"):
        assert text in data["headline"] and text in page


def test_json_numbers_add_up(report):
    _, out = report
    data = json.loads((out / "report.json").read_text())
    files = data["files"]
    assert files["total"] == sum(v for k, v in files.items() if k != "total")
    for group in ("datasets", "rses"):
        for state in files:
            if state != "total":
                assert sum(row["files"][state] for row in data[group]) == files[state], (group, state)
    assert sum(d["total"] for d in data["datasets"]) == files["total"]
    ingest_errors = [e for e in data["errors"] if e["source"] == "ingest"]
    assert sum(e["files"] for e in ingest_errors) == files["failed"] + files["quarantined"]
    assert {e["error_class"] for e in ingest_errors} == {"permanent", "transient_storage", "quarantine"}
    phases = data["throughput"]["phases"]
    assert sum(phases["upload"]["files"]) == pytest.approx(files["done"])
    assert sum(phases["upload"]["bytes"]) == pytest.approx(data["bytes"]["done"])
    assert data["progress"]["done"]["files"][-1] == files["done"]


def test_csv_exports_match_the_json(report):
    data, out = report
    with open(out / "datasets.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["done"]) for r in rows] == [d["files"]["done"] for d in data["datasets"]]
    with open(out / "throughput.csv") as f:
        upload = [float(r["files"]) for r in csv.DictReader(f) if r["phase"] == "upload"]
    assert sum(upload) == pytest.approx(data["files"]["done"])


def test_batches_are_spread_over_the_time_they_took(report):
    data, _ = report
    throughput = data["throughput"]
    assert throughput["bin_s"] == 1  # a 60 s run: 1 s bins
    upload = throughput["phases"]["upload"]["files"]
    assert upload[0] == pytest.approx(upload[9]) == pytest.approx(12 / 10)  # 12 files over 10 s


def test_html_is_self_contained(report):
    _, out = report
    page = (out / "index.html").read_text()
    sources = re.findall(r"""(?:src|href)\s*=\s*['"]?([^'" >]+)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page


def test_optional_sections_appear_when_their_events_exist(run, tmp_path):
    events = run / "events.jsonl"
    append_events(events,
                  {"ts": T0 + 70, "kind": "rules.progress", "rule_id": "rule-ds0", "ok": 0, "replicating": 16, "stuck": 0},
                  {"ts": T0 + 90, "kind": "rules.progress", "rule_id": "rule-ds0", "ok": 14, "replicating": 0, "stuck": 2},
                  {"ts": T0 + 95, "kind": "replication.error", "group": "checksum", "count": 2,
                   "sample": "TRANSFER checksum mismatch"},
                  {"ts": T0 + 100, "kind": "retrieve.batch", "files": 10, "bytes": 10_000_000},
                  {"ts": T0 + 101, "kind": "retry", "target": "ONSITE", "error_class": "transient_storage"})
    data = write_report(run, tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert (tmp_path / "out" / "replication.png").exists()
    assert {"replication", "retrieval"} <= set(data["throughput"]["phases"])
    assert sum(data["throughput"]["phases"]["replication"]["files"]) == pytest.approx(14)
    rule = next(r for r in data["rules"] if r["rule_id"] == "rule-ds0")
    assert (rule["ok"], rule["stuck"]) == (14, 2)
    assert "TRANSFER checksum mismatch" in page and "checksum" in page
    assert data["retries"] == [{"target": "ONSITE", "error_class": "transient_storage", "retries": 1}]


def test_a_run_without_an_event_log_still_reports(run, tmp_path):
    (run / "events.jsonl").unlink()
    data = write_report(run, tmp_path / "out")
    assert data["throughput"] is None and "48 of 60 files done" in data["headline"]
    assert not (tmp_path / "out" / "throughput.png").exists()


def test_a_torn_last_event_line_is_skipped(run, tmp_path):
    with open(run / "events.jsonl", "a") as f:
        f.write('{"ts": 1800000099, "kind": "upload.ba')
    assert collect(run)["progress"]["uploaded"]["files"][-1] == 48


def test_renders_a_100000_file_run(tmp_path):
    """The journal's GROUP BY does the work: no file is listed, so this takes seconds."""
    run = make_run(tmp_path / "big", datasets=1, files=5)
    with sqlite3.connect(run / "journal.sqlite") as db:  # bulk-insert done files: the API path is tested above
        db.executemany("INSERT INTO files (scope, name, dataset, source, bytes, state, rse, updated_at) "
                       "VALUES ('cta', ?, ?, 'x', 11000000, 'done', 'ONSITE', 0)",
                       ((f"f{i:06d}", f"night_{i % 200:03d}") for i in range(100_000)))
        db.executemany("INSERT INTO datasets (scope, name, state, updated_at) VALUES ('cta', ?, 'closed', 0)",
                       ((f"night_{d:03d}",) for d in range(200)))
    data = write_report(run, tmp_path / "out")
    assert data["files"]["total"] == 100_005 and len(data["datasets"]) == 201
    assert (tmp_path / "out" / "index.html").read_text().count("<td>cta:night_") == 200


def test_report_command_prints_the_headline(run, tmp_path):
    result = nightlake("report", str(run), "--out", str(tmp_path / "out"))
    assert "48 of 60 files done" in result.stdout
    assert (tmp_path / "out" / "index.html").exists()


def test_report_command_on_a_directory_without_a_run_exits_2(tmp_path):
    result = nightlake("report", str(tmp_path), "--out", str(tmp_path / "out"), check=False)
    assert result.returncode == 2 and "holds no nightlake run" in result.stderr


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (make deps installs it: APT_PACKAGES)")
def test_html_opens_in_headless_chromium(report, tmp_path):
    data, out = report
    _, shot_size, dom = open_in_chromium(out / "index.html", tmp_path, 2400)
    assert shot_size > 50_000  # a rendered page with figures, not a blank one
    assert data["headline"] in dom
    assert dom.count("<img") == 3


def make_retrieve(path: Path, done: int = 8, failed: int = 2, size: int = 1_000_000) -> Path:
    """A retrieve run of the night's data: `done` files verified, `failed` with a checksum error,
    and its batch events 100 s after the ingest started."""
    from nightlake.runs.journal.download import D, DownloadJournal

    description = {"command": "retrieve", "dids": ["cta:ds0"], "filters": {}, "scope": None,
                   "out": "/data/back", "rse": None, "from_rse": "OFFSITE-A"}
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(description))
    with DownloadJournal.create(path / "retrieve.sqlite", {"description": description}) as journal:
        journal.add_files({"scope": "cta", "name": f"ds0_{i:06d}.fits", "bytes": size, "adler32": "0000abcd",
                           "rse": "OFFSITE-A", "pfn": f"root://h//ds0_{i}"} for i in range(done + failed))
        ids = [r.id for batch in journal.batches(D.PLANNED) for r in batch]
        journal.mark(ids, D.DOWNLOADING)
        journal.mark(ids[:done], D.DONE)
        journal.fail(ids[done:], "permanent", "adler32 mismatch: catalog 0000abcd, downloaded 12345678")
    events = [{"ts": T0 + 100, "kind": "run.start", "files": done + failed, "done": 0},
              {"ts": T0 + 105, "kind": "retrieve.batch", "files": done, "bytes": done * size},
              {"ts": T0 + 106, "kind": "run.end", "complete": False, "failed": failed}]
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_a_retrieve_run_adds_its_section_errors_and_retrieval_phase(run, tmp_path):
    retrieve = make_retrieve(tmp_path / "retrieve")
    data = write_report(run, tmp_path / "out", [retrieve])
    (retrieval,) = data["retrievals"]
    assert (retrieval["files"]["done"], retrieval["files"]["failed"], retrieval["files"]["total"]) == (8, 2, 10)
    assert retrieval["bytes"]["done"] == 8_000_000 and retrieval["from_rse"] == "OFFSITE-A"
    assert sum(data["throughput"]["phases"]["retrieval"]["files"]) == pytest.approx(8)
    assert data["progress"]["retrieved"]["files"] == [8]
    (error,) = [e for e in data["errors"] if e["source"] == "retrieve"]
    assert (error["error_class"], error["files"]) == ("permanent", 2) and "adler32 mismatch" in error["sample"]
    assert data["headline"].endswith("8 retrieved and verified")
    assert data["run"]["sessions"] == 1  # the ingest's own sessions, not the retrieve's
    assert data["span"]["last"] == T0 + 106  # the time axes run to the end of the retrieve
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<h2>Retrieval</h2>" in page and "cta:ds0" in page


def test_a_retrieve_directory_without_a_retrieve_run_is_bad_input(run, tmp_path):
    from nightlake import BadInput

    with pytest.raises(BadInput, match="holds no retrieve run"):
        write_report(run, tmp_path / "out", [tmp_path])
    assert not (tmp_path / "out").exists()


def test_replication_per_destination_and_its_latency_come_from_the_watchs_polls(run, tmp_path):
    append_events(run / "events.jsonl",
                  {"ts": T0 + 60, "kind": "rule.added", "rule_id": "rule-ds0", "rse_expression": "OFFSITE-A"},
                  {"ts": T0 + 70, "kind": "rules.progress", "rule_id": "rule-ds0", "ok": 10, "replicating": 10},
                  {"ts": T0 + 70, "kind": "replication.progress", "rse_expression": "OFFSITE-A", "files": 20,
                   "ok": 10, "bytes": 20_000_000, "bytes_ok": 10_000_000, "stuck": 0},
                  {"ts": T0 + 160, "kind": "rules.progress", "rule_id": "rule-ds0", "ok": 19, "stuck": 1},
                  {"ts": T0 + 160, "kind": "replication.progress", "rse_expression": "OFFSITE-A", "files": 20,
                   "ok": 19, "bytes": 20_000_000, "bytes_ok": 19_000_000, "stuck": 1},
                  {"ts": T0 + 161, "kind": "replication.error", "group": "destination-refused", "count": 1,
                   "rses": ["OFFSITE-A"], "sample": "DESTINATION MAKE_PARENT HTTP 500"})
    data = write_report(run, tmp_path / "out")
    assert data["destinations"]["OFFSITE-A"]["ok"] == [10, 19]
    assert data["destinations"]["OFFSITE-A"]["bytes_ok"] == [10_000_000, 19_000_000]
    # 10 replicas 10 s after the rule, 9 more after 100 s
    assert data["replication_latency"] == {"replicas": 19, "p50_s": 10.0, "p90_s": 100.0, "p99_s": 100.0,
                                           "p100_s": 100.0}
    assert (tmp_path / "out" / "destinations.png").exists()
    page = (tmp_path / "out" / "index.html").read_text()
    assert "transfer to OFFSITE-A" in page and "DESTINATION MAKE_PARENT HTTP 500" in page
