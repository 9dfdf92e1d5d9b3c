"""What an ingest reads: a directory tree or a night spec, as a stream of journal records.

Both sources yield `SourceFile`s, whose fields are exactly `IngestJournal.add_files`' keys, so the pipeline
journals a source without knowing which kind it is. Both stream: a 500,000-file night is never a
list of records in memory. `from_directory` holds one directory's sorted names at a time (for a
deterministic order) and the names seen so far (for the duplicate-name check).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlake import BadInput
from nightlake.night import names
from nightlake.night.fits import header as fitsheader
from nightlake.night.plan import Plan, PlannedFile

SIDECAR = ".meta.json"
TEMPORARY = (".part", ".nightlake-part")
PAYLOAD = "payload:"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to ingest, as the journal records it (`IngestJournal.add_files` takes it as is)."""

    scope: str
    name: str
    dataset: str
    source: str  # absolute path, or "payload:<seed>" for a streamed spec file
    bytes: int
    adler32: str | None  # None: computed while uploading
    meta: dict


def from_directory(root: Path, scope: str, dataset: str | None = None) -> Iterator[SourceFile]:
    """Every regular file under `root`, in a deterministic order (sorted, a directory's files before
    its sub-directories, so each dataset's files come together).

    A sub-directory is a dataset named after its relative path with `/` -> `.`; files directly in
    `root` join a dataset named after `root`. `dataset` puts every file in that one dataset instead.
    Hidden entries, `*.part`/`*.nightlake-part` temporaries and `*.meta.json` sidecars are skipped;
    directory symlinks are not followed (no loops). Metadata: the FITS header's Rucio keys, then the
    file's sidecar, whose keys win.

    A file's DID name is its basename, so two files with one basename would be one DID: the walk
    keeps every name seen (a dict of name -> directory: ~70 MB for 500,000 names) to fail on the
    first duplicate, naming both paths, before anything is uploaded.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise BadInput(f"{root}: not a directory")
    _check_scope(scope)
    if dataset is not None:
        _check_name(dataset, "--dataset")
    seen: dict[str, str] = {}  # values share one string per directory
    for directory, names in _walk(root):
        rel, where = directory.relative_to(root).as_posix(), str(directory)
        ds = dataset or (root.name if rel == "." else rel.replace("/", "."))
        _check_name(ds, f"{directory}: dataset name")
        sidecars = {n for n in names if n.endswith(SIDECAR)}
        for name in names:
            if name.endswith(SIDECAR):
                continue
            path = directory / name
            _check_name(name, str(path))
            if (first := seen.setdefault(name, where)) != where:
                raise BadInput(f"{path} and {Path(first) / name}: same file name, so the same DID "
                               f"{scope}:{name}; rename one")
            yield _source_file(path, scope, ds, name + SIDECAR in sidecars)


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """(directory, sorted names of its files to consider), depth first, sub-directories sorted."""
    stack = [root]
    while stack:
        directory = stack.pop()
        files, dirs = [], []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or entry.name.endswith(TEMPORARY):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(entry.name)
                    elif entry.is_file():
                        files.append(entry.name)
        except OSError as exc:
            raise BadInput(f"{directory}: cannot list ({exc.strerror})") from None
        files.sort()
        yield directory, files
        stack.extend(directory / d for d in sorted(dirs, reverse=True))


def _source_file(path: Path, scope: str, dataset: str, has_sidecar: bool) -> SourceFile:
    try:
        size = path.stat().st_size
        meta = fitsheader.rucio_metadata(fitsheader.read_header(path)) if fitsheader.is_fits(path) else {}
    except fitsheader.BadHeader:
        meta = {}  # not valid FITS after all: ingested as bytes; required metadata decides
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    if has_sidecar:
        meta.update(_sidecar(path.with_name(path.name + SIDECAR)))
    return SourceFile(scope, path.name, dataset, str(path), size, None, meta)


def _sidecar(path: Path) -> dict[str, Any]:
    """A sidecar is one JSON object of metadata; anything else is the user's to fix."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a readable JSON sidecar ({exc})") from None
    if not isinstance(meta, dict):
        raise BadInput(f"{path}: a metadata sidecar must be a JSON object, got {type(meta).__name__}")
    return meta


def _check_scope(scope: str) -> None:
    """Rucio would refuse a bad DID only at registration, after the upload: refuse it up front."""
    if problem := names.scope_problem(scope):
        raise BadInput(f"--scope {scope}: {problem}")


def _check_name(name: str, where: str) -> None:
    if problem := names.name_problem(name):
        raise BadInput(f"{where}: {name!r}: {problem}")


def from_spec(plan: Plan) -> Iterator[SourceFile]:
    """One record per planned file; the bytes are produced at upload time from the payload seed.
    adler32 is left to the upload, which computes it while sending: the payload stream could give it
    now, but at a few ms per file that would cost a 500,000-file night most of an hour up front."""
    for planned in plan.files():
        yield SourceFile(planned.scope, planned.name, planned.dataset, f"{PAYLOAD}{planned.payload_seed}",
                         planned.size, None, planned.meta)


def planned_file(record: Mapping[str, Any] | Any) -> PlannedFile:
    """The PlannedFile behind a journal record of `from_spec`, for `payload.open_stream`."""
    get = record.get if isinstance(record, Mapping) else lambda key: getattr(record, key)
    source = get("source")
    if not source.startswith(PAYLOAD):
        raise ValueError(f"{source!r} is not a spec payload (expected {PAYLOAD}<seed>)")
    return PlannedFile(scope=get("scope"), name=get("name"), dataset=get("dataset"), size=get("bytes"),
                       payload_seed=int(source[len(PAYLOAD):]), meta=get("meta"))


def required_missing(meta: dict, required: Iterable[str]) -> list[str]:
    """Required keys that are absent or empty: the pipeline quarantines the file with these."""
    return [key for key in required if meta.get(key) in (None, "", [], {})]
