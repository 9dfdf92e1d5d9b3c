"""The lake's transfer service: the part of the FTS3 REST API that Rucio's stock FTS3 transfertool
speaks, with every file copied by gfal2, the copy library FTS itself drives.

Why it exists: production Rucio replicates through its conveyor daemons and an FTS3 server, and no
FTS3 server can be installed here. Rucio has no transfertool plugins, so the lake speaks FTS3's
protocol instead; pointing the RSE attribute `fts` at a real FTS is all it takes to swap it out.

What Rucio's `rucio/transfertool/fts3.py` calls, and what this answers:
- `POST /jobs` `{"files": [...], "params": {...}}` -> 200 `{"job_id"}`; 409 for a deterministic
  job id (`params.id_generator`) submitted twice;
- `GET /jobs/ID1,ID2?files=FIELD,...` (the poller's bulk query) -> one job, or a list of jobs, each
  with `http_status` ("200 Ok", or "404 Not Found" for a job this service never had) and its files
  limited to the fields asked for; `GET /jobs/ID/files`; `DELETE /jobs/ID` (cancel);
  `POST /jobs/ID` `{"params": {"priority"}}`; `GET /whoami` (`base_id`, `vos`); `GET /` (version).
- Job and file states are FTS's: SUBMITTED, ACTIVE, FINISHED, FAILED, CANCELED, NOT_USED (the other
  sources of a multi-source file, kept for the next attempt), FINISHEDDIRTY for a job with both.

How a file is copied, as FTS does it: gfal2 `filecopy` with the job's `overwrite`, `strict_copy`
and `verify_checksum` (`both` / `source` / `target` / `none`, compared with the file's
`ADLER32:...`), the parent directory created, and a timeout per file. https goes as HTTP-TPC
"3rd pull" with gfal2's streamed fallback; root:// as XRootD TPC. A failure's reason is gfal2's
message as gfal2 gives it (only surrounding whitespace dropped), so Rucio records the real error.
At most `--max-active` copies run at once, and at most `--per-link` on one source->destination link.

Jobs live in SQLite, so a restarted conveyor, or a restarted service, still gets its answers; a
copy that was ACTIVE when the service stopped is submitted again at start.

Credentials: the API requires a client certificate (or an RFC 3820 proxy of one) signed by `--ca`.
Towards the lake's XRootD servers gfal2 presents `X509_USER_PROXY` (TLS client certificate over
https, GSI over root://), and is given the bearer credential "none" for each https endpoint:
without a bearer credential gfal2 asks XrdHttpTPC for gridsite proxy delegation, which XRootD 5.5
refuses ("unsupported credential type: gridsite"); with one it sends `Credential: none`, so the
destination pulls from the source anonymously (the lake's RSEs let anyone read, nobody but the
lake's client write). The lake's XRootD has no token plugin, so the value carries no secret.

This module runs alone under Debian's /usr/bin/python3 (the gfal2 bindings are built for it): it
imports only the standard library and gfal2, never nightlake.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sqlite3
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = "3.12.0"  # the FTS REST API version whose subset this serves
VO = "nightlake"
BASE_ID = uuid.UUID("6e696768-746c-616b-6520-667473337631")  # fixed: deterministic job ids stay stable
FINAL_JOB_STATES = ("FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
PROXY_CNS = re.compile(r"(/CN=(\d+|proxy|limited proxy))+$")

log = logging.getLogger("nightlake.transfers")


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

def checksum_mode(verify: object) -> str:
    """FTS's `verify_checksum` (a strategy, or a boolean from older clients) as a gfal2 mode name."""
    if verify is True:
        return "both"
    if verify in (False, None):
        return "none"
    if verify not in ("both", "source", "target", "none"):
        raise BadRequest(f"verify_checksum {verify!r} is not one of both, source, target, none")
    return str(verify)


