"""What an ingest reads: a directory tree or a night spec, as a stream of journal records.

Both sources yield `SourceFile`s, whose fields are exactly `IngestJournal.add_files`' keys, so the pipeline
journals a source without knowing which kind it is. Both stream: a 500,000-file night is never a
list of records in memory. `from_directory` holds one directory's sorted names at a time (for a
deterministic order) and the names seen so far (for the duplicate-name check).
"""

from __future__ import annotations

import json
import os
import stat
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
CHUNK = 8 << 20  # bytes per read of a local source, as the storage layer reads


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
    mtime_ns: int | None = None  # a local file's, when walked: `read_unchanged` compares it


class Skipped:
    """Entries of a directory source that are not ingested, counted by reason with a few sample
    paths: an ingest says what it left out (a warning, an event, the summary), never silently."""

    SAMPLES = 3

    def __init__(self) -> None:
        self._by_reason: dict[str, tuple[int, list[str]]] = {}

    def add(self, reason: str, path: Path) -> None:
        count, sample = self._by_reason.get(reason, (0, []))
        self._by_reason[reason] = (count + 1, sample + [str(path)] if len(sample) < self.SAMPLES else sample)

    def as_list(self) -> list[dict[str, Any]]:
        """[{reason, files, sample}], as the event, run metadata and summary carry them."""
        return [{"reason": reason, "files": count, "sample": sample}
                for reason, (count, sample) in self._by_reason.items()]


FILE, DIRECTORY = "file", "directory"
SPECIAL = "not a regular file (FIFO, socket or device)"
LINK_OUT = "link out of the source tree (--follow-links follows it)"
LINK_TO_DIRECTORY = "link to a directory (not followed)"
BROKEN_LINK = "broken link"


def from_directory(root: Path, scope: str, dataset: str | None = None, follow_links: bool = False,
                   skipped: Skipped | None = None, vo: str | None = None) -> Iterator[SourceFile]:
    """Every regular file under `root`, in a deterministic order (sorted, a directory's files before
    its sub-directories, so each dataset's files come together).

    A sub-directory is a dataset named after its relative path with `/` -> `.`; files directly in
    `root` join a dataset named after `root`. `dataset` puts every file in that one dataset instead.
    Hidden entries, `*.part`/`*.nightlake-part` temporaries and `*.meta.json` sidecars are skipped.
    So are, counted in `skipped`: FIFOs, sockets and devices (opening a FIFO would wait forever),
    links to directories (no loops), and links to files out of the tree unless `follow_links`
    (a night's directory should not ingest whatever a link reaches). Metadata: the FITS header's
    Rucio keys, then the file's sidecar, whose keys win.

    A file's DID name is its basename, so two files with one basename would be one DID: the walk
    keeps every name seen (a dict of name -> directory: ~70 MB for 500,000 names) to fail on the
    first duplicate, naming both paths, before anything is uploaded.

    With `vo`, names are CTAO's (its Rucio policy): a file's is its path from the last
    `<vo>/<scope>/` of `root`'s own path on (`root` itself stands for `/<vo>/<scope>` when its path
    has none), as on the on-site RSE, whose PFNs are the names; its dataset is the directory it is
    in, so names are unique by construction. Files directly in the scope's directory would have
    the scope's container as dataset: refused.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise BadInput(f"{root}: not a directory")
    _check_scope(scope)
    if dataset is not None:
        if vo:
            raise BadInput("--dataset: with --vo a file's dataset is its directory")
        _check_name(dataset, "--dataset")
    skipped = skipped if skipped is not None else Skipped()
    seen: dict[str, str] = {}  # values share one string per directory
    for directory, files in _walk(root, follow_links, skipped):
        rel, where = directory.relative_to(root).as_posix(), str(directory)
        if vo:
            top = _ctao_path(root, vo, scope)
            if rel == "." and top == f"/{vo}/{scope}" and any(not n.endswith(SIDECAR) for n in files):
                raise BadInput(f"{root / files[0]}: with --vo a file's directory is its dataset, so files "
                               f"belong in sub-directories of {root}")
            ds = top if rel == "." else f"{top}/{rel}"
        else:
            ds = dataset or (root.name if rel == "." else rel.replace("/", "."))
        if files or not vo:  # under CTAO's names a directory without files is a container, not a dataset
            _check_name(ds, f"{directory}: dataset name", scope, bool(vo))
        sidecars = {n for n in files if n.endswith(SIDECAR)}
        for name in files:
            if name.endswith(SIDECAR):
                continue
            path = directory / name
            did = f"{ds}/{name}" if vo else name
            _check_name(did, str(path), scope, bool(vo))
            if not vo and (first := seen.setdefault(name, where)) != where:
                raise BadInput(f"{path} and {Path(first) / name}: same file name, so the same DID "
                               f"{scope}:{name}; rename one")
            if (record := _source_file(path, scope, ds, name + SIDECAR in sidecars, did)) is None:
                skipped.add(SPECIAL, path)  # replaced by a FIFO or device since it was listed
            else:
                yield record


def _ctao_path(root: Path, vo: str, scope: str) -> str:
    """The name of `root` in CTAO's namespace: its path from its last `<vo>/<scope>` on."""
    parts = root.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i:i + 2] == (vo, scope):
            return "/" + "/".join(parts[i:])
    return f"/{vo}/{scope}"


