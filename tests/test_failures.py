"""Error classification and replication error groups, with messages as real systems write them."""

from __future__ import annotations

import pytest
import requests
from rucio.common import exception as rucio_exc
from XRootD.client.responses import XRootDStatus

from nightlake.catalog.failures import (
    ChecksumMismatch,
    ErrorClass,
    classify,
    replication_error_group,
)

T_STORAGE, T_CATALOG = ErrorClass.TRANSIENT_STORAGE, ErrorClass.TRANSIENT_CATALOG
AUTH, PERMANENT = ErrorClass.AUTH, ErrorClass.PERMANENT


def http_error(status, reason="", text=""):
    response = requests.Response()
    response.status_code, response.reason, response._content = status, reason, text.encode()
    return requests.HTTPError(f"{status} {reason}", response=response)


def xrootd_status(code, errno=0, message=""):
    return XRootDStatus({"status": 1, "code": code, "errno": errno, "message": message,
                         "ok": False, "error": True, "fatal": False, "shellcode": 50})


@pytest.mark.parametrize("exc, expected", [
    (rucio_exc.DatabaseException("deadlock detected"), T_CATALOG),
    (rucio_exc.CannotAuthenticate("Cannot authenticate to account root"), AUTH),
    (rucio_exc.AccessDenied("Account ingest can not add replicas on RSE XRD1"), AUTH),
    (rucio_exc.DataIdentifierAlreadyExists("Data Identifier already exists"), PERMANENT),
    (rucio_exc.FileAlreadyExists("cta:f1.fits"), PERMANENT),
    (rucio_exc.Duplicate("Replica already exists"), PERMANENT),
    (rucio_exc.InvalidObject("Provided object does not match schema"), PERMANENT),
    (rucio_exc.RucioException("no error information passed (http status code: 500)"), T_CATALOG),
])
def test_rucio_exceptions_from_the_server_classify_by_type(exc, expected):
    assert classify(exc, catalog=True).error_class is expected


def test_rucio_service_unavailable_is_transient_on_the_side_that_was_called():
    exc = rucio_exc.ServiceUnavailable("Problem to connect https://127.0.0.1:18443/rucio/")
    assert (classify(exc).error_class, classify(exc, catalog=True).error_class) == (T_STORAGE, T_CATALOG)


@pytest.mark.parametrize("exc, expected", [
    (requests.ConnectionError("Connection refused"), T_STORAGE),
    (requests.Timeout("read timed out"), T_STORAGE),
    (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), T_STORAGE),
    (http_error(500, "Internal Server Error"), T_STORAGE),
    (http_error(507, "Insufficient Storage"), T_STORAGE),
    (http_error(401, "Unauthorized"), AUTH),
    (http_error(403, "Forbidden"), AUTH),
    (http_error(404, "Not Found"), PERMANENT),
    (http_error(409, "Conflict"), PERMANENT),
    (http_error(429, "Too Many Requests"), T_STORAGE),
])
def test_requests_errors_classify_by_kind_and_http_status(exc, expected):
    assert classify(exc).error_class is expected


def test_http_403_on_a_disallowed_path_is_permanent_not_auth():
    exc = http_error(403, "Forbidden", "Stating relative path 'rucio/cta/f.fits' is disallowed.")
    assert classify(exc).error_class is PERMANENT


def test_http_403_refusing_the_client_stays_auth():
    exc = http_error(403, "Forbidden", "Unable to open /data/cta/f.fits; permission denied")
    assert classify(exc).error_class is AUTH


def test_an_untrusted_certificate_is_permanent_not_retried():
    exc = requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert classify(exc).error_class is PERMANENT


@pytest.mark.parametrize("status, expected", [
    (xrootd_status(400, 3012, "[ERROR] Server responded with an error: [3012] Internal server error"), T_STORAGE),
    (xrootd_status(400, 3005, "[ERROR] Server responded with an error: [3005] No space left"), T_STORAGE),
    (xrootd_status(400, 3009, "[ERROR] Server responded with an error: [3009] no space"), T_STORAGE),
    (xrootd_status(103, 0, "[ERROR] Socket timeout"), T_STORAGE),
    (xrootd_status(108, 0, "[FATAL] Connection error"), T_STORAGE),
    (xrootd_status(400, 3011, "[ERROR] Server responded with an error: [3011] No such file"), PERMANENT),
    (xrootd_status(400, 3010, "[ERROR] Server responded with an error: [3010] Stating relative path "
                              "'rucio/cta/30/74/f.dat.rucio.upload' is disallowed"), PERMANENT),
    (xrootd_status(400, 3010, "[ERROR] Server responded with an error: [3010] Unable to open /data/f; "
                              "permission denied"), AUTH),
    (xrootd_status(204, 0, "[FATAL] Auth failed"), AUTH),
])
def test_xrootd_statuses_classify_by_code_and_server_errno(status, expected):
    assert classify(status).error_class is expected


