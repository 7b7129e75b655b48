#!/usr/bin/env python3
"""Buckets a flat `perf report --sort pid,dso,sym` (whose "pid" is a thread id, mapped to
its process through a `ps -eLo lwp,pid` snapshot) into processes and, for the server, into
the parts of a request, by the crate a symbol comes from."""
import re
import sys

report, threads, server_pid, bench_pid = sys.argv[1:5]
process_of = dict(line.split() for line in open(threads) if len(line.split()) == 2)
line_re = re.compile(r"^\s*([\d.]+)%\s+(\d+):(\S+)\s+(\S+)\s+\[(.)\]\s+(.*)$")
PARTS = [
    ("HTTP (hyper, axum, tower, http)", ("hyper", "axum", "tower", "http::", "httparse", "h2::")),
    ("JSON (serde, serde_json)", ("serde",)),
    ("SQL driver (sqlx)", ("sqlx",)),
    ("idempotency and service (idem, idem_pay)", ("idem_pay", "idem::", "idem_")),
    ("async runtime (tokio)", ("tokio", "mio", "parking_lot")),
    ("memory and copies (malloc, memcpy)", ("malloc", "free", "memcpy", "memmove", "realloc", "alloc::", "cfree", "_int_")),
]
procs, parts, total = {}, {}, 0.0
for line in open(report, encoding="utf-8", errors="replace"):
    m = line_re.match(line)
    if not m:
        continue
    share, tid, comm, dso, kind, sym = float(m[1]), m[2], m[3], m[4], m[5], m[6]
    pid = process_of.get(tid, tid)
    total += share
    who = ("idem serve" if pid == server_pid else "idem bench (load)" if pid == bench_pid
           else "postgres" if comm.startswith("postgres") else "other")
    procs[who] = procs.get(who, 0.0) + share
    if who != "idem serve":
        continue
    if kind == "k":
        part = "kernel (network, scheduling)"
    else:
        part = next((name for name, marks in PARTS if any(s in sym for s in marks)), "other")
    parts[part] = parts.get(part, 0.0) + share

total = total or 1.0
print("share of all CPU samples (both cores; idle counts as other):")
for who, share in sorted(procs.items(), key=lambda kv: -kv[1]):
    print(f"  {who:<40} {100 * share / total:6.1f} %")
server = procs.get("idem serve", 0.0) or 1.0
print("inside idem serve (share of its own CPU):")
for part, share in sorted(parts.items(), key=lambda kv: -kv[1]):
    print(f"  {part:<40} {100 * share / server:6.1f} %")
