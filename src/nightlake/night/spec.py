"""The night spec: a TOML description of one observatory night, validated before anything happens.

The spec is the single input of `plan`, `generate` and `ingest`, so every mistake must surface here,
as one line naming the field and its allowed range (`BadInput`, exit code 2), never later as a
half-written night. The reference for users is docs/night-spec.md.
"""

from __future__ import annotations

import datetime as dt
import re
import stat
import string
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from nightlake import BadInput
from nightlake.night import names

# Allowed ranges. Wider than the data-challenge ranges (files/dataset 5-2000, datasets 10-200,
# sizes 1 MB-2 GB) so that one site night (500,000 files) and stress tests are expressible too.
DATASETS = (1, 100_000)
FILES_PER_DATASET = (1, 100_000)
FILE_SIZE = (1_000, 50_000_000_000)  # 1 kB - 50 GB
TOTAL_BYTES = (1_000, 10**16)  # cap: 1 kB - 10 PB
MAX_FILES = 10_000_000
SIGMA = (0.01, 5.0)
NIGHT_HOURS = (1, 24)
COPIES = (1, 100)
SEED = (0, 2**63 - 1)

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def human_bytes(n: float) -> str:
    """Decimal units, as storage vendors and the data-challenge targets count (5.5 TB)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError


def parse_size(value: Any) -> int:
    """Bytes from an int or a string such as "10 MB", "2 GiB", "5.5 TB" (decimal unless *iB)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size such as 10 MB or 10000000, got {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE_RE.match(str(value)) if isinstance(value, (str, float)) else None
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"must be a size such as 10 MB, 2 GiB or 10000000, got {value!r}")
    return int(round(float(m.group(1)) * _UNITS[m.group(2).lower()]))


def _ranged_int(lo: int, hi: int):
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"must be an integer between {lo} and {hi}, got {value!r}")
        return value
    return Annotated[int, BeforeValidator(check)]


def _ranged_size(lo: int, hi: int):
    def check(value: Any) -> int:
        n = parse_size(value)
        if not lo <= n <= hi:
            raise ValueError(f"must be between {human_bytes(lo)} and {human_bytes(hi)}, got {value!r}")
        return n
    return Annotated[int, BeforeValidator(check)]


def _ranged_float(lo: float, hi: float):
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"must be a number between {lo} and {hi}, got {value!r}")
        return float(value)
    return Annotated[float, BeforeValidator(check)]


FileSize = _ranged_size(*FILE_SIZE)
FileCount = _ranged_int(*FILES_PER_DATASET)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Night(_Model):
    """Where and when: these become the site/date metadata and the DATE-OBS of every file."""

    site: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    date: dt.date
    scope: Annotated[str, Field(min_length=1, max_length=25, pattern=r"^[A-Za-z0-9_.-]+$")] = "cta"
    seed: _ranged_int(*SEED) = 0
    telescopes: Annotated[list[Annotated[str, Field(min_length=1, max_length=16)]],
                          Field(min_length=1, max_length=200)] = ["LST-1"]
    start: dt.time = dt.time(20, 0)
    hours: _ranged_int(*NIGHT_HOURS) = 10
    data_level: Annotated[str, Field(min_length=1, max_length=16)] = "DL0"
    origin: Annotated[str, Field(min_length=1, max_length=32)] = "CTAO"
    total_bytes: _ranged_size(*TOTAL_BYTES) | None = None


class FileRange(_Model):
    min: FileCount
    max: FileCount

    @model_validator(mode="after")
    def _ordered(self) -> FileRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


def _files(value: Any) -> Any:
    """`files = 2000` is shorthand for `files = {min = 2000, max = 2000}`."""
    if isinstance(value, dict):
        return value
    lo, hi = FILES_PER_DATASET
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"must be an integer between {lo} and {hi} or {{min = .., max = ..}}, got {value!r}")
    return {"min": value, "max": value}


class Datasets(_Model):
    count: _ranged_int(*DATASETS)
    files: Annotated[FileRange, BeforeValidator(_files)]

    @model_validator(mode="after")
    def _not_too_many(self) -> Datasets:
        if self.count * self.files.max > MAX_FILES:
            raise ValueError(f"count x files may reach {self.count * self.files.max} files; "
                             f"at most {MAX_FILES} per night")
        return self


class Fixed(_Model):
    kind: Literal["fixed"]
    size: FileSize


class _Bounded(_Model):
    min: FileSize
    max: FileSize

    @model_validator(mode="after")
    def _ordered(self):
        if self.max < self.min:
            raise ValueError(f"max ({human_bytes(self.max)}) must be >= min ({human_bytes(self.min)})")
        return self


