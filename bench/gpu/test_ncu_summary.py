#!/usr/bin/env python3
"""Checks ncu_summary.py on a raw CSV written here in ncu's layout (header row, units row, one row per
launch, ncu's own "==PROF==" lines and empty lines mixed in): kernels grouped by short name, units
scaled to base units, static and dynamic shared memory added, the stall reasons of one family ranked
without "selected", a missing column printed as "-", and a file without launches refused.
Run by CTest (bench.ncu_summary)."""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "ncu_summary.py")
DKV = ("void perigee::kernels::cuda::(anonymous namespace)::attention_backward_dkv_bf16_kernel<64, 4, "
       "unsigned short>(unsigned short *, perigee::kernels::cuda::(anonymous namespace)::HeadView, float)")
HEADER = ["ID", "Process ID", "Kernel Name", "gpu__time_duration.sum",
          "sm__throughput.avg.pct_of_peak_sustained_elapsed", "launch__registers_per_thread",
          "launch__shared_mem_per_block_dynamic",
          "smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio",
          "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
          "smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio",
          "smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio",
          "smsp__average_warps_issue_stalled_selected_per_issue_active.ratio",
          "smsp__average_warp_latency_issue_stalled_barrier.ratio", "launch__shared_mem_per_block_static"]
UNITS = ["", "", "", "usecond", "%", "register/thread", "Kbyte", "ratio", "ratio", "ratio", "ratio", "ratio",
         "ratio", "byte"]
ROWS = [
    ["0", "77", DKV, "300.5", "40.0", "236", "56.32", "1.5", "0.25", "2.0", "0.75", "1.0", "1e6", "192"],
    ["1", "77", "crossentropy_forward_kernel<true, true, unsigned short, unsigned short>(float *, int)",
     "2,120.0", "n/a", "32", "0", "0.1", "9.0", "0", "0", "50", "2e6", "192"],
    ["2", "77", DKV, "299.5", "42.0", "236", "56.32", "1.7", "0.35", "2.2", "0.65", "1.0", "1e6", "192"],
]


def write(path, rows, units=True):
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL)
    w.writerow(HEADER)
    if units:
        w.writerow(UNITS)
    for r in rows:
        w.writerow(r)
        buf.write("\n")  # an empty line between launches is skipped
    with open(path, "w") as f:
        f.write("==PROF== Connected to process 77\n" + buf.getvalue() + "==PROF== Disconnected\n")


def run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def main():
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        path, js = os.path.join(tmp, "hot.csv"), os.path.join(tmp, "hot.json")
        write(path, ROWS)
        r = run(path, "--json", js, "--top", "2")
        check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
        if r.returncode == 0:
            kernels = json.load(open(js))["kernels"]
            names = [k["kernel"] for k in kernels]
            # crossentropy: 1 x 2120 us > dkv: 2 x 300 us, so it comes first.
            check(names == ["crossentropy_forward_kernel<true, true, unsigned short, unsigned short>",
                            "attention_backward_dkv_bf16_kernel<64, 4, unsigned short>"], f"names {names}")
            dkv = kernels[1]
            check(dkv["launches"] == 2, f"launches {dkv['launches']}")
            check(abs(dkv["time_us"] - 300.0) < 1e-9, f"time_us {dkv['time_us']} (usecond -> us)")
            check(abs(dkv["sm_pct"] - 41.0) < 1e-9, f"sm_pct {dkv['sm_pct']}")
            check(abs(dkv["smem_kib"] - 56512 / 1024) < 1e-9,
                  f"smem_kib {dkv['smem_kib']} (56.32 Kbyte dynamic + 192 byte static)")
            check([s["reason"] for s in dkv["stalls"]] == ["math_pipe_throttle", "barrier"],
                  f"stalls {dkv['stalls']}")
            ce = kernels[0]
            check(abs(ce["time_us"] - 2120.0) < 1e-9, f"time_us {ce['time_us']} (thousands separator)")
            check(ce["sm_pct"] is None and ce["mem_pct"] is None, "n/a and absent columns are None")
            # Not "selected" (no stall), and not the warp-latency family (another scale) beside the first.
            check(ce["stalls"][0]["reason"] == "long_scoreboard" and len(ce["stalls"]) == 2,
                  f"stalls {ce['stalls']}")
            check("| - |" in r.stdout, "a missing value prints as -")
        # Without the units row the values are taken as they are.
        write(path, ROWS[:1], units=False)
        r = run(path, "--json", js)
        check(r.returncode == 0 and abs(json.load(open(js))["kernels"][0]["time_us"] - 0.3005) < 1e-9,
              "no units row: nanoseconds assumed")
        write(path, [])
        r = run(path)
        check(r.returncode == 1 and "no profiled launch" in r.stderr, f"empty: {r.returncode} {r.stderr}")
        r = run(os.path.join(tmp, "missing.csv"))
        check(r.returncode == 1 and "missing.csv" in r.stderr, f"missing file: {r.returncode} {r.stderr}")

    for f in failures:
        print("FAIL:", f)
    print("ok" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
