"""The campaign document: a short TOML file of ordered phases, each a night on one RSE.

A data challenge is told as phases on one timeline (a slow uplink in the morning, small files to
another RSE in the afternoon, a few large files at night); each phase is a night spec (or a
directory), the RSE it is uploaded to, its rules, an optional scaling (so the challenge replays
on a laptop) and an optional condition while it runs (`fault = "slow"` on its RSE, local lake
only). Everything that can be wrong in the document is said here, as one line naming the phase
and the field, before any phase starts; what only the catalog knows (RSEs, scopes) is checked
by `flows/campaign` before the first phase too.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nightlake import BadInput
from nightlake.night.spec import (
    NightSpec,
    Rule,
    load_spec,
    parse_size,
    parse_spec,
    read_toml,
)

PHASES = (1, 50)
WATCH_S = (0, 86_400)
SIZE_FIELDS = ("size", "min", "max", "median")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scale(_Model):
    """A smaller version of the phase's night: `datasets` and `files` (per dataset) replace the
    spec's counts, `sizes` multiplies every file size (0.01: a 2 GB file becomes 20 MB)."""

    datasets: Annotated[int, Field(ge=1, le=100_000)] | None = None
    files: Annotated[int, Field(ge=1, le=100_000)] | None = None
    sizes: Annotated[float, Field(gt=0, le=1)] | None = None


class Phase(_Model):
    """One phase: a night (spec or directory, relative to the campaign file) ingested into `rse`."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
    source: Annotated[str, Field(min_length=1)]
    rse: Annotated[str, Field(min_length=1, max_length=64)]
    scope: Annotated[str, Field(min_length=1, max_length=25)] | None = None  # a directory source's
    rules: list[Rule] = []  # none: the spec's own [[rules]]
    scale: Scale | None = None
    fault: Annotated[str, Field(min_length=1)] | None = None  # a `lake fault` mode on `rse` (checked by the lake)
    watch: Annotated[float, Field(ge=WATCH_S[0], le=WATCH_S[1])] = 600.0  # s to follow the rules after the ingest


class About(_Model):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    description: str = ""


class Campaign(_Model):
    campaign: About
    phases: Annotated[list[Phase], Field(min_length=PHASES[0], max_length=PHASES[1])]
    base: Path = Path(".")  # the campaign file's directory: phase sources are relative to it

    @model_validator(mode="after")
    def _unique_names(self) -> Campaign:
        names = [p.name for p in self.phases]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"phases: two phases are named {duplicate!r}")
        return self

    def source(self, phase: Phase) -> Path:
        return (self.base / phase.source).absolute()

    def description(self) -> dict[str, Any]:
        """The campaign as plain data (DIR/campaign.json), with each source's absolute path."""
        return {"name": self.campaign.name, "description": self.campaign.description, "phases": [
            {**phase.model_dump(mode="json"), "source": str(self.source(phase))} for phase in self.phases]}


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign file, and every phase's source: one `BadInput` line for the
    first problem, naming the phase."""
    path = Path(path)
    raw = read_toml(path, "campaign", "a campaign")
    try:
        campaign = Campaign.model_validate({**raw, "base": path.parent})
    except ValidationError as exc:
        raise BadInput(f"{path}: {_one_line(exc, raw)}") from None
    for phase in campaign.phases:
        _check_source(campaign, phase)
    return campaign


def _one_line(exc: ValidationError, raw: dict) -> str:
    error = exc.errors(include_url=False)[0]
    loc = list(error["loc"])
    if loc[:1] == ["phases"] and len(loc) > 1 and isinstance(loc[1], int):
        name = (raw.get("phases") or [{}])[loc[1]].get("name") if loc[1] < len(raw.get("phases") or []) else None
        loc[1] = f"{loc[1] + 1}" + (f" ({name})" if name else "")
    where = ".".join(map(str, loc)) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (see docs/campaign.md for the allowed fields)"
    elif error["type"] == "missing":
        message = "required field is missing"
    return f"{where}: {message}"


def _check_source(campaign: Campaign, phase: Phase) -> None:
    """The phase's night exists and is valid (scaled, when asked) before anything runs."""
    source = campaign.source(phase)
    where = f"phase {phase.name}"
    if source.suffix == ".toml":
        if phase.scope:
            raise BadInput(f"{where}: scope applies to a directory source; a spec names its own")
        try:
            scaled_spec(source, phase.scale)
        except BadInput as exc:
            raise BadInput(f"{where}: {exc}") from None
    elif source.is_dir():
        if phase.scale:
            raise BadInput(f"{where}: scale applies to a night spec, not to a directory ({source})")
        if not phase.scope:
            raise BadInput(f"{where}: a directory source needs scope = \"...\"")
    else:
        raise BadInput(f"{where}: {source}: no such directory or spec file")


def scaled_spec(path: Path, scale: Scale | None) -> tuple[NightSpec, str | None]:
    """The phase's spec, and the TOML text of its scaled version (None when not scaled)."""
    if scale is None:
        return load_spec(path), None
    spec = load_spec(path)  # the original must be valid on its own
    raw = read_toml(path, "spec", "a night spec")
    datasets = raw.setdefault("datasets", {})
    if scale.datasets is not None:
        datasets["count"] = scale.datasets
    if scale.files is not None:
        datasets["files"] = scale.files
    if scale.sizes is not None:
        sizes = raw.get("sizes", {})
        for key in SIZE_FIELDS:
            if key in sizes:
                sizes[key] = max(1_000, round(parse_size(sizes[key]) * scale.sizes))
        raw.get("night", {}).pop("total_bytes", None)
    spec = parse_spec(raw, source=f"{path} scaled by {scale.model_dump(exclude_none=True)}")
    return spec, to_toml(raw)


def to_toml(raw: dict[str, Any]) -> str:
    """A spec's document back as TOML (tomllib only reads): tables of scalars, dates, times,
    lists and inline tables, and arrays of tables, the shapes a night spec has."""
    lines: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]", *(f"{k} = {_value(v)}" for k, v in value.items())]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for table in value:
                lines += ["", f"[[{key}]]", *(f"{k} = {_value(v)}" for k, v in table.items())]
        else:
            lines.insert(0, f"{key} = {_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # a JSON string or number is a TOML basic string or number
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")
