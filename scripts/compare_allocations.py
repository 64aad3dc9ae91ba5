#!/usr/bin/env python3
"""Compares bit allocations written by `qsafe quantize --allocation-report` (JSON).

For each report: bits per weight, the predicted (summed per-layer) KL, and per layer kind how many layers
got each scheme; for every pair of reports: how many layers got the same scheme, and the Spearman rank
correlation of the two sensitivity tables at each candidate scheme (do safety and utility data rank the
layers alike?). Mean bits per block show where along the depth each allocation spends its budget.

    python3 scripts/compare_allocations.py alloc-safety-3.5.json alloc-utility-3.5.json [...]
"""
import json
import re
import sys
from collections import Counter, defaultdict


def load(path):
    with open(path) as f:
        report = json.load(f)
    for key in ("schemes", "sensitivity", "bits_per_weight", "allocate"):
        if key not in report:
            sys.exit(f"{path}: not an allocation report (no '{key}')")
    return report


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va > 0 and vb > 0 else float("nan")


def scheme_bits(report):
    """Bits per weight of each candidate scheme, from the table's byte counts."""
    bits = {}
    for layer in report["sensitivity"]["layers"]:
        for scheme, size in layer["bytes"].items():
            bits.setdefault(scheme, 8.0 * size / (layer["rows"] * layer["cols"]))
    return bits


def main(paths):
    if not paths:
        sys.exit(__doc__)
    reports = [(p, load(p)) for p in paths]
    for path, r in reports:
        print(f"## {path}: allocate {r['allocate']}, {r['bits_per_weight']:.3f} bpw "
              f"(target {r.get('target_bits_per_weight')}), predicted KL {r['predicted_kl']:.4f}")
        kinds = defaultdict(Counter)
        for tensor, scheme in r["schemes"].items():
            kinds[re.sub(r"^blk\.\d+\.", "", tensor)][scheme] += 1
        schemes = sorted({s for c in kinds.values() for s in c})
        print("| layer kind | " + " | ".join(schemes) + " |")
        print("|---|" + "--:|" * len(schemes))
        for kind in sorted(kinds):
            print(f"| {kind} | " + " | ".join(str(kinds[kind][s]) for s in schemes) + " |")
        bits = scheme_bits(r)
        size = {l["tensor"]: l["rows"] * l["cols"] for l in r["sensitivity"]["layers"]}
        per_block = defaultdict(lambda: [0.0, 0])
        for tensor, scheme in r["schemes"].items():
            m = re.match(r"^blk\.(\d+)\.", tensor)
            if m and scheme in bits and tensor in size:
                per_block[int(m.group(1))][0] += bits[scheme] * size[tensor]
                per_block[int(m.group(1))][1] += size[tensor]
        line = " ".join(f"{b / n:.2f}" for _, (b, n) in sorted(per_block.items()))
        print(f"bits per weight by block (0..{max(per_block) if per_block else 0}): {line}\n")
    for i in range(len(reports)):
        for j in range(i + 1, len(reports)):
            (pa, a), (pb, b) = reports[i], reports[j]
            common = sorted(set(a["schemes"]) & set(b["schemes"]))
            same = sum(a["schemes"][t] == b["schemes"][t] for t in common)
            print(f"{pa} vs {pb}: same scheme for {same} of {len(common)} layers")
            la = {l["tensor"]: l["kl"] for l in a["sensitivity"]["layers"]}
            lb = {l["tensor"]: l["kl"] for l in b["sensitivity"]["layers"]}
            shared = sorted(set(la) & set(lb))
            for scheme in a["sensitivity"]["candidates"]:
                if all(scheme in la[t] and scheme in lb[t] for t in shared) and len(shared) > 2:
                    rho = spearman([la[t][scheme] for t in shared], [lb[t][scheme] for t in shared])
                    print(f"  sensitivity rank correlation at {scheme}: {rho:.3f} over {len(shared)} layers")


if __name__ == "__main__":
    main(sys.argv[1:])