def test_xrootd_exceptions_classify_by_the_status_they_carry():
    exc = xrootd_status(400, 3011, "[3011] No such file").exception()
    assert classify(exc).error_class is PERMANENT


@pytest.mark.parametrize("message, expected", [
    ("No write pools online for <cta:f1.fits>", T_STORAGE),
    ("[3012] io.netty.util.internal.OutOfDirectMemoryError: failed to allocate 16777216 byte(s)", T_STORAGE),
    ("HTTP 500 : Copy failed with mode streamed, with error: Transfer failed", T_STORAGE),
    ("OIDC token expired at 12:00", AUTH),
    ("globus proxy has expired", AUTH),
    ("HTTP 401 while writing", AUTH),
    ("HTTP 403 Forbidden: Stating relative path 'rucio/cta/f.fits' is disallowed", PERMANENT),
    ("something nobody has seen before", PERMANENT),
])
def test_untyped_errors_classify_by_message(message, expected):
    assert classify(RuntimeError(message)).error_class is expected


def test_a_checksum_mismatch_is_permanent():
    assert classify(ChecksumMismatch("root://x//f", "01020304", "0a0b0c0d")).error_class is PERMANENT


def test_an_unreadable_local_file_is_permanent():
    assert classify(PermissionError(13, "Permission denied", "/data/f1.fits")).error_class is PERMANENT


def test_a_refused_connection_is_transient():
    assert classify(ConnectionRefusedError(111, "Connection refused")).error_class is T_STORAGE


def test_classification_keeps_the_original_message():
    message = classify(rucio_exc.DatabaseException("deadlock detected")).message
    assert "deadlock detected" in message and message.startswith("DatabaseException")


@pytest.mark.parametrize("message, group", [
    ("[3012] io.netty.util.internal.OutOfDirectMemoryError: failed to allocate 16777216 byte(s) of direct "
     "memory (used: 1056964615, max: 1073741824)", "storage-out-of-memory"),
    ("HTTP 500 : Copy failed with mode streamed, with error: Transfer failed: failure: Server returned "
     "nothing (no headers, no data)", "http-500-copy"),
    ("RequestErrMsg.TRANSFER_FAILED:TRANSFER ERROR: Copy failed (3rd pull, 3rd push, streamed). Last attempt: "
     "HTTP 500 : Unexpected server error: 500  (destination)", "http-500-copy"),  # the lake's `error` fault
    ("TRANSFER [70] DESTINATION OVERWRITE srm-ifce err: Communication error on send, err: [SE][srmRm]"
     "[SRM_FAILURE] No write pools online for <cta:f1.fits>", "no-write-pools"),
    ("SOURCE CHECKSUM MISMATCH User defined checksum and source checksum do not match "
     "01020304 != 0a0b0c0d", "checksum-mismatch"),
    ("Destination and source checksums do not match", "checksum-mismatch"),
    ("NO_SOURCES:NO_SOURCES", "no-sources"),
    ("RSE excluded; not enough quota: insufficient quota on OFFSITE", "quota"),
    ("TRANSFER [110] Operation timed out", "transfer-timeout"),
    ("DESTINATION MAKE_PARENT HTTP 403 : Permission refused", "permission"),
    ("TRANSFER_FAILED:DESTINATION [28] Failed to create file: No space left on device", "no-space"),
    ("TRANSFER_FAILED:DESTINATION OVERWRITE [17] Destination file exists and overwrite is not enabled",
     "destination-exists"),
    ("TRANSFER_FAILED:SOURCE [2] HTTP 404 : File not found", "source-missing"),
    ("proxy certificate expired", "auth"),
    ("TRANSFER [111] Connection refused", "storage-unavailable"),
    ("A brand new kind of failure", "other"),
])
def test_replication_errors_fall_into_their_group(message, group):
    assert replication_error_group(message) == group


def test_http_423_locked_is_transient_storage():
    response = requests.Response()
    response.status_code = 423
    assert classify(requests.HTTPError("423 Locked", response=response)).error_class is ErrorClass.TRANSIENT_STORAGE
