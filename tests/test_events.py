"""The event stream: fan-out to listeners, and the JSON-lines log the report reads."""

from __future__ import annotations

import json

from nightlake.observe.events import EventBus, EventLog, redact


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_listener_receives_every_event_in_order():
    bus, a, b = EventBus(), [], []
    bus.subscribe(a.append)
    bus.subscribe(b.append)
    bus.emit("upload.done", files=1, bytes=10)
    bus.emit("register.batch", files=990)
    assert [e.kind for e in a] == [e.kind for e in b] == ["upload.done", "register.batch"]
    assert a[0].fields == {"files": 1, "bytes": 10}


def test_event_log_writes_one_json_line_per_event_with_time_and_kind(tmp_path):
    bus = EventBus()
    with EventLog(tmp_path / "events.jsonl") as log:
        bus.subscribe(log)
        bus.emit("upload.done", files=3, bytes=30, rse="XRD1")
    (line,) = lines(tmp_path / "events.jsonl")
    assert line["kind"] == "upload.done" and line["bytes"] == 30 and line["ts"] > 0


def test_event_log_buffers_until_the_batch_is_full(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, flush_every=3, flush_seconds=3600)
    bus = EventBus()
    bus.subscribe(log)
    bus.emit("retry")
    bus.emit("retry")
    assert path.read_text() == ""
    bus.emit("retry")
    assert len(lines(path)) == 3
    log.close()


def test_event_log_flushes_what_is_pending_on_close(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path, flush_every=1000, flush_seconds=3600)
    log_bus = EventBus()
    log_bus.subscribe(log)
    log_bus.emit("error", error_class="permanent")
    log.close()
    assert lines(path)[0]["error_class"] == "permanent"


def test_event_log_appends_to_an_existing_log_on_resume(tmp_path):
    path = tmp_path / "events.jsonl"
    for kind in ("run.start", "run.resume"):
        with EventLog(path) as log:
            bus = EventBus()
            bus.subscribe(log)
            bus.emit(kind)
    assert [line["kind"] for line in lines(path)] == ["run.start", "run.resume"]


def test_event_log_never_writes_secrets(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        bus = EventBus()
        bus.subscribe(log)
        bus.emit("error", auth_token="s3cr3t-token", headers={"Authorization": "Bearer abc.def"},
                 message="PUT https://dav.example/f1?authz=SECRETVALUE&x=1 failed: Bearer abc.def")
    text = path.read_text()
    assert "s3cr3t" not in text and "SECRETVALUE" not in text and "abc.def" not in text
    assert "https://dav.example/f1?authz=<redacted>&x=1" in text


def test_redact_leaves_ordinary_values_alone():
    fields = {"files": 990, "rse": "XRD1", "message": "HTTP 500 : Copy failed"}
    assert redact(fields) == fields