def copy(row: dict, timeout: int) -> str | None:
    """Copy one file with gfal2 as FTS would; None when done, else gfal2's reason."""
    import gfal2

    params = row["params"]
    ctx = gfal2.creat_context()
    ctx.set_opt_string("HTTP PLUGIN", "DEFAULT_COPY_MODE", "3rd pull")
    ctx.set_opt_boolean("HTTP PLUGIN", "ENABLE_STREAM_COPY", True)
    for url in (row["source_surl"], row["dest_surl"]):
        if url.startswith(("https://", "davs://")):
            parts = urlsplit(url)
            ctx.cred_set(f"{parts.scheme}://{parts.netloc}/", ctx.cred_new("BEARER", "none"))
    transfer = ctx.transfer_parameters()
    transfer.overwrite = bool(params.get("overwrite"))
    transfer.strict_copy = bool(params.get("strict_copy"))
    transfer.create_parent = True
    transfer.timeout = timeout
    mode = checksum_mode(params.get("verify_checksum", "both"))
    if mode != "none" and row["checksum"]:
        algorithm, _, value = row["checksum"].partition(":")
        transfer.set_checksum(getattr(gfal2.checksum_mode, mode), algorithm.upper(), value.lower())
    try:
        ctx.filecopy(transfer, row["source_surl"], row["dest_surl"])
    except gfal2.GError as error:
        return error.message.strip() or f"gfal2 error {error.code}"
    return None


def link(row: dict) -> tuple[str, str]:
    """The source and destination endpoints: FTS's unit of concurrency."""
    return urlsplit(row["source_surl"]).netloc, urlsplit(row["dest_surl"]).netloc


class Scheduler:
    """Runs SUBMITTED rows through gfal2 in a bounded pool, at most `per_link` per link."""

    def __init__(self, store: Store, max_active: int, per_link: int, timeout: int):
        self.store, self.max_active, self.per_link, self.timeout = store, max_active, per_link, timeout
        self.pool = ThreadPoolExecutor(max_active, thread_name_prefix="copy")
        self.active: Counter = Counter()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            for row in self.store.submitted():
                if not self._start(row):
                    break
            self.wake.wait(1.0)

    def _start(self, row: dict) -> bool:
        """Start the row if its link has room; False once every slot is taken."""
        key = link(row)
        with self.lock:
            if sum(self.active.values()) >= self.max_active:
                return False
            if self.active[key] >= self.per_link or not self.store.claim(row["file_id"]):
                return True
            self.active[key] += 1
        self.pool.submit(self._copy, row, key)
        return True

    def _copy(self, row: dict, key: tuple[str, str]) -> None:
        try:
            reason = copy(row, self.timeout)
        except Exception as error:  # a bug or a bad parameter must fail the file, not the worker
            reason = f"{type(error).__name__}: {error}"
        self.store.finish(row, reason)
        log.info("%s %s -> %s%s", "FAILED" if reason else "FINISHED", row["source_surl"], row["dest_surl"],
                 f": {reason}" if reason else "")
        with self.lock:
            self.active[key] -= 1
        self.wake.set()


# ----------------------------------------------------------------------------------------------- API

