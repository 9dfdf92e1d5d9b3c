#!/usr/bin/env bash
# The `make demo` night, end to end against the local lake: plan -> generate -> ingest with a
# rule to an off-site RSE -> status -> replication watch -> more copies off-site, sourced off-site ->
# watch -> the stock client downloads from each off-site RSE -> a fault drill (OFFSITE-B read-only: a
# rule STUCK, its errors classified; fault cleared, rule retried, OK) -> retrieve one dataset -> the
# on-site daemon registering a stream in place -> report.
# Safe to run again: every step resumes or skips what is done. Its files live in the lake directory and go with `lake down --purge`.
# NIGHTLAKE_AUTH=x509_proxy or oidc runs it with the lake's X.509 proxy or an OIDC token instead of
# the password (oidc: a token from the lake's identity provider, written where WLCG discovery finds it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NIGHTLAKE_AUTH:-userpass}" = oidc ]; then nightlake lake token --lifetime 7200; fi
eval "$(nightlake lake env)"
work="$NIGHTLAKE_LAKE_DIR/demo"
spec=examples/demo.toml
dataset=cta:CTAO-North_20260314_obs000001_run000001

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "plan: what the night will be (a dry run)"
nightlake plan "$spec"

step "generate: the night's FITS files"
nightlake generate "$spec" --out "$work/files"

step "ingest: upload to ONSITE, register, metadata, a rule to OFFSITE-A"
nightlake ingest "$work/files" --scope cta --rse ONSITE --rule OFFSITE-A --run "$work/run"

step "status: the run's journal"
nightlake status "$work/run"

step "the stock rucio client sees it"
rucio did list 'cta:*' --short | head -5
rucio did list 'cta:*' --short --filter telescope=LST-2 | wc -l | xargs echo "files with telescope=LST-2:"

step "rules watch: the first off-site copy (OFFSITE-A), by Rucio's conveyor through the lake's transfer service (gfal2)"
nightlake rules watch "$work/run" --timeout 180

step "rules add: two copies off-site, sourced from off-site (CTAO's chained policy: the site's uplink is crossed once)"
nightlake rules add "$work/run" --rule 'OFFSITE,copies=2,source=OFFSITE'
nightlake rules watch "$work/run" --timeout 300

step "the stock rucio client downloads a dataset from each off-site RSE (adler32 verified)"
for rse in OFFSITE-A OFFSITE-B; do
  rm -rf "$work/check-$rse"
  rucio download --rses "$rse" --dir "$work/check-$rse" "$dataset" > "$work/check-$rse.log" 2>&1 \
    || { tail -5 "$work/check-$rse.log"; exit 1; }
  echo "$(find "$work/check-$rse" -type f -name '*.fits' | wc -l) files of $dataset downloaded from $rse"
done

step "a fault drill: OFFSITE-B refuses writes (as dCache's \"No write pools online\" does); lake status shows it"
nightlake lake fault OFFSITE-B readonly
nightlake lake status | grep -F OFFSITE-B
drill="$work/drill-files/fault_drill"
if [ ! -d "$drill" ]; then
  mkdir -p "$drill"
  for i in 1 2 3 4; do head -c $((i * 300000)) /dev/urandom > "$drill/drill_$i.dat"; done
fi
nightlake ingest "$work/drill-files" --scope cta --rse ONSITE --rule OFFSITE-B --run "$work/drill" --quiet

step "rules watch: the copies into OFFSITE-B fail, the rule goes STUCK, each file's error classified"
if nightlake rules watch "$work/drill" --timeout 300; then
  echo "(already OK: an earlier run of the demo replicated it)"
fi

step "the fault cleared; rules retry: the judge-repairer takes the STUCK rule up again; watch it to OK"
nightlake lake fault OFFSITE-B --clear
nightlake rules retry "$work/drill"
nightlake rules watch "$work/drill" --timeout 300

step "retrieve: one dataset back from the lake, every file verified against Rucio's adler32"
nightlake retrieve "$dataset" --out "$work/retrieved" --run "$work/retrieve"

step "daemon: an on-site writer drops files and triggers into ONSITE-DAQ; they are registered in place as they come"
stream="$NIGHTLAKE_LAKE_DIR/storage/ONSITE-DAQ/rucio/cta/stream"   # in ONSITE-DAQ's area (see `nightlake lake status`)
mkdir -p "$stream"
nightlake daemon "$stream" --rse ONSITE-DAQ --scope cta --run "$work/daemon" --rule OFFSITE-A \
  --batch-age 1 --log-every 2 &
daemon=$!
nightlake generate examples/stream.toml --out "$stream" --rate 20
for _ in $(seq 120); do   # until every trigger and end-of-observation marker is consumed (datasets closed)
  [ -z "$(find "$stream" -name '*.trigger' -o -name '*.end' | head -1)" ] && break
  sleep 0.5
done
kill -TERM "$daemon" && wait "$daemon"
nightlake status "$work/daemon"
rucio did content list cta:CTAO-North_20260315

step "report"
nightlake report "$work/run" --retrieve "$work/retrieve" --out "$work/report"
echo
echo "run:       $work/run  (summary: $work/run/summary.json)"
echo "retrieve:  $work/retrieve  (files in $work/retrieved)"
echo "report:    $work/report/index.html"
