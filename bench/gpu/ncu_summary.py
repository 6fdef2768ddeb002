#!/usr/bin/env python3
"""Summarises an Nsight Compute raw CSV (`ncu --csv --page raw`, one row per profiled launch after a
header row and a units row) as one line per kernel: launches, mean time, SM and memory throughput,
DRAM throughput and L2 hit rate, achieved and theoretical occupancy, registers, shared memory per
block, issue-slot use, and the three largest warp stall reasons (cycles per issued instruction).
Columns a given ncu version or section set does not report print as "-"; the stall reasons are found
by pattern, so any names ncu uses for them are covered.

    ncu_summary.py ncu_hot.csv [--json out.json] [--top N]
Exit status 1 when the file is missing, unreadable or holds no profiled launch.
"""
import argparse
import csv
import json
import re
import sys
from collections import OrderedDict

# (label, candidate column names: the first present one is used, scale)
COLUMNS = [
    ("time_us", ["gpu__time_duration.sum"], 1e-3),  # ns in base units
    ("sm_pct", ["sm__throughput.avg.pct_of_peak_sustained_elapsed"], 1.0),
    ("mem_pct", ["gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"], 1.0),
    ("dram_pct", ["dram__throughput.avg.pct_of_peak_sustained_elapsed",
                  "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed"], 1.0),
    ("l2_hit_pct", ["lts__t_sector_hit_rate.pct"], 1.0),
    ("occ_pct", ["sm__warps_active.avg.pct_of_peak_sustained_active"], 1.0),
    ("occ_max_pct", ["sm__maximum_warps_per_active_cycle_pct"], 1.0),
    ("regs", ["launch__registers_per_thread"], 1.0),
    ("smem_kib", ["launch__shared_mem_per_block"], 1.0 / 1024),  # static + dynamic (see summarise)
    ("issue_pct", ["smsp__issue_active.avg.pct_of_peak_sustained_active",
                   "sm__inst_issued.avg.pct_of_peak_sustained_active"], 1.0),
]
# Warp stall reasons, one family per file (the first one present): cycles per issued instruction, or
# the total warp latency. "selected" (a warp issuing, about 1 per issue) is not a stall.
STALL = [re.compile(r"smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$"),
         re.compile(r"smsp__average_warp_latency_issue_stalled_(\w+?)\.ratio$")]
NOT_STALLS = {"selected"}
KERNEL = ["Kernel Name", "kernel_name", "Function Name"]


def number(text):
    """A metric value as ncu prints it ("1,234.5", "n/a", "") -> float or None."""
    text = (text or "").strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def short_name(name):
    """A demangled kernel name without its return type, namespaces and parameter list."""
    name = name.strip().replace("(anonymous namespace)::", "")
    if name.endswith(")"):  # the parameter list: the last balanced parentheses
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            if name[i] == ")":
                depth += 1
            elif name[i] == "(":
                depth -= 1
                if depth == 0:
                    name = name[:i]
                    break
    name = re.sub(r"^void\s+", "", name)
    depth, start = 0, 0
    for i, ch in enumerate(name):  # the last "::" outside template arguments
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0 and name.startswith("::", i):
            start = i + 2
    return name[start:]


# Units ncu may print without --print-units base, to the base ones COLUMNS expect (ns, byte).
UNIT_SCALE = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9,
              "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KiB": 1024.0, "MiB": 1024.0**2}


def read_rows(path):
    """(header, rows as dicts of floats or strings); values scaled to base units by the units row."""
    with open(path, newline="") as f:
        lines = [line for line in f if not line.startswith("==")]  # ncu's own log lines
    rows = [r for r in csv.reader(lines) if any(c.strip() for c in r)]  # no empty lines
    if not rows:
        raise ValueError("no CSV header")
    header, body = rows[0], rows[1:]
    units = {}
    if body and not body[0][0].strip():  # the units row: its ID column is empty
        units = dict(zip(header, body[0]))
        body = body[1:]
    out = []
    for r in body:
        if len(r) != len(header):
            continue
        row = {}
        for col, text in zip(header, r):
            v = number(text)
            row[col] = text if v is None else v * UNIT_SCALE.get(units.get(col, ""), 1.0)
        out.append(row)
    return header, out


def mean(launches, col):
    """The mean of a column's numeric values over some launches, or None."""
    vals = [r.get(col) for r in launches if isinstance(r.get(col), float)]
    return sum(vals) / len(vals) if vals else None


def summarise(header, rows, top):
    kernel_col = next((k for k in KERNEL if k in header), None)
    if kernel_col is None:
        raise ValueError(f"no kernel name column (looked for {', '.join(KERNEL)})")
    stall_cols = []
    for pat in STALL:
        stall_cols = [(m.group(1), col) for col in header for m in [pat.search(col)]
                      if m and m.group(1) not in NOT_STALLS]
        if stall_cols:
            break
    by_kernel = OrderedDict()
    for r in rows:
        by_kernel.setdefault(short_name(str(r[kernel_col])), []).append(r)
    out = []
    for name, launches in by_kernel.items():
        entry = {"kernel": name, "launches": len(launches)}
        for label, names, scale in COLUMNS:
            col = next((c for c in names if c in header), None)
            value = mean(launches, col) if col else None
            entry[label] = None if value is None else value * scale
        if entry["smem_kib"] is None:
            parts = [mean(launches, f"launch__shared_mem_per_block_{k}") for k in ("static", "dynamic")]
            if any(p is not None for p in parts):
                entry["smem_kib"] = sum(p or 0.0 for p in parts) / 1024
        stalls = [(reason, mean(launches, col)) for reason, col in stall_cols]
        stalls = sorted((s for s in stalls if s[1] is not None), key=lambda s: -s[1])
        entry["stalls"] = [{"reason": s, "cycles_per_issue": round(v, 3)} for s, v in stalls[:top]]
        out.append(entry)
    out.sort(key=lambda e: -(e["time_us"] or 0.0) * e["launches"])
    return out


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--json")
    ap.add_argument("--top", type=int, default=3, help="stall reasons per kernel (3)")
    args = ap.parse_args()
    try:
        header, rows = read_rows(args.csv)
        kernels = summarise(header, rows, args.top)
    except (OSError, ValueError) as e:
        print(f"ncu_summary.py: {args.csv}: {e}", file=sys.stderr)
        return 1
    if not kernels:
        print(f"ncu_summary.py: {args.csv}: no profiled launch", file=sys.stderr)
        return 1
    labels = [c[0] for c in COLUMNS]
    print("| kernel | launches | " + " | ".join(labels) + " | top stalls (cycles/issue) |")
    print("|---|---:|" + "---:|" * len(labels) + "---|")
    for e in kernels:
        stalls = ", ".join(f"{s['reason']} {s['cycles_per_issue']:.2f}" for s in e["stalls"]) or "-"
        cells = [fmt(e[label], 0 if label == "regs" else 1) for label in labels]
        print(f"| {e['kernel']} | {e['launches']} | " + " | ".join(cells) + f" | {stalls} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"source": args.csv, "kernels": kernels}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
