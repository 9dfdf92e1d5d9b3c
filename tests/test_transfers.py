"""The lake's transfer service without a lake: how a Rucio submission becomes a job, how FTS job
states follow from file states, and the job store's transitions (claim, finish, next source,
cancel, recovery after a stop)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from nightlake.lake import transfer_jobs, transfers
from nightlake.lake.transfer_jobs import BadRequest, Store, job_from_submission, job_state


def submission(*sources_per_file: list[str], **params) -> dict:
    """A bulk submission shaped like Rucio's FTS3 transfertool makes it."""
    files = [{"sources": sources, "destinations": [f"https://dst/{i}"], "checksum": "ADLER32:0000abcd",
              "filesize": 10, "activity": "User Subscriptions", "metadata": {"request_id": f"req{i}"}}
             for i, sources in enumerate(sources_per_file)]
    return {"files": files, "params": {"verify_checksum": "both", "overwrite": True, "priority": 3,
                                       "job_metadata": {"issuer": "rucio"}, **params}}


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "jobs.sqlite"))


def test_each_source_of_a_file_is_a_row_and_only_the_first_is_submitted():
    job, rows = job_from_submission(submission(["https://a/0", "https://b/0"], ["https://a/1"]), "/CN=me")
    assert job["job_type"] == "R" and job["job_state"] == "SUBMITTED" and job["user_dn"] == "/CN=me"
    assert [(r["file_index"], r["file_state"]) for r in rows] == [(0, "SUBMITTED"), (0, "NOT_USED"), (1, "SUBMITTED")]
    assert rows[0]["file_metadata"] == {"request_id": "req0"}


def test_a_single_source_job_is_regular():
    job, _ = job_from_submission(submission(["https://a/0"]), "/CN=me")
    assert job["job_type"] == "N"


@pytest.mark.parametrize("body, message", [
    ({"files": []}, "No transfers found"),
    ({"files": [{"sources": [], "destinations": ["https://d"]}]}, "needs sources"),
    ({"files": [{"sources": ["https://s"], "destinations": ["https://d", "https://e"]}]}, "exactly one destination"),
    (submission(["https://a/0"], multihop=True), "multihop"),
])
def test_a_submission_fts_would_refuse_is_a_bad_request(body, message):
    with pytest.raises(BadRequest, match=message):
        job_from_submission(body, "/CN=me")


def test_a_deterministic_job_id_is_fts_uuid5_of_base_id_vo_and_sid():
    params = {"id_generator": "deterministic", "sid": "req0"}
    expected = uuid.uuid5(uuid.uuid5(transfer_jobs.BASE_ID, transfer_jobs.VO), "req0")
    assert transfer_jobs.job_id(params) == str(expected) == transfer_jobs.job_id(params)
    assert transfer_jobs.job_id({}) != transfer_jobs.job_id({})


@pytest.mark.parametrize("states, expected", [
    ([(0, "SUBMITTED"), (1, "SUBMITTED")], "SUBMITTED"),
    ([(0, "ACTIVE"), (1, "SUBMITTED")], "ACTIVE"),
    ([(0, "FINISHED"), (1, "SUBMITTED")], "ACTIVE"),
    ([(0, "FINISHED"), (1, "FINISHED")], "FINISHED"),
    ([(0, "FAILED"), (1, "FAILED")], "FAILED"),
    ([(0, "FINISHED"), (1, "FAILED")], "FINISHEDDIRTY"),
    ([(0, "FAILED"), (0, "FINISHED")], "FINISHED"),            # the second source did it
    ([(0, "FAILED"), (0, "SUBMITTED")], "ACTIVE"),             # the next source is waiting
    ([(0, "SUBMITTED"), (0, "NOT_USED")], "SUBMITTED"),
    ([(0, "CANCELED"), (1, "CANCELED")], "CANCELED"),
])
def test_the_job_state_follows_from_its_files_as_in_fts(states, expected):
    assert job_state(states) == expected


@pytest.mark.parametrize("verify, mode", [("both", "both"), ("target", "target"), ("source", "source"),
                                          ("none", "none"), (True, "both"), (False, "none"), (None, "none")])
def test_verify_checksum_maps_to_gfal2s_checksum_mode(verify, mode):
    assert transfers.checksum_mode(verify) == mode


def test_an_unknown_verify_checksum_is_refused():
    with pytest.raises(BadRequest, match="verify_checksum"):
        transfers.checksum_mode("sometimes")


def test_a_duplicate_job_id_is_refused_by_the_store(store):
    job, rows = job_from_submission(submission(["https://a/0"], id_generator="deterministic", sid="x"), "/CN=me")
    assert store.add(job, rows)
    assert not store.add(job, rows)


