#!/usr/bin/env python3
"""Turns Google Benchmark JSON from bench_matmul / bench_bandwidth into the markdown tables of
docs/benchmarks.md: one line per scheme/shape/batch/threads with cold and hot GB/s and GFLOP/s."""
import json
import re
import sys

rows = {}
bandwidth = []
for path in sys.argv[1:]:
    with open(path) as f:
        data = json.load(f)
    for b in data.get("benchmarks", []):
        name = b["name"].replace("/real_time", "")
        if name.startswith("bm_read"):
            bandwidth.append((name, b.get("bytes_per_second", 0) / 1e9))
            continue
        m = re.match(r"matmul/(.+)/(\d+x\d+)/b(\d+)/(cold|hot)/threads:(\d+)", name)
        if not m:
            continue
        scheme, shape, batch, temp, threads = m.groups()
        key = (scheme, shape, int(batch), int(threads))
        entry = rows.setdefault(key, {"path": b.get("label", "")})
        entry[temp] = (b.get("bytes_per_second", 0) / 1e9, b.get("GFLOPS", 0), b.get("real_time", 0))

if bandwidth:
    print("| read benchmark | GB/s |\n| --- | ---: |")
    for name, gbs in bandwidth:
        print(f"| {name} | {gbs:.1f} |")
    print()

def cell(entry, temp, i, fmt):
    return fmt.format(entry[temp][i]) if temp in entry else "-"

print("| scheme | shape | batch | threads | kernel | cold GB/s | hot GB/s | cold GFLOP/s | hot GFLOP/s | cold us/call |")
print("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for key in sorted(rows, key=lambda k: (k[1], k[2], k[0], k[3])):
    e = rows[key]
    scheme, shape, batch, threads = key
    print(f"| {scheme} | {shape} | {batch} | {threads} | {e['path']} | {cell(e, 'cold', 0, '{:.1f}')} | "
          f"{cell(e, 'hot', 0, '{:.1f}')} | {cell(e, 'cold', 1, '{:.0f}')} | {cell(e, 'hot', 1, '{:.0f}')} | "
          f"{cell(e, 'cold', 2, '{:.0f}')} |")
