"""Rucio's rules for scopes and DID names, checked before anything is written.

Rucio refuses a bad DID only at registration, after the bytes are on storage; a name with a `..`
segment or a leading `/` is worse: lfn2pfn makes it a path outside the scope's directory. So every
scope and name nightlake makes (a directory's, or one rendered from a spec's templates) is
checked here first.

The patterns are copied from rucio/common/schema/generic.py (rucio-clients 41.5.1: SCOPE,
SCOPE_LENGTH, NAME, NAME_LENGTH): importing rucio.common.schema reads the Rucio configuration at
import time (and needs rucio.db, absent from rucio-clients).

Absolute names (`/<vo>/<scope>/<path>`) are CTAO's policy (ctao-bdms-rucio-policy 0.6.0:
`schema.NAME`, `scope.scope`): there the name is its path (identity lfn2pfn), its scope is its
second segment, and each directory above a dataset is a container (DIRAC's hierarchical namespace).
"""

from __future__ import annotations

import re

SCOPE_RE = re.compile(r"^[a-zA-Z_\-.0-9]+$")
SCOPE_LENGTH = 25
NAME_RE = re.compile(r"^[/A-Za-z0-9][/A-Za-z0-9\.\-_]*$")
NAME_LENGTH = 250
ABSOLUTE_NAME_RE = re.compile(r"^/[A-Za-z0-9][/A-Za-z0-9\.\-_]*$")
ROOT_SCOPE = "root"  # the policy's scope of `/<vo>` itself


def scope_problem(scope: str) -> str | None:
    """Why Rucio would refuse `scope`, or None."""
    if len(scope) > SCOPE_LENGTH or not SCOPE_RE.match(scope):
        return f"not a valid Rucio scope ({SCOPE_RE.pattern}, at most {SCOPE_LENGTH} characters)"
    return None


def name_problem(name: str, scope: str | None = None, absolute: bool = False) -> str | None:
    """Why `name` is no DID name nightlake may use, or None: Rucio's length and characters, and
    no leading `/` or `..` segment, which would leave the scope's directory on storage; or, when
    names are `absolute`, one CTAO's policy takes, in `scope` when it is given."""
    if len(name) > NAME_LENGTH:
        return f"longer than Rucio's {NAME_LENGTH} characters ({len(name)})"
    if absolute:
        return _absolute_problem(name, scope)
    if not NAME_RE.match(name):
        return f"not a valid Rucio DID name ({NAME_RE.pattern})"
    if name.startswith("/") or ".." in name.split("/"):
        return "a leading '/' or a '..' segment would leave the scope's directory on storage"
    return None


def is_absolute(name: str) -> bool:
    """An absolute name is a path of CTAO's hierarchical namespace (generic names never start with `/`)."""
    return name.startswith("/")


def _absolute_problem(name: str, scope: str | None) -> str | None:
    if not is_absolute(name) or not ABSOLUTE_NAME_RE.match(name):
        return f"not a valid DID name under CTAO's policy ({ABSOLUTE_NAME_RE.pattern})"
    segments = name.split("/")[1:]
    if "" in segments or ".." in segments:
        return "an empty or '..' path segment"
    if len(segments) < 3:
        return "CTAO's policy wants /<vo>/<scope>/<path>"
    if scope is not None and (found := scope_of(name)) != scope:
        return f"CTAO's policy takes the scope from the name: {found!r}, not {scope!r}"
    return None


def scope_of(name: str) -> str:
    """The scope CTAO's policy gives an absolute name: its second segment; `root` for `/<vo>`
    itself; `user.<name>` under `/<vo>/user/<initial>/<name>/`."""
    segments = [s for s in name.split("/") if s]
    if len(segments) < 2:
        return ROOT_SCOPE
    if segments[1] == "user":
        return f"user.{segments[3]}" if len(segments) >= 4 else ROOT_SCOPE
    return segments[1]


def parent(name: str) -> str:
    """The directory an absolute name is in: its dataset, for a file."""
    return name.rsplit("/", 1)[0]


def containers(dataset: str) -> list[str]:
    """The containers above an absolute dataset name, top first: `/ctao`, `/ctao/acada`, ... (one
    per directory level, as DIRAC's registration makes them)."""
    segments = dataset.split("/")[1:-1]
    return ["/" + "/".join(segments[:i]) for i in range(1, len(segments) + 1)]
