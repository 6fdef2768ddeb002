#!/usr/bin/env python3
"""Anchor for bench_train_step: the same GPT training step (forward + backward + AdamW, fp32) in
PyTorch eager on the CPU, same shapes, same thread count, same JSON fields.

    python3 bench/torch_train_step.py --models small,gpt2 --batches 1,2,4 --threads 2 --json out.json
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {  # name -> (layers, heads, channels, context, padded vocab, seq)
    "small": ("small (4L 4H 128C)", 4, 4, 128, 256, 256, 256),
    "gpt2": ("gpt2-124M (12L 12H 768C)", 12, 12, 768, 1024, 50304, 1024),
}


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.attn_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = [z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, layers, heads, c, context, vocab):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(context, c)
        self.blocks = nn.ModuleList([Block(c, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(c)

    def forward(self, idx, tgt):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="small,gpt2")
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default="torch_train_step.json")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    results = []
    print(f"# torch {torch.__version__} eager fp32 CPU, {torch.get_num_threads()} thread(s)")
    for m in a.models.split(","):
        name, L, H, C, T_ctx, V, T = SHAPES[m]
        for B in [int(b) for b in a.batches.split(",")]:
            model = Gpt(L, H, C, T_ctx, V)
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
            params = sum(p.numel() for p in model.parameters())
            x = torch.randint(0, V, (B, T))
            y = torch.randint(0, V, (B, T))
            times = []
            for i in range(a.warmup + a.iters):
                t0 = time.perf_counter()
                loss = model(x, y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i >= a.warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
            times.sort()
            ms = times[len(times) // 2]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print(f"  {name:26s} {B:6d} {T:6d} {params:12d} {ms:12.1f} {B * T / (ms / 1e3):12.0f} {rss:10.0f}",
                  flush=True)
            results.append({"model": name, "batch": B, "seq": T, "params": params, "ms_per_step": ms,
                            "tokens_per_s": B * T / (ms / 1e3), "peak_rss_mib_process": rss})
            del model, opt
    with open(a.json, "w") as f:
        json.dump({"benchmark": "train_step", "backend": f"torch-{torch.__version__}-cpu-eager",
                   "threads": torch.get_num_threads(), "results": results}, f, indent=2)
    print(f"# wrote {a.json}")


if __name__ == "__main__":
    main()
