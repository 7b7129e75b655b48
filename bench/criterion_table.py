#!/usr/bin/env python3
"""Turns criterion's results of one or more runs (each a target/criterion directory) into
one markdown table per group: operations/s from the median of each benchmark (the median
over runs), each one's ratio to the baseline measured in the same run (`raw*`, `plain`,
or the SQL store a tiered store fronts), every run's ratio and their median."""
import json
import pathlib
import statistics
import sys

roots = [pathlib.Path(p) for p in (sys.argv[1:] or ["target/criterion"])]
# groups[group][value][function] = [ops/s of run 1, run 2, ...]
groups = {}
for run, root in enumerate(roots):
    for meta_path in sorted(root.glob("**/new/benchmark.json")):
        meta = json.loads(meta_path.read_text())
        estimates = json.loads((meta_path.parent / "estimates.json").read_text())
        median_ns = estimates["median"]["point_estimate"]
        elements = (meta.get("throughput") or {}).get("Elements", 1)
        group = meta["group_id"]
        value = meta.get("value_str") or "-"
        function = meta.get("function_id") or "-"
        runs = groups.setdefault(group, {}).setdefault(value, {}).setdefault(function, {})
        runs[run] = elements * 1e9 / median_ns


def is_baseline(name, names):
    if name.startswith("raw") or name == "plain":
        return True
    # tiered_replay_<sql>: the SQL store alone is the baseline of the tiered store.
    return "tiered" in names and name != "tiered"


for group in sorted(groups):
    print(f"### `{group}`\n")
    print("| callers | benchmark | ops/s (median) | ÷ baseline, median | each run |")
    print("|---|---|---:|---:|---|")
    for value in sorted(groups[group], key=lambda v: (len(v), v)):
        rows = groups[group][value]
        names = set(rows)
        base = next((n for n in sorted(rows) if is_baseline(n, names)), None)
        for name in sorted(rows, key=lambda n: (not is_baseline(n, names), n)):
            ops = statistics.median(rows[name].values())
            if name == base:
                print(f"| {value} | {name} | {ops:,.0f} | baseline | |")
                continue
            ratios = [rows[name][r] / rows[base][r] for r in sorted(rows[name])
                      if base and r in rows[base]]
            median = f"{statistics.median(ratios):.2f}" if ratios else ""
            each = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"| {value} | {name} | {ops:,.0f} | {median} | {each} |")
    print()
