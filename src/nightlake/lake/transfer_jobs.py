"""The transfer service's jobs: FTS3's job and file model (what a submission becomes, the states a
job and its files go through, the views the poller reads) and their store in SQLite, so that a
restarted conveyor or a restarted service still gets its answers.

Part of the lake's transfer service (`transfers`); like it, it imports only the standard library:
both run alone under Debian's /usr/bin/python3, for the gfal2 bindings.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import Counter

VO = "nightlake"
BASE_ID = uuid.UUID("6e696768-746c-616b-6520-667473337631")  # fixed: deterministic job ids stay stable
FINAL_JOB_STATES = ("FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def now() -> str:
    """UTC in FTS's format, which Rucio's poller parses with `%Y-%m-%dT%H:%M:%S`."""
    return time.strftime(TIME_FORMAT, time.gmtime())


class BadRequest(ValueError):
    """A submission FTS would refuse (HTTP 400), with FTS's kind of message."""


# ---------------------------------------------------------------------------------------------- jobs

def job_from_submission(body: dict, user_dn: str) -> tuple[dict, list[dict]]:
    """A job and its file rows from Rucio's bulk submission: one row per source of each file,
    the first SUBMITTED and the others NOT_USED until an earlier source has failed."""
    files, params = body.get("files"), body.get("params") or {}
    if not isinstance(files, list) or not files:
        raise BadRequest("No transfers found")
    if params.get("multihop"):
        raise BadRequest("multihop jobs are not supported by the lake's transfer service")
    rows = []
    for index, entry in enumerate(files):
        sources, destinations = entry.get("sources") or [], entry.get("destinations") or []
        if not sources or len(destinations) != 1:
            raise BadRequest(f"file {index}: needs sources and exactly one destination")
        for n, source in enumerate(sources):
            rows.append({"file_index": index, "file_state": "SUBMITTED" if n == 0 else "NOT_USED",
                         "source_surl": source, "dest_surl": destinations[0],
                         "filesize": entry.get("filesize"), "checksum": entry.get("checksum"),
                         "activity": entry.get("activity", "default"),
                         "file_metadata": entry.get("metadata") or {}})
    multi = any(len(entry.get("sources") or []) > 1 for entry in files)
    job = {"job_id": job_id(params), "job_state": "SUBMITTED",
           "job_type": "R" if multi else "N",  # FTS's MULTIPLE_REPLICA and REGULAR job types
           "job_metadata": params.get("job_metadata") or {}, "params": params, "user_dn": user_dn,
           "priority": int(params.get("priority") or 3), "submit_time": now(), "job_finished": None,
           "reason": None}
    return job, rows


def job_id(params: dict) -> str:
    """FTS's deterministic id (uuid5 of base id, VO and `sid`) when asked for, else a random one."""
    if params.get("id_generator") == "deterministic" and params.get("sid"):
        return str(uuid.uuid5(uuid.uuid5(BASE_ID, VO), str(params["sid"])))
    return str(uuid.uuid4())


def job_state(file_states: list[tuple[int, str]], canceled: bool = False) -> str:
    """The job's state from its rows' (file_index, state), as FTS derives it: a file is done when
    one of its sources FINISHED, failed when none is left to try."""
    by_file: dict[int, set[str]] = {}
    for index, state in file_states:
        by_file.setdefault(index, set()).add(state)
    outcome = Counter(_file_outcome(states) for states in by_file.values())
    if outcome["open"]:
        return "SUBMITTED" if all(s in ("SUBMITTED", "NOT_USED") for _, s in file_states) else "ACTIVE"
    if canceled or outcome["CANCELED"] == len(by_file):
        return "CANCELED"
    if outcome["FINISHED"] == len(by_file):
        return "FINISHED"
    return "FINISHEDDIRTY" if outcome["FINISHED"] else "FAILED"


def _file_outcome(states: set[str]) -> str:
    if "FINISHED" in states:
        return "FINISHED"
    if states & {"SUBMITTED", "ACTIVE"}:
        return "open"
    return "CANCELED" if "CANCELED" in states else "FAILED"


