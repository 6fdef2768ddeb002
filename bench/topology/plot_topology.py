#!/usr/bin/env python3
"""Plots of a perigee-bench JSON file (bench/topology/perigee_bench.cpp --json).

One PNG per topology: emulated all-reduce time vs message size per algorithm, log-log, measured
(out-of-place) solid with markers and the alpha-beta prediction dashed in the same colour. Plus
meas_over_pred.png: measured / predicted at the largest size, grouped by topology, with the
+-15% band of the issue's target, and (x) measured / the timing model's own timeline.

    plot_topology.py results/topology/suite.json --out-dir results/topology
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402


def ran(topology):
    return [a for a in topology["algorithms"] if not a["skipped"] and a["rows"]]


def size_label(b):
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= div and b % div == 0:
            return f"{b // div}{unit}"
    return str(b)


def plot_times(topology, path):
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, alg in enumerate(ran(topology)):
        color = colors[k % len(colors)]
        sizes = [r["size"] for r in alg["rows"]]
        measured = [r["out_of_place"]["time"] / 1e3 for r in alg["rows"]]
        predicted = [r["predicted_us"] / 1e3 for r in alg["rows"]]
        ax.plot(sizes, measured, "o-", color=color, label=f"{alg['algorithm']} measured")
        ax.plot(sizes, predicted, "--", color=color, alpha=0.8, label=f"{alg['algorithm']} predicted")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({r["size"] for a in ran(topology) for r in a["rows"]})
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_label(s) for s in sizes])
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("message size per rank (bytes)")
    ax.set_ylabel("all-reduce time (emulated ms)")
    ranks = len(topology["rank_map"]["satellite_of_rank"])
    ax.set_title(f"{topology['label']}: {topology['name']}\n{ranks} ranks, mapping {topology['rank_map']['mapping']}",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ratios(doc, path):
    topologies = [t for t in doc["topologies"] if ran(t)]
    names = []
    for t in topologies:
        for a in ran(t):
            if a["algorithm"] not in names:
                names.append(a["algorithm"])
    fig, ax = plt.subplots(figsize=(max(7.5, 1.6 * len(topologies)), 4.8))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs, ys = [], []
        for i, t in enumerate(topologies):
            for a in ran(t):
                if a["algorithm"] == name:
                    xs.append(i - 0.4 + (k + 0.5) * width)
                    ys.append(a["rows"][-1]["meas_over_pred"])
        ax.bar(xs, ys, width, label=name)
        # A 1-rank run moves nothing: its timing model is 0 us (no point rather than a division by 0).
        fidelity = [a["rows"][-1]["out_of_place"]["time"] / a["rows"][-1]["out_of_place"]["model_us"]
                    if a["rows"][-1]["out_of_place"]["model_us"] else float("nan")
                    for t in topologies for a in ran(t) if a["algorithm"] == name]
        ax.plot(xs, fidelity, "kx", markersize=6, label="measured / timing model" if k == 0 else None)
    ax.axhspan(0.85, 1.15, color="green", alpha=0.12, label="within 15%")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(topologies)))
    ax.set_xticklabels([t["label"] for t in topologies])
    largest = max(a["rows"][-1]["size"] for t in topologies for a in ran(t))
    ax.set_ylabel("measured / predicted (alpha-beta)")
    ax.set_title(f"Emulated time vs alpha-beta model at the largest size ({size_label(largest)} per rank)")
    ax.legend(fontsize=8, ncol=3)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="perigee-bench --json output")
    ap.add_argument("--out-dir", default=".", help="folder for the PNGs")
    args = ap.parse_args()
    with open(args.json) as f:
        doc = json.load(f)
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    for t in doc["topologies"]:
        if not ran(t):
            continue
        path = os.path.join(args.out_dir, f"{t['label']}.png")
        plot_times(t, path)
        written.append(path)
    if written:
        path = os.path.join(args.out_dir, "meas_over_pred.png")
        plot_ratios(doc, path)
        written.append(path)
    for p in written:
        print(p)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
