#!/usr/bin/env python3
"""Draws the benchmark plot from the harness's results.

Usage: python3 scripts/plot_benchmarks.py [target/benchmarks/results.json] [docs/benchmarks.png]
Needs matplotlib (pip install matplotlib). Left: throughput of docstore and of the raw
engine or server per workload (log scale). Right: the ratio ours/raw, with the issue's
target for that workload as a tick. When the run had a `scaling` section, also draws
`scaling.png` beside the first figure: each CLI run's wall time and peak memory against
the number of documents (log-log), with a line of slope 1 (linear growth) for reference.
A run with only a scaling section leaves the first figure as it is.
"""

import os

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
    if results["rows"]:
        plot_rows(results, out)
    if results.get("scaling"):
        plot_scaling(results["scaling"], os.path.join(os.path.dirname(out) or ".", "scaling.png"))


def plot_rows(results: dict, out: str) -> None:
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


def plot_scaling(scaling: list, out: str) -> None:
    docs = [s["docs"] for s in scaling]
    runs = [
        ("listing", "docstore ls"),
        ("index", "docstore index (build)"),
        ("find", "docstore find, indexed, 100 docs"),
        ("migration", "docstore migrate"),
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for key, label in runs:
        if f"{key}_s" not in scaling[0]:
            continue
        left.plot(docs, [s[f"{key}_s"] for s in scaling], marker="o", label=label)
        right.plot(docs, [s[f"{key}_mib"] for s in scaling], marker="o", label=label)
    if "query_ms" in scaling[0]:
        left.plot(
            docs,
            [s["query_ms"] / 1e3 for s in scaling],
            marker="s",
            label="indexed query alone (in process, mean)",
        )
    # Slope 1 through the first listing point: where linear growth would put each size.
    first = scaling[0]["listing_s"]
    left.plot(docs, [first * d / docs[0] for d in docs], color="gray", linestyle=":", label="linear (slope 1)")
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("documents (~1 KB each)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("wall time of the CLI run (s, log scale)")
    right.set_ylabel("peak RSS of the CLI run (MiB)")
    right.set_ylim(bottom=0)
    fig.suptitle("docstore embedded: time grows linearly, memory stays flat (release CLI, child processes)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