def test_a_failed_source_hands_the_file_to_the_next_source(store):
    job, rows = job_from_submission(submission(["https://a/0", "https://b/0"]), "/CN=me")
    store.add(job, rows)
    (first,) = store.submitted()
    assert store.claim(first["file_id"]) and not store.claim(first["file_id"])
    store.finish(first, "Result HTTP 404 : File not found")
    (second,) = store.submitted()
    assert second["source_surl"] == "https://b/0"
    assert store.job(job["job_id"])["job_state"] == "ACTIVE"
    store.claim(second["file_id"])
    store.finish(second, None)
    finished = store.job(job["job_id"])
    assert finished["job_state"] == "FINISHED" and finished["job_finished"]
    assert [(f["file_state"], f["reason"]) for f in store.files(job["job_id"])] == [
        ("FAILED", "Result HTTP 404 : File not found"), ("FINISHED", None)]


def test_a_failed_file_fails_the_job_with_fts_reason(store):
    job, rows = job_from_submission(submission(["https://a/0"]), "/CN=me")
    store.add(job, rows)
    (row,) = store.submitted()
    store.claim(row["file_id"])
    store.finish(row, "Copy failed with mode 3rd pull, with error: boom")
    failed = store.job(job["job_id"])
    assert failed["job_state"] == "FAILED" and "One or more files failed" in failed["reason"]


def test_a_canceled_job_keeps_its_state_when_a_running_copy_ends(store):
    job, rows = job_from_submission(submission(["https://a/0"], ["https://a/1"]), "/CN=me")
    store.add(job, rows)
    running = store.submitted()[0]
    store.claim(running["file_id"])
    assert store.cancel(job["job_id"])
    store.finish(running, None)
    assert store.job(job["job_id"])["job_state"] == "CANCELED"
    assert {f["file_state"] for f in store.files(job["job_id"])} == {"CANCELED"}
    assert store.submitted() == []


def test_copies_cut_short_by_a_stop_are_submitted_again(tmp_path):
    path = str(tmp_path / "jobs.sqlite")
    store = Store(path)
    job, rows = job_from_submission(submission(["https://a/0"]), "/CN=me")
    store.add(job, rows)
    store.claim(store.submitted()[0]["file_id"])
    assert store.submitted() == []
    reopened = Store(path)
    assert reopened.requeue_active() == 1
    assert [r["file_state"] for r in reopened.submitted()] == ["SUBMITTED"]


def test_a_job_view_limits_files_to_the_fields_rucio_asks_for(store):
    job, rows = job_from_submission(submission(["https://a/0"]), "/CN=me")
    store.add(job, rows)
    fields = "file_state,dest_surl,finish_time,start_time,staging_start,staging_finished,reason,source_surl,file_metadata"
    view = transfer_jobs.job_view(store.job(job["job_id"]), store.files(job["job_id"]), fields.split(","))
    assert view["http_status"] == "200 Ok" and view["job_metadata"] == {"issuer": "rucio"}
    (file,) = view["files"]
    assert set(file) == set(fields.split(","))
    assert file["file_metadata"] == {"request_id": "req0"} and file["staging_start"] is None


def test_a_link_is_the_pair_of_endpoints():
    assert transfers.link({"source_surl": "https://h:1/rucio/a", "dest_surl": "root://h:2//rucio/a"}) == ("h:1", "h:2")


def test_the_scheduler_keeps_to_its_limits_per_link_and_in_all(store, monkeypatch):
    """Six files on link a->d and two on b->d, 3 slots in all and 2 per link: never more."""
    import threading
    import time

    running, peak, lock, release = Counter(), Counter(), threading.Lock(), threading.Event()

    def slow_copy(row, timeout):
        key = transfers.link(row)
        with lock:
            running[key] += 1
            running["all"] += 1
            for name in (key, "all"):
                peak[name] = max(peak[name], running[name])
        release.wait(5)
        with lock:
            running[key] -= 1
            running["all"] -= 1
        return None

    monkeypatch.setattr(transfers, "copy", slow_copy)
    for source, count in (("https://a:1/f", 6), ("https://b:1/f", 2)):
        job, rows = job_from_submission(submission(*([f"{source}{i}"] for i in range(count))), "/CN=me")
        store.add(job, rows)
    scheduler = transfers.Scheduler(store, max_active=3, per_link=2, timeout=10)
    thread = threading.Thread(target=scheduler.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while running["all"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    while store.submitted() and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    scheduler.stopping.set()
    scheduler.wake.set()
    thread.join(5)
    assert peak["all"] == 3 and peak[("a:1", "dst")] == 2 and peak[("b:1", "dst")] <= 2
