"""Train the demonstration StyleGAN2 generator on the shapes world (scripts/demo_world.py).

Method (a deliberate choice, see models/demo/README.md): the generator of the real architecture
(scripts/styleclip_export/stylegan2.py, rosinality's parameter names, mapping network included) is
trained as a *decoder* of the world's scenes, by regression, with no discriminator. Each
z ~ N(0, I) names one scene: after the mapping network's own pixel norm, coordinate 0 picks the
colour, 1 the shape, 2 the background (grey when it would equal the colour), 3 the size and 4-5 the
position, each by slicing the standard normal CDF into equal-probability pieces; the other
coordinates are ignored by the world. So G samples exactly the world's distribution and the tests'
measurer can judge its samples. Training in two stages (a first try end to end, z -> image, sat at
the mean image for 500 steps; the staged form learns in minutes):
  1. synthesis: W = a scene code (one-hot colour, shape and background, then size and position,
     scaled by 2, zeros elsewhere; for half the batch truncated toward the mean code by a random
     psi in [0.4, 1]; plus noise of std 0.05) broadcast to W+ -> image, pixel MSE + 0.5 L1
     against the rendered scene;
  2. mapping: z -> W regressed onto the same scene code (MSE in W), synthesis frozen;
  3. a short end-to-end pass z -> image at a low learning rate.
A GAN with R1 would also do but needs many more CPU hours for the same sample quality.

Training speed: modulated convolutions are computed in the input-scaling form (StyleGAN2 §2.2 /
appendix B: scale the input channels by s, convolve with the shared weight, scale the output by the
demodulation coefficients), which is the same function as the grouped form the exported module
uses but several times faster on a CPU. An exponential moving average of the weights (g_ema,
decay 0.999) is what gets exported.

Checkpoints every --ckpt-every steps into OUT/train_ckpt.pt and resumes when rerun. Writes
OUT/generator_ckpt.pt ({'g_ema', 'latent_avg'}: export with scripts/export_bundle.py --stylegan
... --lr-mlp 1), OUT/generator_history.json, OUT/generator_curves.png, OUT/samples_*.png and
OUT/generator_eval.json (the measurer's verdict on 500 samples).

  python3 scripts/demo_train_generator.py --out build/demo-train/generator
"""

import argparse
import json
import math
import os
import sys
import time
from typing import Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_world as world  # noqa: E402
from styleclip_export import stylegan2  # noqa: E402

RESOLUTION = 64
W_DIM = 64
N_MLP = 4
CHANNELS = {4: 128, 8: 128, 16: 96, 32: 48, 64: 24}
# lr multiplier of the mapping network: 1 here (not rosinality's 0.01) so that the mapping learns
# the scene coding at the same pace as the synthesis network; recorded for the exporter.
LR_MLP = 1.0


def scenes_from_z(z: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The world's scene for each latent z [N, W_DIM] (see the module docstring)."""
    zn = z * torch.rsqrt(torch.mean(z * z, dim=1, keepdim=True) + 1e-8)   # the mapping's PixelNorm
    u = 0.5 * (1 + torch.erf(zn[:, :6] / math.sqrt(2)))                  # standard normal CDF
    colour = (u[:, 0] * len(world.COLOURS)).long().clamp(0, len(world.COLOURS) - 1)
    shape = (u[:, 1] * len(world.SHAPES)).long().clamp(0, len(world.SHAPES) - 1)
    bg = (u[:, 2] * len(world.BACKGROUNDS)).long().clamp(0, len(world.BACKGROUNDS) - 1)
    grey = world.BACKGROUNDS.index("grey")
    bg = torch.where(bg == colour, torch.full_like(bg, grey), bg)
    return {"shape": shape, "colour": colour, "bg": bg, "size": u[:, 3], "x": u[:, 4], "y": u[:, 5]}


def _fast_modulated_forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """ModulatedConv2d.forward in the input-scaling form (same function, no grouped conv)."""
    w = self.scale * self.weight[0]                                       # [out, in, k, k]
    x = x * s.view(s.shape[0], -1, 1, 1)
    if self.upsample:
        out = F.conv_transpose2d(x, w.transpose(0, 1), padding=0, stride=2)
        out = self.blur(out)
    else:
        out = F.conv2d(x, w, padding=self.padding)
    if self.demodulate:
        d = torch.rsqrt((s * s) @ (w * w).sum(dim=[2, 3]).t() + 1e-8)     # [B, out]
        out = out * d.view(d.shape[0], -1, 1, 1)
    return out


def build(seed: int) -> stylegan2.Generator:
    torch.manual_seed(seed)
    return stylegan2.Generator(RESOLUTION, W_DIM, N_MLP, CHANNELS, lr_mlp=LR_MLP)


@torch.no_grad()
def evaluate(g, n: int = 500, seed: int = 4321) -> Dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W_DIM, generator=gen)
    want = scenes_from_z(z)
    images = torch.cat([(g.synthesis(g.mapping(z[i:i + 100].clone()).unsqueeze(1).repeat(1, g.num_ws, 1))
                         .clamp(-1, 1) + 1) / 2 for i in range(0, n, 100)])
    meas = world.measure(images)
    clean = world.is_clean(meas)
    target = world.render(want)
    return {"clean": float(clean.float().mean()),
            "colour_right": float((meas["nearest"] == want["colour"]).float().mean()),
            "mse_vs_scene": float(F.mse_loss(images, target)),
            "samples": n}


