#!/usr/bin/env python3
"""Joins the GPU benchmark outputs into one JSON and a printed summary: Perigee's training step
(bench_train_step JSON files, one per precision), the PyTorch anchor (torch_anchor.py JSON) and the
kernel micro-benchmarks (bench_kernels JSON). The headline is Perigee tokens/s / torch.compile
tokens/s (goal >= 1.10), with Perigee's per-op breakdown of the step.

    summarize.py --perigee a.json [b.json ...] --torch torch.json --kernels kernels.json --out gpu_bench.json
Missing or unreadable inputs are recorded as such; the summary is written whatever is present.
"""
import argparse
import json
import math
import os

GOAL = 1.10
BF16_DENSE_TFLOPS = 989.4  # H100 SXM dense bf16, for the PyTorch bf16 runs' MFU
# The last loss of a GPT-2 run on random tokens: about ln(50257) = 10.8 at initialisation. A run
# outside this range (or NaN, written as null) trained wrongly and cannot be the headline.
SANE_LOSS = (5.0, 12.0)


def loss_sane(loss):
    return isinstance(loss, (int, float)) and math.isfinite(loss) and SANE_LOSS[0] < loss < SANE_LOSS[1]


def load(path):
    if not path or not os.path.exists(path):
        return None, f"missing: {path}"
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, f"unreadable: {path}: {e}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--perigee", nargs="*", default=[])
    ap.add_argument("--torch")
    ap.add_argument("--kernels")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    out = {"goal_ratio_vs_torch_compile": GOAL, "perigee": [], "torch": [], "ratios": [], "problems": []}
    for p in args.perigee:
        doc, err = load(p)
        if err:
            out["problems"].append(err)
            continue
        for r in doc.get("results", []):
            out["perigee"].append({
                "label": f"perigee {doc.get('precision', '?')}"
                         + (", bf16 activations" if doc.get("activations") == "bf16" else "")
                         + (", bf16 logits" if doc.get("logits") == "bf16" else "")
                         + (", GELU epilogues" if doc.get("gelu_fusion") else "")
                         + (", variants " + "+".join(doc["kernel_variants"])
                            if doc.get("kernel_variants") else "")
                         + (", no weight cache" if doc.get("precision_mode") == "bf16"
                            and doc.get("weight_cache") is False else ""),
                "file": os.path.basename(p),
                "device": doc.get("device_name"), "precision": doc.get("precision"), "batch": r["batch"],
                "seq": r["seq"], "params": r["params"], "ms_per_step": r["ms_per_step"],
                "flops_per_token": r["flops_per_step"] / r["tokens_per_step"],
                "tokens_per_s": r["tokens_per_s"], "tflops": r["tflops"], "mfu": r.get("mfu"),
                "mfu_peak_tflops": r.get("mfu_peak_tflops"), "mfu_vs_bf16_dense": r.get("mfu_vs_bf16_dense"),
                "device_mem_peak_mib": r.get("device_mem_peak_mib"),
                "device_mem_case_mib": r.get("device_mem_case_mib"), "loss_last": r.get("loss_last"),
                "kernel_variants": doc.get("kernel_variants") or [],
                "profile": r.get("profile")})
    tdoc, err = load(args.torch)
    if err:
        out["problems"].append(err)
    else:
        out["torch_version"] = tdoc.get("torch")
        for r in tdoc.get("runs", []):
            rec = {"label": f"torch {r['mode']}", **{k: v for k, v in r.items() if k != "printed"}}
            if "tflops" in r:
                rec["mfu_vs_bf16_dense"] = r["tflops"] / BF16_DENSE_TFLOPS
            out["torch"].append(rec)
    kdoc, err = load(args.kernels)
    if err:
        out["problems"].append(err)
    else:
        out["kernels"] = kdoc

    torch_ok = [t for t in out["torch"] if "tokens_per_s" in t]
    if out["perigee"]:  # the anchor prints whole TFLOP/s: recompute with Perigee's formula (same model)
        fpt = out["perigee"][0]["flops_per_token"]
        for t in torch_ok:
            t["tflops"] = t["tokens_per_s"] * fpt / 1e12
            t["mfu_vs_bf16_dense"] = t["tflops"] / BF16_DENSE_TFLOPS
    for p in out["perigee"]:
        for t in torch_ok:
            out["ratios"].append({"perigee": p["label"], "torch": t["label"],
                                  "tokens_per_s_ratio": p["tokens_per_s"] / t["tokens_per_s"]})
    compile_runs = [t for t in torch_ok if t["mode"].startswith("compile")]
    # Runs with kernel variants (kernels/cuda/kernel_variants.hpp) are not headlines: a variant becomes
    # a default only after its tests have passed on a GPU.
    sane = [p for p in out["perigee"] if loss_sane(p["loss_last"]) and not p["kernel_variants"]]
    for p in out["perigee"]:
        if not loss_sane(p["loss_last"]):
            out["problems"].append(f"{p['label']}: last loss {p['loss_last']} outside {SANE_LOSS}: not a headline")
    if sane and compile_runs:
        best = max(sane, key=lambda p: p["tokens_per_s"])
        ref = compile_runs[0]
        ratio = best["tokens_per_s"] / ref["tokens_per_s"]
        out["headline"] = {"perigee": best["label"], "perigee_tokens_per_s": best["tokens_per_s"],
                           "torch": ref["label"], "torch_tokens_per_s": ref["tokens_per_s"],
                           "ratio": ratio, "goal_met": ratio >= GOAL}

    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)

    # ---- printed summary
    print("\n== training step, GPT-2 124M ==")
    print(f"{'run':<34} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>16} {'peak mem MiB':>13}")
    for p in out["perigee"]:
        mfu = f"{100 * p['mfu']:.1f}% of {p['mfu_peak_tflops']:.0f}" if p.get("mfu") else "-"
        print(f"{p['label']:<34} {p['ms_per_step']:>9.2f} {p['tokens_per_s']:>10.0f} {p['tflops']:>8.2f} "
              f"{mfu:>16} {p.get('device_mem_peak_mib') or 0:>13.0f}")
    for t in out["torch"]:
        if "tokens_per_s" not in t:
            print(f"{t['label']:<34} failed: {t.get('error')}")
            continue
        print(f"{t['label']:<34} {t['ms_per_step']:>9.2f} {t['tokens_per_s']:>10.0f} {t['tflops']:>8.2f} "
              f"{100 * t['mfu_vs_bf16_dense']:>9.1f}% of 989 {t['peak_reserved_mib']:>13.0f}")
    for p in out["perigee"]:
        prof = p.get("profile")
        if not prof:
            continue
        print(f"\n== where the time goes: {p['label']} ({prof['timer']}, {prof['wall_ms_per_step']:.2f} ms/step) ==")
        for op in prof["ops"][:15]:
            print(f"  {op['op']:<44} {op['ms_per_step']:>9.3f} ms {op['pct_of_step']:>6.1f}%")
    if kdoc:
        print("\n== kernels ==")
        for r in kdoc.get("results", []):
            print(f"  {r['case']:<34} {r['ms']:>9.4f} ms {r['achieved']:>10.2f} {r['unit']:<8} "
                  f"{r['pct_of_peak']:>6.1f}% {r.get('check', '-')}")
    for prob in out["problems"]:
        print("problem:", prob)
    print(f"# wrote {args.out}")
    # Last, so that a cut output tail still holds it.
    if "headline" in out:
        h = out["headline"]
        print(f"# headline: {h['perigee']} / {h['torch']} tokens/s = {h['ratio']:.3f} "
              f"({h['perigee_tokens_per_s']:.0f} / {h['torch_tokens_per_s']:.0f}; goal {GOAL}: "
              f"{'met' if h['goal_met'] else 'NOT met'})")
    else:
        print("# headline: none (no sane Perigee run, or no torch.compile run)")


if __name__ == "__main__":
    main()
