#!/usr/bin/env python3
"""Turns criterion's results under target/criterion into one markdown table per group:
operations/s from the median of each benchmark, and each one's ratio to the baseline
measured in the same run (`raw*`, `plain`, or the SQL store a tiered store fronts)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = {}
for meta_path in sorted(root.glob("**/new/benchmark.json")):
    meta = json.loads(meta_path.read_text())
    estimates = json.loads((meta_path.parent / "estimates.json").read_text())
    median_ns = estimates["median"]["point_estimate"]
    elements = (meta.get("throughput") or {}).get("Elements", 1)
    group = meta["group_id"]
    value = meta.get("value_str") or "-"
    function = meta.get("function_id") or "-"
    groups.setdefault(group, {}).setdefault(value, {})[function] = elements * 1e9 / median_ns


def is_baseline(name, names):
    if name.startswith("raw") or name == "plain":
        return True
    # tiered_replay_<sql>: the SQL store alone is the baseline of the tiered store.
    return "tiered" in names and name != "tiered"


for group in sorted(groups):
    print(f"### `{group}`\n")
    print("| callers | benchmark | ops/s (median) | ÷ baseline |")
    print("|---|---|---:|---:|")
    for value in sorted(groups[group], key=lambda v: (len(v), v)):
        rows = groups[group][value]
        names = set(rows)
        base = next((n for n in sorted(rows) if is_baseline(n, names)), None)
        for name in sorted(rows, key=lambda n: (not is_baseline(n, names), n)):
            ratio = "baseline" if name == base else (
                f"{rows[name] / rows[base]:.2f}" if base else "")
            print(f"| {value} | {name} | {rows[name]:,.0f} | {ratio} |")
    print()
