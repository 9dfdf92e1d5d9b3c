# nightlake: `make demo` and `make test` set up everything they need on a fresh Debian 12 machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the local lake needs (PostgreSQL 15, XRootD server and client and its token plugin, gfal2 for
# its transfer service; fusepy for the `error` fault; debootstrap for the personal HTCondor pool, `nightlake lake condor up`).
APT_PACKAGES := postgresql-15 xrootd-server xrootd-client chromium openssl gfal2 python3-gfal2 gfal2-plugin-http gfal2-plugin-xrootd gfal2-plugin-file xrootd-scitokens-plugins python3-fusepy libfuse2 debootstrap
STAMP := .nightlake/stamps

.PHONY: demo demo-dr test test-ctaometa lint deps system venv clean bench-quick bench

deps: system venv

system: $(STAMP)/system
$(STAMP)/system:
	@mkdir -p $(STAMP)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test,ctao,daemon,ctaometa]'
	@touch $@

# CTAO's reference metadata through ctao-datamodel (the ctaometa extra) needs Python >= 3.12: its tests, and
# its CTAO-policy lake test, run in a venv of their own when a 3.12 is found (pyenv's, or PYTHON312=...).
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) $(shell command -v python3.12))
VENV312 ?= .venv312
$(VENV312)/.installed: pyproject.toml constraints.txt
	$(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/pip install -q -c constraints.txt -e '.[test,ctao,ctaometa]'
	@touch $@

test-ctaometa: deps
	@if [ -z "$(PYTHON312)" ]; then echo "test-ctaometa: no Python 3.12 here, CTAO data model tests skipped"; \
	else $(MAKE) --no-print-directory $(VENV312)/.installed && \
	  $(BIN)/nightlake lake install && $(BIN)/nightlake lake install --policy ctao && \
	  $(VENV312)/bin/python -m pytest -q tests/test_ctaometa.py tests/test_fitsheader.py tests/test_sources.py \
	    tests/test_ctao_lake.py::test_ctao_reference_metadata_is_registered_and_filtered_on; fi

# pyflakes and import order ([tool.ruff] in pyproject.toml): cheap, so first.
lint: deps
	$(BIN)/ruff check src tests benchmarks

test: deps lint test-ctaometa
	$(BIN)/nightlake lake install
	$(BIN)/nightlake lake install --policy ctao
	$(BIN)/python -m pytest

demo: deps
	$(BIN)/nightlake lake install
	$(BIN)/nightlake lake up
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

# The 2020 data challenge replayed (examples/dr-2020.toml): three phases on one timeline, a few minutes.
demo-dr: deps
	$(BIN)/nightlake lake up
	eval "$$($(BIN)/nightlake lake env)" && work="$$NIGHTLAKE_LAKE_DIR/dr-2020" && \
	$(BIN)/nightlake campaign examples/dr-2020.toml --run "$$work/run" && \
	$(BIN)/nightlake report "$$work/run" --out "$$work/report"

clean:
	-$(BIN)/nightlake lake down --purge
	rm -rf $(VENV) $(VENV312) .nightlake

# Benchmarks (benchmarks/README.md). Each brings up its own bench lake and takes it down (purged) at the end.
BENCH_LAKE ?= .nightlake/bench-lake
BENCH_PORT ?= 29600
BENCH_UP = $(BIN)/nightlake lake up --dir $(BENCH_LAKE) --port-base $(BENCH_PORT)
BENCH_DOWN = $(BIN)/nightlake lake down --dir $(BENCH_LAKE) --purge

bench-quick: deps
	$(BIN)/nightlake lake install
	$(BENCH_UP)
	status=0; \
	$(BIN)/python benchmarks/catalog_path.py --lake-dir $(BENCH_LAKE) --files 500 --baseline-files 100 --name catalog_path-quick || status=$$?; \
	$(BIN)/python benchmarks/bytes_path.py --lake-dir $(BENCH_LAKE) --sizes 1MB,100MB,500MB --repeat 1 --name bytes_path-quick || status=$$?; \
	$(BIN)/python benchmarks/retrieve_path.py --lake-dir $(BENCH_LAKE) --files 500 --baseline-files 100 --large 1 --large-size 200MB --repeat 1 --name retrieve_path-quick || status=$$?; \
	$(BENCH_DOWN); exit $$status

bench: deps
	$(BIN)/nightlake lake install
	$(BENCH_UP)
	status=0; \
	$(BIN)/python benchmarks/catalog_path.py --lake-dir $(BENCH_LAKE) || status=$$?; \
	$(BIN)/python benchmarks/bytes_path.py --lake-dir $(BENCH_LAKE) || status=$$?; \
	$(BIN)/python benchmarks/retrieve_path.py --lake-dir $(BENCH_LAKE) || status=$$?; \
	$(BIN)/python benchmarks/night.py --lake-dir $(BENCH_LAKE) --files-scale $${NIGHT_SCALE:-1} || status=$$?; \
	$(BIN)/python benchmarks/generate_vs_dd.py --out .nightlake --json benchmarks/results/generate_vs_dd.json || status=$$?; \
	$(BENCH_DOWN); exit $$status