class Uniform(_Bounded):
    kind: Literal["uniform"]


class LogUniform(_Bounded):
    kind: Literal["log-uniform"]


class LogNormal(_Bounded):
    """Log-normal sizes, redrawn outside [min, max] so the bounds are hard limits, not spikes."""

    kind: Literal["log-normal"]
    median: FileSize
    sigma: _ranged_float(*SIGMA)

    @model_validator(mode="after")
    def _median_inside(self) -> LogNormal:
        if not self.min <= self.median <= self.max:
            raise ValueError(f"median ({human_bytes(self.median)}) must lie between min and max")
        return self


SizeDist = Annotated[Union[Fixed, Uniform, LogUniform, LogNormal], Field(discriminator="kind")]

PLACEHOLDERS = ("site", "date", "year", "month", "day", "scope", "obs_id", "run", "telescope", "tel_id",
                "subrun", "index", "data_level")
# With `vo` set, names are CTAO's absolute paths: the dataset `/<vo>/<scope>/<dataset template>`,
# each file `<dataset>/<file template>`; this dataset template unless one is given.
CTAO_DATASET = "{data_level}/{site}/events/{year}/{month}/{day}/obs{obs_id:06d}_run{run:06d}"


class Naming(_Model):
    """CTAO style by default: one dataset per observation block/run, one file per telescope and
    sub-run; with `vo`, CTAO's absolute names (its Rucio policy), a container per directory level."""

    dataset: str = "{site}_{date}_obs{obs_id:06d}_run{run:06d}"
    file: str = "{site}_{date}_{telescope}_obs{obs_id:06d}_run{run:06d}_{subrun:04d}.fits"
    first_obs_id: _ranged_int(0, 10**9) = 1
    first_run: _ranged_int(0, 10**9) = 1
    vo: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _ctao_dataset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("vo") and "dataset" not in data:
            return {**data, "dataset": CTAO_DATASET}
        return data

    def dataset_name(self, **fields: Any) -> str:
        """A dataset's DID name from its fields (`name_fields` and the numbers)."""
        name = self.dataset.format(**fields)
        return f"/{self.vo}/{fields['scope']}/{name}" if self.vo else name

    def file_name(self, dataset: str, **fields: Any) -> str:
        """A file's DID name: the template's, under its dataset's path with `vo`."""
        name = self.file.format(**fields)
        return f"{dataset}/{name}" if self.vo else name

    @model_validator(mode="after")
    def _unique_names(self) -> Naming:
        ds, fn = _fields(self.dataset, "dataset"), _fields(self.file, "file")
        if not ds & {"obs_id", "run"}:
            raise ValueError("dataset template must contain {obs_id} or {run} so dataset names are unique")
        per_file = "index" in fn or ("subrun" in fn and fn & {"telescope", "tel_id"})
        if not (fn & {"obs_id", "run"} and per_file):
            raise ValueError("file template must contain {obs_id} or {run}, and {index} or "
                             "{subrun} with {telescope}/{tel_id}, so file names are unique")
        return self


def _fields(template: str, what: str) -> set[str]:
    """Placeholders of a template; unknown ones or bad format specs are refused here, not mid-night."""
    try:
        fields = [(f, spec) for _, f, spec, _ in string.Formatter().parse(template) if f is not None]
        _check_widths(fields)
        names = {f for f, _ in fields}
        unknown = names - set(PLACEHOLDERS)
        if not unknown:
            template.format(site="S", date="20000101", year="2000", month="01", day="01", scope="s", obs_id=1,
                            run=1, telescope="T", tel_id=1, subrun=1, index=1, data_level="DL0")
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"{what} template {template!r} is not a valid format string ({exc})") from None
    if unknown:
        raise ValueError(f"{what} template has unknown placeholder(s) {sorted(unknown)}; "
                         f"allowed: {', '.join(PLACEHOLDERS)}")
    return names


def _check_widths(fields: list[tuple[str, str]]) -> None:
    """A width or precision beyond a DID name's length can only make names Rucio refuses, and a
    huge one would allocate gigabytes when rendered; a nested field ({run:{index}}) would make
    the width data, so format specs are literal."""
    for name, spec in fields:
        if "{" in (spec or ""):
            raise ValueError(f"{{{name}:{spec}}}: nested fields in a format spec are not allowed")
        if any(int(n) > names.NAME_LENGTH for n in re.findall(r"\d+", spec or "")):
            raise ValueError(f"{{{name}:{spec}}}: a width beyond {names.NAME_LENGTH}, Rucio's limit on a DID name")


