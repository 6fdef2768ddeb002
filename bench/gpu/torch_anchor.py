#!/usr/bin/env python3
"""Runs the PyTorch anchor (shared/anchors/torch_gpt2.py: GPT-2 124M, B 16, T 1024) unchanged, one
mode at a time through its own run(), and records what it prints plus the peak GPU memory of each
mode (torch.cuda.max_memory_allocated / max_memory_reserved) as JSON.

    torch_anchor.py --anchor PATH [--modes eager-bf16,eager-fp32,compile-bf16] [--json out.json]

The anchor sets torch.backends.cuda.matmul.allow_tf32 = True at import, so its "fp32" mode runs
TF32 GEMMs. A mode that fails is recorded with its error; the others still run.
"""
import argparse
import contextlib
import gc
import importlib.util
import io
import json
import re
import sys
import time
import traceback

LINE = re.compile(r"torch (?P<mode>eager|compile) (?P<dtype>\S+) params=(?P<params>[\d.]+)M B=(?P<B>\d+) "
                  r"T=(?P<T>\d+) step=(?P<ms>[\d.]+)ms tok/s=(?P<tps>[\d,]+) TFLOP/s=(?P<tflops>[\d.]+) "
                  r"loss=(?P<loss>[-\d.naninf]+)")


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchor", required=True)
    ap.add_argument("--modes", default="eager-bf16,eager-fp32,compile-bf16")
    ap.add_argument("--json", default="torch_anchor.json")
    args = ap.parse_args()

    import torch
    spec = importlib.util.spec_from_file_location("torch_gpt2_anchor", args.anchor)
    anchor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(anchor)

    doc = {"anchor": args.anchor, "torch": torch.__version__, "device": torch.cuda.get_device_name(0),
           "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32), "runs": []}
    for mode in [m for m in args.modes.split(",") if m]:
        compile_ = mode.startswith("compile")
        dtype = torch.float32 if mode.endswith("fp32") else torch.bfloat16
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        captured = io.StringIO()
        rec = {"mode": mode}
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(Tee(sys.stdout, captured)):
                anchor.run(compile_, dtype=dtype)
            m = LINE.search(captured.getvalue())
            if not m:
                raise RuntimeError("anchor output not understood: " + captured.getvalue().strip())
            rec.update({"dtype": m["dtype"], "params_m": float(m["params"]), "batch": int(m["B"]),
                        "seq": int(m["T"]), "ms_per_step": float(m["ms"]),
                        "tokens_per_s": float(m["tps"].replace(",", "")), "tflops": float(m["tflops"]),
                        "loss": m["loss"]})
        except Exception as e:  # noqa: BLE001 -- keep the other modes
            rec["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        rec["wall_s"] = time.perf_counter() - t0
        rec["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rec["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        rec["printed"] = captured.getvalue().strip()
        doc["runs"].append(rec)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
