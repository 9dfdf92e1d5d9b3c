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

Jobs live in SQLite (`transfer_jobs`: FTS's job model and its store), so a restarted conveyor, or a
restarted service, still gets its answers; a copy that was ACTIVE when the service stopped is
submitted again at start.

Credentials: the API requires a client certificate (or an RFC 3820 proxy of one) signed by `--ca`.
Towards the lake's XRootD servers gfal2 presents `X509_USER_PROXY` (TLS client certificate over
https, GSI over root://), and is given the bearer credential "none" for each https endpoint:
without a bearer credential gfal2 asks XrdHttpTPC for gridsite proxy delegation, which XRootD 5.5
refuses ("unsupported credential type: gridsite"); with one it sends `Credential: none`, so the
destination pulls from the source anonymously (the lake's RSEs let anyone read, nobody but the
lake's client write). The lake's XRootD has no token plugin, so the value carries no secret.

This module runs alone under Debian's /usr/bin/python3 (the gfal2 bindings are built for it): it
imports only the standard library, gfal2 and its sibling `transfer_jobs`, never the rest of nightlake.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import ssl
import sys
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = "3.12.0"  # the FTS REST API version whose subset this serves
PROXY_CNS = re.compile(r"(/CN=(\d+|proxy|limited proxy))+$")

if __package__:  # imported as nightlake.lake.transfers (tests)
    from nightlake.lake.transfer_jobs import BASE_ID, VO, BadRequest, Store, file_view, job_from_submission, job_view
else:  # run as a script by Debian's python3, beside its sibling module
    from transfer_jobs import BASE_ID, VO, BadRequest, Store, file_view, job_from_submission, job_view

log = logging.getLogger("nightlake.transfers")


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
