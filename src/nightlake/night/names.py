"""Rucio's rules for scopes and DID names, checked before anything is written.

Rucio refuses a bad DID only at registration, after the bytes are on storage; a name with a `..`
segment or a leading `/` is worse: lfn2pfn makes it a path outside the scope's directory. So every
scope and name nightlake makes (a directory's, or one rendered from a spec's templates) is
checked here first.

The patterns are copied from rucio/common/schema/generic.py (rucio-clients 41.5.1: SCOPE,
SCOPE_LENGTH, NAME, NAME_LENGTH): importing rucio.common.schema reads the Rucio configuration at
import time (and needs rucio.db, absent from rucio-clients).
"""

from __future__ import annotations

import re

SCOPE_RE = re.compile(r"^[a-zA-Z_\-.0-9]+$")
SCOPE_LENGTH = 25
NAME_RE = re.compile(r"^[/A-Za-z0-9][/A-Za-z0-9\.\-_]*$")
NAME_LENGTH = 250


def scope_problem(scope: str) -> str | None:
    """Why Rucio would refuse `scope`, or None."""
    if len(scope) > SCOPE_LENGTH or not SCOPE_RE.match(scope):
        return f"not a valid Rucio scope ({SCOPE_RE.pattern}, at most {SCOPE_LENGTH} characters)"
    return None


def name_problem(name: str) -> str | None:
    """Why `name` is no DID name nightlake may use, or None: Rucio's length and characters, and
    no leading `/` or `..` segment, which would leave the scope's directory on storage."""
    if len(name) > NAME_LENGTH:
        return f"longer than Rucio's {NAME_LENGTH} characters ({len(name)})"
    if not NAME_RE.match(name):
        return f"not a valid Rucio DID name ({NAME_RE.pattern})"
    if name.startswith("/") or ".." in name.split("/"):
        return "a leading '/' or a '..' segment would leave the scope's directory on storage"
    return None
