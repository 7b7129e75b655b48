#!/usr/bin/env python3
"""The table of docs/bench/batching.md from bench/run.sh's batching.jsonl: per engine,
clients and accounts, fresh payments per second with group commit off and on, the
one-statement baseline, and the ratios, each ratio taken within a run (on ÷ its own
statement baseline; on ÷ off of the same run), then the median over runs."""
import json
import statistics
import sys
from collections import defaultdict


def median(values):
    return statistics.median(values) if values else float("nan")


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    groups = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        key = (row["engine"], row["clients"], row["skew"])
        groups[key][row["run"]][row["batch"]] = row
    print(
        "| database | clients | accounts | off: fresh/s | on: fresh/s | statement/s "
        "| on ÷ statement | on ÷ off | runs (on ÷ statement; on ÷ off) "
        "| p50 ms off / on | p99 ms off / on | errors |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|---|---|---:|")
    for (engine, clients, skew), runs in sorted(groups.items()):
        off, on, statement, vs_statement, on_off, errors = [], [], [], [], [], 0
        p50_off, p50_on, p99_off, p99_on = [], [], [], []
        for settings in runs.values():
            for batch, row in settings.items():
                errors += row["errors"]
                statement.append(row["statement"]["rps"])
                target = on if batch > 1 else off
                target.append(row["fresh"]["rps"])
                (p50_on if batch > 1 else p50_off).append(row["fresh"]["p50_ms"])
                (p99_on if batch > 1 else p99_off).append(row["fresh"]["p99_ms"])
                if batch > 1:
                    vs_statement.append(row["vs_statement"])
            batched = [r for b, r in settings.items() if b > 1]
            alone = settings.get(1)
            if batched and alone:
                on_off.append(batched[0]["fresh"]["rps"] / alone["fresh"]["rps"])
        print(
            f"| {engine} | {clients} | {skew} | {rate(median(off))} | {rate(median(on))} "
            f"| {rate(median(statement))} | **{median(vs_statement):.2f}** | **{median(on_off):.2f}** "
            f"| {ratios(vs_statement)}; {ratios(on_off)} "
            f"| {median(p50_off):.2f} / {median(p50_on):.2f} | {median(p99_off):.1f} / {median(p99_on):.1f} "
            f"| {errors} |"
        )


def rate(x):
    """A rate with spaces between thousands, as the rest of BENCHMARKS.md."""
    return f"{x:,.0f}".replace(",", " ")


def ratios(xs):
    return ", ".join(f"{x:.2f}" for x in xs)


if __name__ == "__main__":
    main(sys.argv[1])
