"""The plan: what a night spec will produce, as plain data, before anything is touched.

`generate`, `ingest` and the benchmarks all iterate the same `Plan`, so a file's name, size, metadata
and payload seed are decided once, here. Datasets are drawn one at a time from a per-dataset seed
(sizes vectorised with numpy) and files are yielded lazily, so the 500,000-file night is planned in
seconds with flat memory, and any one dataset can be rebuilt without the others.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator, TypeVar

import numpy as np

from nightlake.night import names
from nightlake.night.fits.layout import BLOCK
from nightlake.night.spec import (
    Fixed,
    LogNormal,
    LogUniform,
    NightSpec,
    Uniform,
    name_fields,
)

RUCIO_BATCH_SIZE = 1000  # the Rucio server's limit on items per bulk call
NIGHT_HOURS = 10  # a night's data must be in the lake before the next night starts
DEFAULT_FILES_PER_S = 20.0
DEFAULT_MB_PER_S = 200.0

T = TypeVar("T")


def batched(items: Iterable[T], size: int = RUCIO_BATCH_SIZE) -> Iterator[list[T]]:
    """Chunks of at most `size` items: one Rucio bulk call each."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def rucio_calls(files_per_dataset: Iterable[int], n_rules: int = 0,
                batch_size: int = RUCIO_BATCH_SIZE) -> dict[str, int]:
    """The catalog calls an ingest makes (see `pipeline`): datasets looked up and created in bulk;
    per batch of `batch_size` files (in plan order, so a batch may span two datasets) one
    `list_replicas` pre-filter, one `add_replicas`, one attach per dataset it touches and one
    `set_dids_metadata_bulk`; per dataset and rule one look-up and one `add_replication_rule`; one
    close per dataset."""
    counts = [n for n in files_per_dataset if n]
    n_datasets, n_files = len(counts), sum(counts)
    batches, dataset_batches = -(-n_files // batch_size), -(-n_datasets // batch_size)
    attaches, start = 0, 0
    for n in counts:
        attaches += (start + n - 1) // batch_size - start // batch_size + 1
        start += n
    return {"get_metadata_bulk": dataset_batches, "add_dids": dataset_batches, "list_replicas": batches,
            "add_replicas": batches, "attach_dids": attaches, "set_dids_metadata_bulk": batches,
            "list_did_rules": n_datasets * n_rules, "add_replication_rule": n_datasets * n_rules,
            "close": n_datasets}


def night_time(n_files: int, n_bytes: int, files_per_s: float, mb_per_s: float) -> dict:
    """How long the night takes when both a file rate and a byte rate bound the ingest."""
    by_files, by_bytes = n_files / files_per_s, n_bytes / 1e6 / mb_per_s
    seconds = max(by_files, by_bytes)
    return {"files_per_s": files_per_s, "mb_per_s": mb_per_s, "seconds": seconds,
            "limited_by": "files/s" if by_files >= by_bytes else "MB/s",
            "within_night": seconds <= NIGHT_HOURS * 3600}


def required_rates(n_files: int, n_bytes: int, hours: float = NIGHT_HOURS) -> dict:
    """The sustained rates that finish the night within `hours`."""
    seconds = hours * 3600
    return {"hours": hours, "files_per_s": n_files / seconds, "mb_per_s": n_bytes / 1e6 / seconds}


def _seed(*parts) -> int:
    """A 128-bit seed from the spec seed and a position: each dataset/file is independent of others."""
    text = "/".join(str(p) for p in ("nightlake", *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One file of the night: its DID, the dataset it joins, its exact size and its metadata."""

    scope: str
    name: str
    dataset: str
    size: int
    payload_seed: int
    meta: dict

    @property
    def did(self) -> str:
        return f"{self.scope}:{self.name}"


@dataclass(frozen=True)
class PlannedDataset:
    """One observation block: a dataset DID and the written sizes of its files, in order."""

    index: int
    scope: str
    name: str
    obs_id: int
    run: int
    start_ms: int
    end_ms: int
    sizes: np.ndarray = field(repr=False)

    @property
    def n_files(self) -> int:
        return len(self.sizes)

    @property
    def bytes(self) -> int:
        return int(self.sizes.sum())


class Plan:
    """Iterates a spec's datasets and files; nothing is kept but the spec."""

    def __init__(self, spec: NightSpec):
        self.spec = spec
        night = spec.night
        start = dt.datetime.combine(night.date, night.start)
        self._t0_ms = int(start.replace(tzinfo=dt.timezone.utc).timestamp()) * 1000 + start.microsecond // 1000
        self._span_ms = night.hours * 3_600_000

    def datasets(self) -> Iterator[PlannedDataset]:
        """Datasets in order; with `total_bytes` set, the night stops at the last file that fits."""
        cap, used = self.spec.night.total_bytes, 0
        for index in range(self.spec.datasets.count):
            ds = self._dataset(index)
            if cap is not None:
                # sizes are positive, so the files that fit are a prefix
                n = int((np.cumsum(ds.sizes) + used <= cap).sum())
                if n < ds.n_files:
                    if n:
                        yield dataclasses.replace(ds, sizes=ds.sizes[:n])
                    return
                used += ds.bytes
            yield ds

    def files(self) -> Iterator[PlannedFile]:
        for ds in self.datasets():
            yield from self.dataset_files(ds)

    def dataset_files(self, ds: PlannedDataset) -> Iterator[PlannedFile]:
        """Files of one dataset: telescope round-robin within each sub-run, as a camera would write."""
        night, naming = self.spec.night, self.spec.naming
        n_tel = len(night.telescopes)
        n_sub = -(-ds.n_files // n_tel)
        common = {**name_fields(night), "obs_id": ds.obs_id, "run": ds.run}
        for i, size in enumerate(ds.sizes.tolist()):
            subrun, tel = divmod(i, n_tel)
            t0 = ds.start_ms + (ds.end_ms - ds.start_ms) * subrun // n_sub
            t1 = ds.start_ms + (ds.end_ms - ds.start_ms) * (subrun + 1) // n_sub
            fields = {**common, "telescope": night.telescopes[tel], "tel_id": tel + 1,
                      "subrun": subrun, "index": i}
            meta = {"site": night.site, "night": night.date.isoformat(), "origin": night.origin,
                    "telescope": fields["telescope"], "tel_id": tel + 1, "obs_id": ds.obs_id,
                    "run": ds.run, "subrun": subrun, "date_obs": _iso(t0), "date_end": _iso(t1),
                    "data_level": night.data_level}
            yield PlannedFile(scope=night.scope, name=naming.file_name(ds.name, **fields), dataset=ds.name,
                              size=size, payload_seed=_seed("payload", night.seed, ds.index, i),
                              meta=meta)

    def _dataset(self, index: int) -> PlannedDataset:
        spec = self.spec
        rng = np.random.Generator(np.random.PCG64(_seed("sizes", spec.night.seed, index)))
        files = spec.datasets.files
        n = files.min if files.min == files.max else int(rng.integers(files.min, files.max + 1))
        obs_id, run = spec.naming.first_obs_id + index, spec.naming.first_run + index
        name = spec.naming.dataset_name(**name_fields(spec.night), obs_id=obs_id, run=run, telescope="",
                                        tel_id=0, subrun=0, index=0)
        count = spec.datasets.count
        return PlannedDataset(index=index, scope=spec.night.scope, name=name, obs_id=obs_id, run=run,
                              start_ms=self._t0_ms + self._span_ms * index // count,
                              end_ms=self._t0_ms + self._span_ms * (index + 1) // count,
                              sizes=_written(draw_sizes(spec, rng, n)))


def draw_sizes(spec: NightSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Planned (requested) sizes in bytes, within the distribution's bounds."""
    s = spec.sizes
    if isinstance(s, Fixed):
        return np.full(n, s.size, dtype=np.int64)
    if isinstance(s, Uniform):
        return rng.integers(s.min, s.max + 1, size=n, dtype=np.int64)
    if isinstance(s, LogUniform):
        values = np.exp(rng.uniform(math.log(s.min), math.log(s.max), size=n))
    else:
        values = _truncated_lognormal(s, rng, n)
    return np.clip(np.rint(values), s.min, s.max).astype(np.int64)


def _truncated_lognormal(s: LogNormal, rng: np.random.Generator, n: int) -> np.ndarray:
    """Redraw values outside [min, max] (a few rounds, then clip) so bounds do not pile up mass."""
    mu = math.log(s.median)
    values = rng.lognormal(mu, s.sigma, size=n)
    for _ in range(20):
        out = (values < s.min) | (values > s.max)
        if not out.any():
            break
        values[out] = rng.lognormal(mu, s.sigma, size=int(out.sum()))
    return values


def _written(planned: np.ndarray) -> np.ndarray:
    """Vectorised `fitsfile.written_size`: the plan reports the bytes that will really be written."""
    return np.maximum(2, -(-planned // BLOCK)) * BLOCK


def _iso(ms: int) -> str:
    t = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


# 1-2-5 series of bin edges, 1 kB to 100 GB: fixed so histograms of any nights can be compared.
HISTOGRAM_EDGES = np.array([m * 10**e for e in range(3, 12) for m in (1, 2, 5)] + [10**12], dtype=np.int64)


@dataclass
class Summary:
    """The plan's totals: everything `nightlake plan` prints, and its JSON form."""

    spec: NightSpec
    datasets: list[tuple[str, int, int]]  # (name, files, bytes)
    histogram: np.ndarray  # file counts per HISTOGRAM_EDGES bin
    min_size: int
    max_size: int

    @property
    def n_files(self) -> int:
        return sum(n for _, n, _ in self.datasets)

    @property
    def n_bytes(self) -> int:
        return sum(b for _, _, b in self.datasets)

    def calls(self) -> dict[str, int]:
        calls = rucio_calls((n for _, n, _ in self.datasets), len(self.spec.rules))
        if self.spec.naming.vo:  # CTAO's containers: looked up, created and linked in bulk, once per run
            containers = {c for name, _, _ in self.datasets for c in names.containers(name)}
            batches = -(-len(containers) // RUCIO_BATCH_SIZE)
            links = -(-(len(containers) - 1 + len(self.datasets)) // RUCIO_BATCH_SIZE)
            for call, extra in (("get_metadata_bulk", batches), ("add_dids", batches), ("attach_dids", links)):
                calls[call] += extra
        return calls

    def to_dict(self, files_per_s: float = DEFAULT_FILES_PER_S, mb_per_s: float = DEFAULT_MB_PER_S) -> dict:
        bins = [{"min": int(lo), "max": int(hi), "files": int(c)}
                for lo, hi, c in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:], self.histogram) if c]
        return {
            "site": self.spec.night.site, "date": self.spec.night.date.isoformat(),
            "scope": self.spec.night.scope, "seed": self.spec.night.seed,
            "datasets": len(self.datasets), "files": self.n_files, "bytes": self.n_bytes,
            "file_size": {"min": self.min_size, "max": self.max_size,
                          "mean": self.n_bytes / self.n_files if self.n_files else 0},
            "histogram": bins,
            "rucio_calls": {**self.calls(), "batch_size": RUCIO_BATCH_SIZE},
            "rules": [r.model_dump(exclude_none=True) for r in self.spec.rules],
            "time": night_time(self.n_files, self.n_bytes, files_per_s, mb_per_s),
            "required": required_rates(self.n_files, self.n_bytes),
            "per_dataset": [{"name": n, "files": f, "bytes": b} for n, f, b in self.datasets],
        }


def summarize(plan: Plan) -> Summary:
    """Totals and histogram from the per-dataset size arrays; no per-file objects are built."""
    hist = np.zeros(len(HISTOGRAM_EDGES) - 1, dtype=np.int64)
    rows, lo, hi = [], None, None
    for ds in plan.datasets():
        rows.append((ds.name, ds.n_files, ds.bytes))
        hist += np.bincount(np.searchsorted(HISTOGRAM_EDGES, ds.sizes, side="right") - 1,
                            minlength=len(hist))[: len(hist)]
        lo = int(ds.sizes.min()) if lo is None else min(lo, int(ds.sizes.min()))
        hi = int(ds.sizes.max()) if hi is None else max(hi, int(ds.sizes.max()))
    return Summary(plan.spec, rows, hist, lo or 0, hi or 0)