class Handler(BaseHTTPRequestHandler):
    """The REST routes; `server.store` and `server.scheduler` are the service's state."""

    protocol_version = "HTTP/1.1"
    JOBS = re.compile(r"^/jobs/([^/]+)$")
    JOB_FILES = re.compile(r"^/jobs/([^/,]+)/files$")

    def do_GET(self) -> None:
        path, query = self._route()
        if path == "/":
            return self._send(200, {"api": {"major": 3, "minor": 12, "patch": 0}, "version": VERSION,
                                    "service": "nightlake lake transfer service (FTS3 REST subset)"})
        if path == "/whoami":
            dn = self._dn()
            return self._send(200, {"dn": [dn], "user_dn": dn, "vos": [VO], "roles": [], "method": "certificate",
                                    "base_id": str(BASE_ID), "delegation_id": uuid.uuid5(BASE_ID, dn).hex[:16]})
        if match := self.JOB_FILES.match(path):
            job = self.server.store.job(match[1])
            if job is None:
                return self._not_found(match[1])
            return self._send(200, [file_view(f) for f in self.server.store.files(match[1])])
        if match := self.JOBS.match(path):
            return self._jobs(match[1].split(","), query)
        self._send(404, {"status": "404 Not Found", "message": f"no route {path}"})

    def _jobs(self, ids: list[str], query: dict) -> None:
        """One job as an object, several as a list (207 when some are unknown), as FTS answers."""
        fields = [f for f in ",".join(query.get("files", [])).split(",") if f] if "files" in query else None
        views = []
        for job_id in ids:
            job = self.server.store.job(job_id)
            if job is None:
                views.append({"job_id": job_id, "http_status": "404 Not Found",
                              "http_message": f"No job with the id {job_id} has been found"})
            else:
                views.append(job_view(job, self.server.store.files(job_id) if fields is not None else None, fields))
        if len(ids) == 1:
            return self._send(200 if views[0]["http_status"] == "200 Ok" else 404, views[0])
        self._send(200 if all(v["http_status"] == "200 Ok" for v in views) else 207, views)

    def do_POST(self) -> None:
        path, _ = self._route()
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError as error:
            return self._send(400, {"status": "400 Bad Request", "message": f"invalid JSON: {error}"})
        if path == "/jobs":
            return self._submit(body)
        if match := self.JOBS.match(path):
            job = self.server.store.job(match[1])
            if job is None:
                return self._not_found(match[1])
            self.server.store.set_priority(match[1], int((body.get("params") or {}).get("priority", job["priority"])))
            return self._send(200, job_view(self.server.store.job(match[1]), None, None))
        self._send(404, {"status": "404 Not Found", "message": f"no route {path}"})

    def _submit(self, body: dict) -> None:
        try:
            job, rows = job_from_submission(body, self._dn())
            checksum_mode(job["params"].get("verify_checksum", "both"))
        except BadRequest as error:
            return self._send(400, {"status": "400 Bad Request", "message": str(error)})
        if not self.server.store.add(job, rows):
            return self._send(409, {"status": "409 Conflict", "message": f"job {job['job_id']} already exists"})
        log.info("job %s submitted: %d file(s) by %s", job["job_id"], len(body["files"]), job["user_dn"])
        self.server.scheduler.wake.set()
        self._send(200, {"job_id": job["job_id"]})

    def do_DELETE(self) -> None:
        path, _ = self._route()
        match = self.JOBS.match(path)
        if not match or self.server.store.job(match[1]) is None:
            return self._not_found(match[1] if match else path)
        self.server.store.cancel(match[1])
        self._send(200, job_view(self.server.store.job(match[1]), None, None))

    def _route(self) -> tuple[str, dict]:
        parts = urlsplit(self.path)
        return parts.path.rstrip("/") or "/", parse_qs(parts.query)

    def _dn(self) -> str:
        """The client's subject in the slash form FTS shows: a proxy's own CNs (a number for an
        RFC 3820 proxy, `proxy` for a legacy one) dropped, so it names the user, not the proxy."""
        subject = (self.connection.getpeercert() or {}).get("subject", ())
        names = {"organizationName": "O", "commonName": "CN", "countryName": "C", "organizationalUnitName": "OU"}
        dn = "".join(f"/{names.get(k, k)}={v}" for rdn in subject for k, v in rdn)
        return PROXY_CNS.sub("", dn)

    def _not_found(self, what: str) -> None:
        self._send(404, {"status": "404 Not Found", "message": f"No job with the id {what} has been found"})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class Service(ThreadingHTTPServer):
    """HTTPS on loopback, a client certificate signed by the lake CA required on every connection."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: Store, scheduler: Scheduler, cert: str, key: str, ca: str):
        super().__init__(address, Handler)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS  # grid clients present RFC 3820 proxies
        self.store, self.scheduler = store, scheduler

    def get_request(self):
        """TLS is set up by the request's own thread (on its first read), so a slow or refused
        client never holds up the accept loop."""
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address) -> None:
        """A client refused at the TLS handshake (no lake certificate) or gone is one line;
        anything else is a bug of ours and keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError)):
            log.warning("connection from %s refused or broken: %s", client_address[0], error)
        else:
            log.exception("request from %s failed", client_address[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The local lake's FTS3-compatible transfer service.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite file holding the jobs")
    parser.add_argument("--cert", required=True, help="host certificate (PEM)")
    parser.add_argument("--key", required=True, help="host key (PEM)")
    parser.add_argument("--ca", required=True, help="CA that signs accepted client certificates")
    parser.add_argument("--max-active", type=int, default=4, help="copies at once, all links [4]")
    parser.add_argument("--per-link", type=int, default=2, help="copies at once on one source->destination link [2]")
    parser.add_argument("--file-timeout", type=int, default=300, help="seconds one file's copy may take [300]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("gfal2").setLevel(logging.WARNING)  # its INFO is every HTTP header of every copy
    store = Store(args.db)
    if requeued := store.requeue_active():
        log.info("%d copies cut short by the last stop submitted again", requeued)
    scheduler = Scheduler(store, args.max_active, args.per_link, args.file_timeout)
    threading.Thread(target=scheduler.run, name="scheduler", daemon=True).start()
    service = Service(("127.0.0.1", args.port), store, scheduler, args.cert, args.key, args.ca)
    log.info("serving the FTS3 REST subset on https://127.0.0.1:%d", args.port)
    service.serve_forever()


if __name__ == "__main__":
    main()
