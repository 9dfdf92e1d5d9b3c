"""The transfer service as a process, without a lake: its own certificates, file:// copies by
gfal2, and the REST answers Rucio's FTS3 transfertool reads. Needs Debian's gfal2 bindings."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest

from conftest import free_port
from nightlake.lake import certs

SERVICE = Path(__file__).resolve().parents[1] / "src" / "nightlake" / "lake" / "transfers.py"
PYTHON = "/usr/bin/python3"
HAS_GFAL2 = Path(PYTHON).exists() and subprocess.run([PYTHON, "-c", "import gfal2"], capture_output=True).returncode == 0
pytestmark = pytest.mark.skipif(not HAS_GFAL2, reason="needs python3-gfal2 for /usr/bin/python3")


@pytest.fixture
def service(tmp_path):
    """The service on a free loopback port, with a CA, host and client certificate of its own."""
    certs.ensure(tmp_path / "certs")
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(SERVICE), "--port", str(port), "--db", str(tmp_path / "jobs.sqlite"),
                             "--cert", str(tmp_path / "certs" / "host.pem"), "--key", str(tmp_path / "certs" / "host.key"),
                             "--ca", str(tmp_path / "certs" / "ca.pem")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    call = caller(tmp_path / "certs", port)
    deadline = time.monotonic() + 20
    while True:
        try:
            call("GET", "/")
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
    yield call, tmp_path
    proc.terminate()
    proc.wait(10)


def caller(certdir: Path, port: int):
    context = ssl.create_default_context(cafile=str(certdir / "ca.pem"))
    context.load_cert_chain(str(certdir / "x509up"))

    def call(method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        """One REST call with the client certificate: (HTTP status, JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{call.url}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    call.url = f"https://127.0.0.1:{port}"
    return call


def submit(call, source: Path, destination: Path, checksum: str, **params) -> str:
    status, answer = call("POST", "/jobs", {
        "files": [{"sources": [f"file://{source}"], "destinations": [f"file://{destination}"],
                   "checksum": checksum, "metadata": {"request_id": "r1"}}],
        "params": {"verify_checksum": "both", "overwrite": False, "job_metadata": {"issuer": "rucio"}, **params}})
    assert status == 200, answer
    return answer["job_id"]


def final(call, job_id: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        status, job = call("GET", f"/jobs/{job_id}?files=file_state,reason,start_time,finish_time,file_metadata")
        if job["job_state"] in ("FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_a_file_is_copied_verified_and_reported_as_fts_does(service):
    call, tmp = service
    data = os.urandom(100_000)
    (tmp / "src").write_bytes(data)
    job_id = submit(call, tmp / "src", tmp / "out" / "dst", f"ADLER32:{zlib.adler32(data):08x}")
    job = final(call, job_id)
    assert job["job_state"] == "FINISHED" and job["http_status"] == "200 Ok"
    (file,) = job["files"]
    assert file["file_metadata"] == {"request_id": "r1"} and file["start_time"] and file["finish_time"]
    assert (tmp / "out" / "dst").read_bytes() == data


def test_a_bulk_query_lists_known_and_unknown_jobs(service):
    call, tmp = service
    (tmp / "src").write_bytes(b"x" * 10)
    job_id = submit(call, tmp / "src", tmp / "dst", f"ADLER32:{zlib.adler32(b'x' * 10):08x}")
    status, jobs = call("GET", f"/jobs/{job_id},nosuchjob?files=file_state")
    assert status == 207
    assert [j["http_status"] for j in jobs] == ["200 Ok", "404 Not Found"]
    assert call("GET", "/jobs/nosuchjob")[0] == 404


def test_a_wrong_checksum_fails_with_gfal2s_message(service):
    call, tmp = service
    (tmp / "src").write_bytes(b"payload")
    job = final(call, submit(call, tmp / "src", tmp / "dst", "ADLER32:00000001"))
    assert job["job_state"] == "FAILED"
    assert "do not match" in job["files"][0]["reason"] and "00000001" in job["files"][0]["reason"]


def test_a_duplicate_deterministic_submission_is_409(service):
    call, tmp = service
    (tmp / "src").write_bytes(b"payload")
    checksum = f"ADLER32:{zlib.adler32(b'payload'):08x}"
    submit(call, tmp / "src", tmp / "dst", checksum, id_generator="deterministic", sid="r1")
    status, _ = call("POST", "/jobs", {"files": [{"sources": [f"file://{tmp / 'src'}"],
                                                  "destinations": [f"file://{tmp / 'dst'}"]}],
                                       "params": {"id_generator": "deterministic", "sid": "r1"}})
    assert status == 409


def test_a_client_without_the_lake_certificate_is_refused(service):
    call, tmp = service
    assert call("GET", "/whoami")[1]["user_dn"].endswith("/CN=nightlake-client")
    context = ssl.create_default_context(cafile=str(tmp / "certs" / "ca.pem"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{call.url}/whoami", context=context, timeout=10).read()