class Store:
    """Jobs and file rows in SQLite (WAL), shared by the API threads and the copy workers.

    One connection behind one lock: every operation is a short transaction, and SQLite would
    serialise the writers anyway."""

    SCHEMA = """
    create table if not exists jobs (job_id text primary key, job_state text, job_type text,
        job_metadata text, params text, user_dn text, priority integer, submit_time text,
        job_finished text, reason text);
    create table if not exists files (file_id integer primary key autoincrement, job_id text,
        file_index integer, file_state text, source_surl text, dest_surl text, filesize integer,
        checksum text, activity text, file_metadata text, reason text, start_time text,
        finish_time text);
    create index if not exists files_job on files (job_id);
    create index if not exists files_state on files (file_state);
    """

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.Lock()
        with self.lock:
            self.db.execute("pragma journal_mode=wal")
            self.db.executescript(self.SCHEMA)

    def add(self, job: dict, rows: list[dict]) -> bool:
        """Record a job; False when its id exists (a duplicate deterministic submission)."""
        with self.lock:
            if self.db.execute("select 1 from jobs where job_id = ?", (job["job_id"],)).fetchone():
                return False
            self.db.execute("begin")
            self.db.execute(
                "insert into jobs values (?,?,?,?,?,?,?,?,?,?)",
                (job["job_id"], job["job_state"], job["job_type"], json.dumps(job["job_metadata"]),
                 json.dumps(job["params"]), job["user_dn"], job["priority"], job["submit_time"], None, None))
            self.db.executemany(
                "insert into files (job_id, file_index, file_state, source_surl, dest_surl, filesize,"
                " checksum, activity, file_metadata) values (?,?,?,?,?,?,?,?,?)",
                [(job["job_id"], r["file_index"], r["file_state"], r["source_surl"], r["dest_surl"],
                  r["filesize"], r["checksum"], r["activity"], json.dumps(r["file_metadata"])) for r in rows])
            self.db.execute("commit")
            return True

    def job(self, job_id: str) -> dict | None:
        with self.lock:
            row = self.db.execute("select * from jobs where job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = dict(row)
        job["job_metadata"], job["params"] = json.loads(job["job_metadata"]), json.loads(job["params"])
        return job

    def files(self, job_id: str) -> list[dict]:
        with self.lock:
            rows = self.db.execute("select * from files where job_id = ? order by file_id", (job_id,)).fetchall()
        return [{**dict(r), "file_metadata": json.loads(r["file_metadata"])} for r in rows]

    def requeue_active(self) -> int:
        """Copies cut short by a stop of the service are submitted again (FTS's own recovery)."""
        with self.lock:
            return self.db.execute("update files set file_state = 'SUBMITTED', start_time = null"
                                   " where file_state = 'ACTIVE'").rowcount

    def submitted(self, limit: int = 200) -> list[dict]:
        """Rows waiting for a copy slot, highest job priority first, then oldest."""
        with self.lock:
            rows = self.db.execute(
                "select f.*, j.params from files f join jobs j using (job_id) where f.file_state = 'SUBMITTED'"
                " order by j.priority desc, f.file_id limit ?", (limit,)).fetchall()
        return [{**dict(r), "params": json.loads(r["params"])} for r in rows]

    def claim(self, file_id: int) -> bool:
        """SUBMITTED -> ACTIVE, False when the row was canceled meanwhile."""
        with self.lock:
            return self.db.execute("update files set file_state = 'ACTIVE', start_time = ? where file_id = ?"
                                   " and file_state = 'SUBMITTED'", (now(), file_id)).rowcount == 1

    def finish(self, row: dict, reason: str | None) -> None:
        """Record a copy's outcome; after a failure the file's next unused source is submitted.
        A row canceled while its copy ran stays CANCELED."""
        state = "FAILED" if reason else "FINISHED"
        with self.lock:
            self.db.execute("begin")
            done = self.db.execute("update files set file_state = ?, reason = ?, finish_time = ? where file_id = ?"
                                   " and file_state = 'ACTIVE'", (state, reason, now(), row["file_id"])).rowcount
            if done and reason:
                self.db.execute("update files set file_state = 'SUBMITTED' where file_id = (select min(file_id)"
                                " from files where job_id = ? and file_index = ? and file_state = 'NOT_USED')",
                                (row["job_id"], row["file_index"]))
            self._settle(row["job_id"])
            self.db.execute("commit")

    def cancel(self, job_id: str) -> bool:
        with self.lock:
            self.db.execute("begin")
            found = self.db.execute("update files set file_state = 'CANCELED', finish_time = ? where job_id = ?"
                                    " and file_state in ('SUBMITTED', 'ACTIVE')", (now(), job_id)).rowcount
            self._settle(job_id, canceled=bool(found))
            self.db.execute("commit")
            return bool(found)

    def set_priority(self, job_id: str, priority: int) -> None:
        with self.lock:
            self.db.execute("update jobs set priority = ? where job_id = ?", (priority, job_id))

    def _settle(self, job_id: str, canceled: bool = False) -> None:
        """The job's state from its rows, with FTS's job reason and finish time once final."""
        states = [(r[0], r[1]) for r in self.db.execute(
            "select file_index, file_state from files where job_id = ?", (job_id,))]
        state = job_state(states, canceled)
        final = state in FINAL_JOB_STATES
        reason = None
        if state in ("FAILED", "FINISHEDDIRTY"):
            reason = "One or more files failed. Please have a look at the details for more information"
        self.db.execute("update jobs set job_state = ?, job_finished = ?, reason = ? where job_id = ?",
                        (state, now() if final else None, reason, job_id))


def job_view(job: dict, files: list[dict] | None, fields: list[str] | None) -> dict:
    """A job as FTS's REST API shows it; files only when asked for, limited to `fields` if given."""
    params = job["params"]
    view = {"job_id": job["job_id"], "job_state": job["job_state"], "job_type": job["job_type"],
            "job_metadata": job["job_metadata"], "user_dn": job["user_dn"], "vo_name": VO,
            "priority": job["priority"], "submit_time": job["submit_time"], "job_finished": job["job_finished"],
            "reason": job["reason"], "verify_checksum": params.get("verify_checksum"),
            "overwrite_flag": bool(params.get("overwrite")), "http_status": "200 Ok"}
    if files is not None:
        view["files"] = [file_view(f, fields) for f in files]
    return view


def file_view(row: dict, fields: list[str] | None = None) -> dict:
    view = {key: row[key] for key in ("file_id", "file_index", "file_state", "source_surl", "dest_surl",
                                      "filesize", "checksum", "activity", "file_metadata", "reason",
                                      "start_time", "finish_time")}
    view.update(staging_start=None, staging_finished=None, job_id=row["job_id"])
    return {key: view.get(key) for key in fields} if fields else view


# ---------------------------------------------------------------------------------------------- copy
