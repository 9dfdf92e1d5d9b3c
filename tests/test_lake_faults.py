"""`nightlake lake fault RSE MODE | --clear` on the real lake: each fault is XRootD's own behaviour,
seen over https by a plain client (with the lake's client certificate), shown by `lake status`, and
gone after --clear. Every test clears its fault, since the lake is shared by the session."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from ingest_helpers import nightlake
from nightlake.lake.layout import RSES

pytestmark = pytest.mark.lake

RSE = RSES[2]  # OFFSITE-B


def url(lake, name: str) -> str:
    return f"https://127.0.0.1:{lake.https_port(RSE)}/rucio/faults/{name}"


def put(lake, name: str, data: bytes):
    import requests

    return requests.put(url(lake, name), data=data, verify=str(lake.ca_cert), cert=str(lake.proxy), timeout=30)


def get(lake, name: str):
    import requests

    return requests.get(url(lake, name), verify=str(lake.ca_cert), cert=str(lake.proxy), timeout=30)


@pytest.fixture
def existing(lake) -> tuple[str, bytes]:
    """A file on OFFSITE-B written before the fault."""
    name, data = f"{uuid.uuid4().hex}.dat", os.urandom(20_000)
    assert put(lake, name, data).status_code in (200, 201)
    return name, data


@pytest.fixture
def fault(lake):
    """Inject a fault on OFFSITE-B; it is cleared after the test whatever happened."""
    def inject(mode: str):
        result = nightlake("lake", "fault", "--dir", str(lake.root), RSE.name, mode)
        if mode == "full" and "needs root and overlayfs" in result.stderr:
            pytest.skip("this machine cannot mount an overlay (the full fault needs root and overlayfs)")
        assert result.returncode == 0, result.stderr
        return result

    yield inject
    result = nightlake("lake", "fault", "--dir", str(lake.root), RSE.name, "--clear")
    assert result.returncode == 0, result.stderr


def status(lake) -> str:
    return nightlake("lake", "status", "--dir", str(lake.root)).stdout


def test_readonly_refuses_writes_and_still_serves_reads(lake, fault, existing):
    fault("readonly")
    assert "fault: readonly" in status(lake)
    assert put(lake, f"{uuid.uuid4().hex}.dat", b"x" * 1000).status_code >= 400
    assert get(lake, existing[0]).content == existing[1]


def test_denied_refuses_every_request(lake, fault, existing):
    fault("denied")
    assert get(lake, existing[0]).status_code == 403
    assert put(lake, f"{uuid.uuid4().hex}.dat", b"x" * 1000).status_code == 403


def test_error_answers_a_share_of_requests_with_xrootds_own_http_500(lake, fault, existing):
    """Half the opens fail with EIO under XRootD (a 1 in 2^40 chance that 40 requests all pass or
    all fail); what gets through is whole, and once the fault is cleared the files it wrote are
    there, owned by the server's user, as if no fault had been."""
    fault("error")
    assert "fault: error" in status(lake)
    written = {f"{uuid.uuid4().hex}.dat": os.urandom(10_000) for _ in range(20)}
    puts = {name: put(lake, name, data) for name, data in written.items()}
    gets = [get(lake, existing[0]) for _ in range(20)]
    answers = [r.status_code for r in [*puts.values(), *gets]]
    assert {code for code in answers if code >= 400} == {500}
    assert 0 < answers.count(500) < len(answers)
    assert all("input/output error" in r.text for r in [*puts.values(), *gets] if r.status_code == 500)
    assert all(r.content == existing[1] for r in gets if r.status_code == 200)
    stored = [name for name, r in puts.items() if r.status_code in (200, 201)]
    assert nightlake("lake", "fault", "--dir", str(lake.root), RSE.name, "--clear").returncode == 0
    assert "fault:" not in status(lake)
    owner = lake.rse_data(RSE).stat().st_uid
    for name in stored:
        path = lake.rse_data(RSE) / "rucio" / "faults" / name
        assert path.read_bytes() == written[name] and path.stat().st_uid == owner


def test_full_refuses_a_new_file_and_keeps_the_old_ones(lake, fault, existing):
    import requests

    fault("full")
    try:
        refused = put(lake, f"{uuid.uuid4().hex}.dat", os.urandom(100_000)).status_code >= 400
    except requests.ConnectionError:  # XrdHttp drops the connection on ENOSPC
        refused = True
    assert refused
    assert get(lake, existing[0]).content == existing[1]


def test_slow_throttles_the_server(lake, fault, existing):
    fault("slow")
    assert "throttle.throttle data 262144" in (lake.rse_dir(RSE) / "xrootd.cfg").read_text()
    assert get(lake, existing[0]).content == existing[1]  # slower, still right


def test_down_stops_the_rse_and_up_leaves_it_down(lake, fault):
    fault("down")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", lake.https_port(RSE)), timeout=2).close()
    assert nightlake("lake", "up", "--dir", str(lake.root)).returncode == 0
    shown = nightlake("lake", "status", "--dir", str(lake.root))
    assert shown.returncode == 0 and "fault: down" in shown.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", lake.https_port(RSE)), timeout=2).close()


def test_clear_brings_the_rse_back(lake, existing):
    assert nightlake("lake", "fault", "--dir", str(lake.root), RSE.name, "error").returncode == 0
    assert nightlake("lake", "fault", "--dir", str(lake.root), RSE.name, "--clear").returncode == 0
    assert "fault:" not in status(lake)
    assert get(lake, existing[0]).content == existing[1]


@pytest.mark.parametrize("args, message", [
    (["NOWHERE", "down"], "unknown RSE 'NOWHERE'"),
    ([RSE.name, "melting"], "unknown fault mode 'melting'"),
    ([RSE.name], "give a fault mode"),
])
def test_an_unknown_rse_or_mode_is_bad_input_in_one_line(lake, args, message):
    result = nightlake("lake", "fault", "--dir", str(lake.root), *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
