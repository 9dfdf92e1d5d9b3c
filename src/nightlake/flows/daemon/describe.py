"""A ready file as the journal records it: read once, verified, named and described from its header.

The DID name is the file's path under the scope's storage area (the watched directory or an
ancestor of it), so that Rucio's `identity` lfn2pfn
gives back the very path the writer wrote (`<prefix>/<scope>/<name>`): that is what makes the
registration in place. Its dataset and the night's container come from naming rules over the
header's metadata (by default the generator's: `{site}_{date}_obs{obs_id:06d}_run{run:06d}` and
`{site}_{date}`). A file that cannot be all that (unreadable FITS, a checksum that does not hold,
metadata the names or `--require` need that it lacks) is `Invalid`, with the reason.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from nightlake.night import names
from nightlake.night.fits.header import BadHeader, rucio_metadata
from nightlake.night.fits.verify import BadChecksum, verify
from nightlake.night.sources import SourceFile, required_missing


@dataclass(frozen=True)
class Naming:
    """Templates over a file's metadata (Rucio keys, plus `date`: the night as YYYYMMDD)."""

    dataset: str = "{site}_{date}_obs{obs_id:06d}_run{run:06d}"
    container: str = "{site}_{date}"

    def fields(self) -> set[str]:
        """The metadata keys the templates need: a file without one of them is invalid."""
        return {f for template in (self.dataset, self.container)
                for _, f, _, _ in string.Formatter().parse(template) if f}


class Invalid(Exception):
    """A file the daemon will not register; its message is the reason, as journaled."""


@dataclass(frozen=True)
class Described:
    record: SourceFile
    container: str


def describe(data: Path, area: Path, scope: str, naming: Naming, required: tuple[str, ...] = ()) -> Described:
    """The journal record of `data` (its name: its path under the scope's storage `area`) and the
    container of its dataset, or Invalid."""
    name = data.relative_to(area).as_posix()
    if problem := names.name_problem(name):
        raise Invalid(f"{name!r}: {problem}")
    try:
        info = data.stat()
        verified = verify(data)
    except (BadHeader, BadChecksum) as exc:
        raise Invalid(f"not a valid FITS file: {exc}") from None
    except OSError as exc:
        raise Invalid(f"cannot read: {exc.strerror or exc}") from None
    meta = rucio_metadata(verified.header)
    fields = {**meta, "date": str(meta.get("night", "")).replace("-", "")}
    needed = sorted(naming.fields() - {"date"} | ({"night"} if "date" in naming.fields() else set()))
    if missing := required_missing(meta, (*needed, *required)):
        raise Invalid(f"missing required metadata: {', '.join(missing)}")
    try:
        dataset, container = naming.dataset.format(**fields), naming.container.format(**fields)
    except (KeyError, ValueError) as exc:
        raise Invalid(f"the naming rules cannot name it from its metadata ({exc})") from None
    for what, did in (("dataset", dataset), ("container", container)):
        if problem := names.name_problem(did):
            raise Invalid(f"{what} name {did!r}: {problem}")
    record = SourceFile(scope, name, dataset, str(data), verified.size, verified.adler32, meta, info.st_mtime_ns)
    return Described(record, container)
