#!/usr/bin/env python3
"""Draws the benchmark plot from the harness's results.

Usage: python3 scripts/plot_benchmarks.py [target/benchmarks/results.json] [docs/benchmarks.png]
Needs matplotlib (pip install matplotlib). Left: throughput of docstore and of the raw
engine or server per workload (log scale). Right: the ratio ours/raw, with the issue's
target for that workload as a tick.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    source = sys.argv[1] if len(sys.argv) > 1 else "target/benchmarks/results.json"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks.png"
    with open(source, encoding="utf-8") as f:
        results = json.load(f)
    rows = results["rows"]
    labels = [f"{r['section']}: {r['op']}" for r in rows]
    y = list(range(len(rows)))[::-1]

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 0.42 * len(rows) + 1.8), sharey=True)
    height = 0.38
    left.barh([v + height / 2 for v in y], [r["ours"] for r in rows], height, label="docstore")
    left.barh([v - height / 2 for v in y], [r["raw"] for r in rows], height, label="raw")
    left.set_xscale("log")
    left.set_yticks(y)
    left.set_yticklabels(labels, fontsize=8)
    left.set_xlabel("throughput (ops/s, docs/s or queries/s, as labelled; log scale)")
    left.legend(loc="lower right")
    left.grid(axis="x", alpha=0.3)

    ratios = [r["ratio"] for r in rows]
    colors = []
    for r in rows:
        target = r.get("target")
        colors.append("tab:gray" if target is None else ("tab:green" if r["ratio"] >= target else "tab:red"))
    right.barh(y, [min(v, 3.0) for v in ratios], 0.6, color=colors)
    for v, r in zip(y, rows):
        if r.get("target") is not None:
            right.plot([r["target"]] * 2, [v - 0.4, v + 0.4], color="black", linewidth=2)
        right.text(min(r["ratio"], 3.0) + 0.03, v, f"{r['ratio']:.2f}", va="center", fontsize=7)
    right.axvline(1.0, color="black", linewidth=0.5, linestyle=":")
    right.set_xlim(0, 3.3)
    right.set_xlabel("ratio ours / raw (bars capped at 3; black tick = target; green met, red missed)")
    right.grid(axis="x", alpha=0.3)

    fig.suptitle(
        f"docstore vs the raw engine or server, one run ({results['docs']} documents of ~1 KB; "
        f"CouchDB {results['couch_docs']})"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