def scene_code(scenes: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The W vector stage 1 teaches the synthesis network for each scene (stage 2's target)."""
    n = scenes["shape"].shape[0]
    rows = torch.arange(n)
    c = torch.zeros(n, W_DIM)
    c[rows, scenes["colour"]] = 1
    c[rows, 8 + scenes["shape"]] = 1
    c[rows, 11 + scenes["bg"]] = 1
    c[:, 20] = scenes["size"] * 2 - 1
    c[:, 21] = scenes["x"] * 2 - 1
    c[:, 22] = scenes["y"] * 2 - 1
    return c * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--synthesis-steps", type=int, default=4000)
    ap.add_argument("--mapping-steps", type=int, default=3000)
    ap.add_argument("--joint-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mapping-batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--sample-every", type=int, default=1000)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    stylegan2.ModulatedConv2d.forward = _fast_modulated_forward
    n1, n2, n3 = args.synthesis_steps, args.mapping_steps, args.joint_steps
    total = n1 + n2 + n3

    g = build(args.seed)
    g_ema = build(args.seed)
    g_ema.load_state_dict(g.state_dict())
    for p in g_ema.parameters():
        p.requires_grad_(False)
    synth_params = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    map_params = [p for n, p in g.named_parameters() if n.startswith("style.")]
    opt_s = torch.optim.Adam(synth_params, lr=args.lr, betas=(0.9, 0.99))
    opt_m = torch.optim.Adam(map_params, lr=args.lr, betas=(0.9, 0.99))
    opt_j = torch.optim.Adam(g.parameters(), lr=args.lr * 0.05, betas=(0.9, 0.99))
    ckpt_path = os.path.join(args.out, "train_ckpt.pt")
    history = {"step": [], "loss": [], "stage": [], "wall_s": []}
    start, wall0 = 0, 0.0
    gen = torch.Generator().manual_seed(args.seed + 1)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        g.load_state_dict(ck["g"])
        g_ema.load_state_dict(ck["g_ema"])
        opt_s.load_state_dict(ck["opt_s"])
        opt_m.load_state_dict(ck["opt_m"])
        opt_j.load_state_dict(ck["opt_j"])
        start, history, wall0 = ck["step"], ck["history"], ck["wall_s"]
        gen.set_state(ck["gen"])
        print(f"resuming at step {start}", flush=True)

    def save(step: int, wall: float) -> None:
        tmp = ckpt_path + ".tmp"
        torch.save({"g": g.state_dict(), "g_ema": g_ema.state_dict(), "opt_s": opt_s.state_dict(),
                    "opt_m": opt_m.state_dict(), "opt_j": opt_j.state_dict(), "step": step,
                    "history": history, "wall_s": wall, "gen": gen.get_state()}, tmp)
        os.replace(tmp, ckpt_path)

    def cosine(step: int, n: int, lr: float) -> float:
        return lr * (0.5 * (1 + math.cos(math.pi * step / max(1, n))) * 0.9 + 0.1)

    fixed_z = torch.randn(32, W_DIM, generator=torch.Generator().manual_seed(999))
    code_mean = scene_code(scenes_from_z(torch.randn(20000, W_DIM, generator=torch.Generator().manual_seed(5)))).mean(0)
    t0 = time.time()
    for step in range(start, total):
        if step < n1:
            stage, opt, local, n, batch = "synthesis", opt_s, step, n1, args.batch
        elif step < n1 + n2:
            stage, opt, local, n, batch = "mapping", opt_m, step - n1, n2, args.mapping_batch
        else:
            stage, opt, local, n, batch = "joint", opt_j, step - n1 - n2, n3, args.batch
        base_lr = args.lr * (0.05 if stage == "joint" else 1.0)
        for group in opt.param_groups:
            group["lr"] = cosine(local, n, base_lr)
        z = torch.randn(batch, W_DIM, generator=gen)
        scenes = scenes_from_z(z)
        if stage == "mapping":
            loss = F.mse_loss(g.mapping(z), scene_code(scenes))
        else:
            target = world.render(scenes) * 2 - 1
            w = scene_code(scenes) if stage == "synthesis" else g.mapping(z)
            # Truncation toward the average code (psi in [0.4, 1] for half the batch) and a little
            # noise must give the same scene: `--truncation 0.7`, the default for seeds, and the
            # engines' edits move W off the exact codes.
            psi = torch.where(torch.rand(batch, 1, generator=gen) < 0.5,
                              0.4 + 0.6 * torch.rand(batch, 1, generator=gen), torch.ones(batch, 1))
            w = code_mean + psi * (w - code_mean) + 0.05 * torch.randn(w.shape, generator=gen)
            img = g.synthesis(w.unsqueeze(1).repeat(1, g.num_ws, 1))
            loss = F.mse_loss(img, target) + 0.5 * F.l1_loss(img, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            # EMA of the synthesis weights while they are trained; the mapping is copied (it is
            # a plain regression, no averaging needed).
            decay = min(0.999, (1 + step) / (10 + step)) if stage != "mapping" else 0.0
            for (name, pe), p in zip(g_ema.named_parameters(), g.parameters()):
                if stage == "mapping" and not name.startswith("style."):
                    continue
                pe.lerp_(p, 1 - decay)
            for be, b in zip(g_ema.buffers(), g.buffers()):
                be.copy_(b)
        wall = wall0 + time.time() - t0
        if step % 10 == 0 or step == total - 1:
            history["step"].append(step)
            history["loss"].append(float(loss))
            history["stage"].append(stage)
            history["wall_s"].append(wall)
        if step % 50 == 0:
            print(f"step {step}/{total} {stage} loss {float(loss):.4f} {wall:.0f}s", flush=True)
        if (step + 1) % args.sample_every == 0 or step + 1 in (n1, n1 + n2):
            with torch.no_grad():
                w = scene_code(scenes_from_z(fixed_z)) if step < n1 else g_ema.mapping(fixed_z)
                s = g_ema.synthesis(w.unsqueeze(1).repeat(1, g.num_ws, 1))
            world.write_png(os.path.join(args.out, f"samples_{step + 1:06d}.png"),
                            world.grid((s.clamp(-1, 1) + 1) / 2, 8))
        if (step + 1) % args.ckpt_every == 0:
            save(step + 1, wall)
    save(total, wall0 + time.time() - t0)

    g_ema.eval()
    result = evaluate(g_ema)
    result["wall_s"] = history["wall_s"][-1] if history["wall_s"] else 0.0
    print("quality:", json.dumps(result), flush=True)
    with torch.no_grad():
        latent_avg = g_ema.mapping(torch.randn(4096, W_DIM, generator=torch.Generator().manual_seed(7))).mean(0)
    out = os.path.join(args.out, "generator_ckpt.pt")
    torch.save({"g_ema": stylegan2.to_rosinality_state_dict(g_ema), "latent_avg": latent_avg,
                "lr_mlp": LR_MLP}, out + ".tmp")
    os.replace(out + ".tmp", out)
    stages = {st: [v if h == st else float("nan") for v, h in zip(history["loss"], history["stage"])]
              for st in ("synthesis", "mapping", "joint")}
    world.save_training_record(args.out, "generator", {
        "channels": CHANNELS, "w_dim": W_DIM, "n_mlp": N_MLP, "lr_mlp": LR_MLP, "args": vars(args),
        "history": history, "quality": result}, stages, result)

if __name__ == "__main__":
    main()
