#!/usr/bin/python3
"""Engine 2's training step and inference written in Python/PyTorch (the reference's
LevelsMapper and coach.py loss), on the same TorchScript generator/CLIP and the same initial
mapper, latents and text as bench_mapper (its --dump folder). Prints one JSON object."""

import argparse
import contextlib
import json
import math
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    def __init__(self, w_dim, lr_mul=0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(w_dim, w_dim))
        self.bias = nn.Parameter(torch.zeros(w_dim))
        self.scale = lr_mul / math.sqrt(w_dim)
        self.lr_mul = lr_mul

    def forward(self, x):
        return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul, 0.2) * math.sqrt(2)


class Group(nn.Module):
    def __init__(self, w_dim):
        super().__init__()
        self.layers = nn.ModuleList(EqualLinear(w_dim) for _ in range(4))

    def forward(self, x):
        x = x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)  # over the group's rows
        for layer in self.layers:
            x = layer(x)
        return x


class LevelsMapper(nn.Module):
    def __init__(self, state, num_ws, w_dim):
        super().__init__()
        names = {"coarse": "course_mapping", "medium": "medium_mapping", "fine": "fine_mapping"}
        self.spans = {"coarse": (0, 4), "medium": (4, 8), "fine": (8, num_ws)}
        self.groups = nn.ModuleDict()
        for g in state["groups"]:
            m = Group(w_dim)
            for i in range(4):
                m.layers[i].weight.data.copy_(state["state_dict"][f"{names[g]}.mapping.{i + 1}.weight"])
                m.layers[i].bias.data.copy_(state["state_dict"][f"{names[g]}.mapping.{i + 1}.bias"])
            self.groups[g] = m

    def forward(self, w):
        out = torch.zeros_like(w)
        for g, m in self.groups.items():
            a, b = self.spans[g]
            if b > a:
                out[:, a:b] = m(w[:, a:b])
        return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", required=True)
    p.add_argument("--dump", required=True)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--infer-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp16"], default="fp32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    getattr(torch._C, "_set_graph_executor_optimize", lambda _: None)(False)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def scope():
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
        if a.precision in ("bf16", "fp16"):
            return torch.autocast(dev.type, dtype=torch.bfloat16 if a.precision == "bf16" else torch.float16)
        return contextlib.nullcontext()

    g = torch.jit.load(f"{a.models}/generator.pt", map_location=dev).eval()
    c = torch.jit.load(f"{a.models}/clip.pt", map_location=dev).eval()
    for m in (g, c):
        for q in m.parameters():
            q.requires_grad_(False)
    state = torch.load(f"{a.dump}/mapper0.pt")
    latents = torch.load(f"{a.dump}/latents.pt").to(dev)
    text = torch.load(f"{a.dump}/text.pt").to(dev)
    mapper = LevelsMapper(state, state["num_ws"], state["w_dim"]).to(dev)
    res = c.image_resolution
    size = g.synthesis(latents[:1], False).shape[-1]
    gcd = math.gcd(size, res)
    u, k = res // gcd, size // gcd
    r = torch.zeros(res, size, dtype=torch.float64)
    for i in range(res):
        for y in range(k * i, k * i + k):
            r[i, y // u] += 1.0 / k
    r = r.float().to(dev)
    opt = torch.optim.Adam(mapper.parameters(), lr=0.01)

    def step(s):
        w = latents[(s * a.batch) % 64:(s * a.batch) % 64 + a.batch]
        opt.zero_grad()
        with scope():
            w_hat = w + 0.1 * mapper(w)
            x = g.synthesis(w_hat, False)
            e = c.encode_image(r @ x @ r.t()).float()
        w_hat = w_hat.float()
        clip = (1 - F.cosine_similarity(e, text.expand_as(e), dim=1)).mean()
        loss = clip + 0.8 * F.mse_loss(w_hat, w)
        loss.backward()
        opt.step()
        return float(loss)

    for s in range(a.warmup):
        step(s)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.time()
    for s in range(a.warmup, a.warmup + a.steps):
        last = step(s)
    sync()
    train_s = time.time() - t0
    train_peak = torch.cuda.max_memory_allocated(dev) / 1048576.0 if cuda else None
    with torch.no_grad(), scope():
        x = latents.repeat((a.infer_batch + 63) // 64, 1, 1)[:a.infer_batch]
        g.synthesis(x + 0.1 * mapper(x), False)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.time()
        for _ in range(5):
            g.synthesis(x + 0.1 * mapper(x), False)
        sync()
        infer_s = (time.time() - t0) / 5
    infer_peak = torch.cuda.max_memory_allocated(dev) / 1048576.0 if cuda else None
    print(json.dumps({"impl": "python", "device": str(dev), "precision": a.precision,
                      "train_peak_device_mb": train_peak, "infer_peak_device_mb": infer_peak,
                      "train_steps_per_second": a.steps / train_s,
                      "train_ms_per_step": train_s / a.steps * 1e3, "final_loss": last,
                      "infer_latents_per_second": a.infer_batch / infer_s, "batch": a.batch,
                      "infer_batch": a.infer_batch,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "threads": a.threads}))


if __name__ == "__main__":
    main()
