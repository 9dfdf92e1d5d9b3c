"""What riding through outages costs a healthy night: the retry policy's per-call overhead with
the breaker on (the default patience) against the policy without it, in the same process.

Method: a call that succeeds at once (no I/O, so only the policy's own work is measured) is made
N times through `RetryPolicy.call`, alternating rounds with `patience=0` (baseline: bounded
retries only) and `patience=600` (the breaker: a shared per-target object checked and closed on
every success); the best round of each is kept. The extra cost per call is then multiplied by the
calls a CTA night makes (about 500,000 storage calls and 3,000 catalog calls). Usage:
    python benchmarks/retry_overhead.py [--calls 200000] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time

from nightlake.catalog.retry import RetryPolicy

NIGHT_CALLS = 503_000  # storage puts and stats plus bulk catalog calls of a 500,000-file night


def per_call_us(policy: RetryPolicy, calls: int) -> float:
    def nothing() -> None:
        return None

    policy.call(nothing)  # the target has answered: the breaker is armed, as in a running night
    start = time.perf_counter()
    for _ in range(calls):
        policy.call(nothing)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=str, default=None, help="Write the figures to this file.")
    args = parser.parse_args()
    baseline, breaker = [], []
    for _ in range(args.rounds):
        baseline.append(per_call_us(RetryPolicy(target="ONSITE", patience=0), args.calls))
        breaker.append(per_call_us(RetryPolicy(target="ONSITE", patience=600), args.calls))
    base, ride = min(baseline), min(breaker)
    figures = {"method": "best of rounds, a call that succeeds at once through RetryPolicy.call",
               "calls_per_round": args.calls, "rounds": args.rounds,
               "baseline_patience_0_us_per_call": round(base, 3), "breaker_patience_600_us_per_call": round(ride, 3),
               "ratio_breaker_over_baseline": round(ride / base, 3),
               "extra_seconds_per_night": round((ride - base) * NIGHT_CALLS / 1e6, 2), "night_calls": NIGHT_CALLS}
    print(f"method: {figures['method']}; {args.rounds} rounds of {args.calls:,} calls each")
    print(f"baseline (patience 0):   {base:.2f} us/call")
    print(f"breaker  (patience 600): {ride:.2f} us/call   ratio {ride / base:.3f}")
    print(f"a night of {NIGHT_CALLS:,} calls: {figures['extra_seconds_per_night']:+.2f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