class Rule(_Model):
    """A replication rule the ingest applies to every dataset (parsed and shown here only)."""

    copies: _ranged_int(*COPIES) = 1
    rse_expression: Annotated[str, Field(min_length=1, max_length=500)]
    lifetime: _ranged_int(1, 10**10) | None = None
    activity: Annotated[str, Field(min_length=1, max_length=50)] | None = None


class NightSpec(_Model):
    night: Night
    datasets: Datasets
    sizes: SizeDist
    naming: Naming = Naming()
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _rucio_names(self) -> NightSpec:
        """Every name the templates render must be a DID name Rucio takes, checked here, once, on
        the renders that are worst for each rule: every telescope, with every number at its
        smallest (most padding) and at its largest (most digits, separators, length). A
        500,000-file night is checked in ~2 x telescopes renders, not 500,000."""
        for what, name in worst_case_names(self):
            if problem := names.name_problem(name, self.night.scope, absolute=self.naming.vo is not None):
                raise ValueError(f"naming.{what}: renders {name[:60]!r}{'...' if len(name) > 60 else ''}: {problem}")
        return self


def worst_case_names(spec: NightSpec) -> Iterator[tuple[str, str]]:
    """("dataset" | "file", name) rendered with each number at both ends of its range; the
    numbers' ranges are those of `plan.Plan` (obs_id and run per dataset, subrun and index per
    file), strings as given."""
    night, naming, files = spec.night, spec.naming, spec.datasets.files.max
    n_tel, last = len(night.telescopes), spec.datasets.count - 1
    common = name_fields(night)
    for at in (0, 1):
        numbers = {"obs_id": naming.first_obs_id + at * last, "run": naming.first_run + at * last}
        dataset = naming.dataset_name(**common, **numbers, telescope="", tel_id=0, subrun=0, index=0)
        yield "dataset", dataset
        for tel_id, telescope in enumerate(night.telescopes, start=1):
            yield "file", naming.file_name(dataset, **common, **numbers, telescope=telescope, tel_id=tel_id,
                                           subrun=at * (-(-files // n_tel) - 1), index=at * (files - 1))


def name_fields(night: Night) -> dict[str, str]:
    """The night's own placeholders of the naming templates."""
    return {"site": night.site, "date": night.date.strftime("%Y%m%d"), "year": f"{night.date.year:04d}",
            "month": f"{night.date.month:02d}", "day": f"{night.date.day:02d}", "scope": night.scope,
            "data_level": night.data_level}


def load_spec(path: str | Path) -> NightSpec:
    """Read and validate a spec file; any problem becomes one `BadInput` line naming the field.

    Only a regular file is read: reading a FIFO (or a device) would wait for a writer forever.
    tomllib parses nested arrays and tables recursively, so a deeply nested document ends in
    RecursionError, which is the spec's fault, not a crash."""
    path = Path(path)
    return parse_spec(read_toml(path, "spec", "a night spec"), source=str(path))


def read_toml(path: Path, short: str, document: str) -> dict:
    """A TOML document read from a regular file (a spec, a campaign), any problem one `BadInput`
    line: "no such {short} file", "cannot read {short}", "... to be {document}"."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise BadInput(f"{path}: not a regular file; {document} is a TOML file")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such {short} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read {short} ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise BadInput(f"{path}: arrays or tables nested too deeply to be {document}") from None


def parse_spec(raw: dict, source: str = "spec") -> NightSpec:
    try:
        return NightSpec.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(f"{source}: {_one_line(exc)}") from None


def _one_line(exc: ValidationError) -> str:
    """The first error as `field.path: message`, without pydantic's type-union noise."""
    err = exc.errors(include_url=False)[0]
    kinds = {"fixed", "uniform", "log-uniform", "log-normal"}
    loc = ".".join(str(p) for p in err["loc"] if p not in kinds)
    if not loc and err["type"] == "value_error":  # a check of the whole spec names its own fields
        return err["msg"].removeprefix("Value error, ")
    loc = loc or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown field (see docs/night-spec.md for the allowed fields)"
    if err["type"] == "missing":
        return f"{loc}: required field is missing"
    if err["type"] == "union_tag_invalid":
        return f"{loc}: kind must be one of fixed, uniform, log-uniform, log-normal, got {err['input'].get('kind')!r}"
    if err["type"] == "string_pattern_mismatch":
        return f"{loc}: only letters, digits, '_', '.' and '-' allowed, got {err['input']!r}"
    if err["type"].startswith(("date", "time")):
        return f"{loc}: {err['msg']} (like 2026-03-14 for a date, 20:00:00 for a time), got {err['input']!r}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}"

