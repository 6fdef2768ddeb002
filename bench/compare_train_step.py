#!/usr/bin/env python3
"""Ratio table of two bench_train_step-style JSON files (Perigee vs an anchor), matched by
(model, batch): speed-up = anchor ms/step / Perigee ms/step.

    python3 bench/compare_train_step.py perigee.json torch.json
"""
import json
import sys


def main():
    ours, anchor = (json.load(open(p)) for p in sys.argv[1:3])
    ref = {(r["model"], r["batch"]): r for r in anchor["results"]}
    print(f"# {ours['backend']} ({ours['threads']} threads) vs {anchor['backend']} ({anchor['threads']} threads)")
    print(f"# {'model':26s} {'batch':>5s} {'perigee ms':>11s} {'anchor ms':>10s} {'speed-up':>9s}")
    ratios = []
    for r in ours["results"]:
        a = ref.get((r["model"], r["batch"]))
        if a is None:
            continue
        ratio = a["ms_per_step"] / r["ms_per_step"]
        ratios.append(ratio)
        print(f"  {r['model']:26s} {r['batch']:5d} {r['ms_per_step']:11.1f} {a['ms_per_step']:10.1f} {ratio:8.2f}x")
    if ratios:
        geo = 1.0
        for x in ratios:
            geo *= x
        print(f"# geometric mean speed-up: {geo ** (1 / len(ratios)):.2f}x over {len(ratios)} cases")


if __name__ == "__main__":
    main()