def _walk(root: Path, follow_links: bool, skipped: Skipped) -> Iterator[tuple[Path, list[str]]]:
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
                    kind = _kind(entry, root, follow_links)
                    if kind is FILE:
                        files.append(entry.name)
                    elif kind is DIRECTORY:
                        dirs.append(entry.name)
                    else:
                        skipped.add(kind, directory / entry.name)
        except OSError as exc:
            raise BadInput(f"{directory}: cannot list ({exc.strerror})") from None
        files.sort()
        yield directory, files
        stack.extend(directory / d for d in sorted(dirs, reverse=True))


def _kind(entry: os.DirEntry, root: Path, follow_links: bool) -> str:
    """FILE, DIRECTORY, or why the entry is skipped; from the listing's own types where it can,
    so a plain file costs no extra stat."""
    if entry.is_symlink():
        try:
            target = Path(entry.path).resolve()
        except RuntimeError:  # a loop of links (Python 3.11 raises RuntimeError for it)
            return BROKEN_LINK
        if not target.exists():
            return BROKEN_LINK
        if target.is_dir():
            return LINK_TO_DIRECTORY
        if not (follow_links or target.is_relative_to(root)):
            return LINK_OUT
    if entry.is_dir(follow_symlinks=False):
        return DIRECTORY
    return FILE if entry.is_file() else SPECIAL


def _source_file(path: Path, scope: str, dataset: str, has_sidecar: bool, did: str) -> SourceFile | None:
    """The record of a regular file, or None when `path` is no longer one."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        meta = fitsheader.file_metadata(path) if fitsheader.is_fits(path) else {}
    except fitsheader.BadHeader:
        meta = {}  # not valid FITS after all: ingested as bytes; required metadata decides
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    if has_sidecar:
        meta.update(_sidecar(path.with_name(path.name + SIDECAR)))
    return SourceFile(scope, did, dataset, str(path), size, None, meta, info.st_mtime_ns)


class SourceChanged(OSError):
    """A local source is not the file that was planned (changed, replaced or deleted since): its
    bytes are not uploaded. An OSError, so the file fails PERMANENT, with this message."""


def read_unchanged(path: str | Path, size: int, mtime_ns: int | None, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a planned local file, refused unless it still is the regular file of `size`
    bytes and `mtime_ns` that was walked, before the first byte and again after the last: a
    same-size rewrite would otherwise be uploaded, and registered, undetected. Opened without
    blocking, so a FIFO put in its place cannot hang the upload."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SourceChanged(f"{path}: deleted since it was planned") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        _check_unchanged(path, os.fstat(fd), size, mtime_ns, "since it was planned")
        while chunk := f.read(chunk_size):
            yield chunk
        _check_unchanged(path, os.fstat(fd), size, mtime_ns, "while it was read")


def _check_unchanged(path: str | Path, now: os.stat_result, size: int, mtime_ns: int | None, when: str) -> None:
    if not stat.S_ISREG(now.st_mode):
        raise SourceChanged(f"{path}: no longer a regular file ({when})")
    if now.st_size != size or (mtime_ns is not None and now.st_mtime_ns != mtime_ns):
        raise SourceChanged(f"{path}: changed {when} (size {size} -> {now.st_size}, "
                            f"mtime_ns {mtime_ns} -> {now.st_mtime_ns}); re-plan it in a new run")


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


def _check_name(name: str, where: str, scope: str | None = None, absolute: bool = False) -> None:
    if problem := names.name_problem(name, scope, absolute):
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
