"""How fast a FITS primary header is read: nightlake's block reader against astropy.

Method: N FITS files written by `nightlake.flows.generate` from a small built-in spec (or the `*.fits`
under --dir), then, in one process, R rounds over all files of each method, methods interleaved
per round, best round kept:
  1. `fitsheader.read_header`: read 2880-byte blocks up to END, parse the cards (nightlake);
  2. the same blocks parsed by `astropy.io.fits.Header.fromstring` (the alternative considered);
  3. `astropy.io.fits.open(path)[0].header` (the anchors' baseline, ~5.8 ms/file there).
Every method builds a dict of the header's values. Freshly written files sit in the page cache,
so this measures CPU per header; point --dir at files on the real disk, caches dropped, for I/O.
Usage:
    python benchmarks/fits_header_read.py [--files 500] [--rounds 3] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import astropy
from astropy.io import fits

from nightlake.flows.generate import file_path, generate
from nightlake.night.fits.header import astropy_cards, read_blocks, read_header
from nightlake.night.plan import Plan
from nightlake.night.spec import parse_spec

SPEC = """
[night]
site = "CTAO-North"
date = 2026-03-14
seed = 1
telescopes = ["LST-1", "LST-2", "MST-01"]

[datasets]
count = 1
files = 100000

[sizes]
kind = "fixed"
size = "8 kB"
"""


def astropy_open(path: Path) -> dict:
    with fits.open(path) as hdul:
        return dict(hdul[0].header)


METHODS = {
    "read_header (blocks + own card parser)": read_header,
    "blocks + astropy Header.fromstring": lambda path: astropy_cards(read_blocks(path)),
    "astropy.io.fits.open(path)[0].header": astropy_open,
}


def generated(out: Path, n: int) -> list[Path]:
    files = list(itertools.islice(Plan(parse_spec(tomllib.loads(SPEC))).files(), n))
    generate(files, out)
    return [file_path(out, planned) for planned in files]


def best_rates(paths: list[Path], rounds: int) -> dict[str, float]:
    best = dict.fromkeys(METHODS, 0.0)
    for _ in range(rounds):
        for name, read in METHODS.items():
            start = time.perf_counter()
            for path in paths:
                read(path)
            best[name] = max(best[name], len(paths) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="read these *.fits instead of generating files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        paths = (sorted(args.dir.rglob("*.fits"))[: args.files] if args.dir
                 else generated(Path(tmp), args.files))
        rates = best_rates(paths, args.rounds)
    fast, baseline = rates[next(iter(METHODS))], rates["astropy.io.fits.open(path)[0].header"]
    result = {"method": f"same process, best of {args.rounds} interleaved rounds, dict of values per header",
              "inputs": {"files": len(paths), "source": str(args.dir) if args.dir else "generated, page cache warm",
                         "python": sys.version.split()[0], "astropy": astropy.__version__},
              "headers_per_s": {k: round(v) for k, v in rates.items()},
              "us_per_header": {k: round(1e6 / v, 1) for k, v in rates.items()},
              "ratio_read_header_vs_fits_open": round(fast / baseline, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"method: {result['method']}; inputs: {result['inputs']}")
    for name, rate in result["headers_per_s"].items():
        print(f"  {name:<40} {rate:>9,} headers/s  {result['us_per_header'][name]:>8} us/header")
    print(f"  read_header is {result['ratio_read_header_vs_fits_open']}x astropy.io.fits.open")


if __name__ == "__main__":
    main()
