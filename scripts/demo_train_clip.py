"""Train the demonstration CLIP on the shapes world (scripts/demo_world.py).

1. Learns a byte-pair vocabulary from the world's own captions and writes it in CLIP's merges-file
   format (`vocab.txt.gz`: a header line, then one "left right" merge per line, in rank order), so
   the project's tokenizer reads it unchanged. Token ids follow openai/CLIP simple_tokenizer.py:
   256 byte symbols, the same with "</w>", one per merge, then <|startoftext|>, <|endoftext|>.
2. Trains a CLIP of the real architecture (scripts/styleclip_export/clip.py, OpenAI's parameter
   names) contrastively (CLIP paper §2.3: symmetric cross-entropy over the batch's image-text
   similarities, learned temperature) on freshly rendered image-caption pairs every step.
   Images are shown half the time as CLIP-normalised pixels and half the time as the raw [-1, 1]
   generator range, because StyleCLIP's optimisation and mapper losses feed raw generator output
   to CLIP (docs/algorithms.md §1) while the global directions use full preprocessing.
3. Zero-shot check on 500 fresh scenes: the right colour word among the 8 ("a red shape"...) and
   the right shape among the 3 ("a circle"...), for both input conventions.

Checkpoints every --ckpt-every steps into OUT/train_ckpt.pt and resumes from it when rerun.
Writes OUT/vocab.txt.gz, OUT/clip_state_dict.pt (export with scripts/export_bundle.py --clip),
OUT/clip_history.json, OUT/clip_curves.png, OUT/clip_eval.json.

  python3 scripts/demo_train_clip.py --out build/demo-train --steps 4000
"""

import argparse
import collections
import gzip
import json
import math
import os
import random
import re
import sys
import time
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_world as world  # noqa: E402
from styleclip_export import clip as clipmod  # noqa: E402

CONFIG = {
    "embed_dim": 64, "image_resolution": 64, "vision_kind": "vit", "vision_layers": 4,
    "vision_width": 64, "vision_patch_size": 8, "vision_heads": 1, "context_length": 32,
    "transformer_width": 64, "transformer_heads": 2, "transformer_layers": 4,
}
# The ViT above learned colour (100 % zero-shot) but not shape (46 %; a linear probe on its
# embeddings: 50 %) in 4000 steps: 8x8 patches through one 64-wide head did not pick up the
# outlines. OpenAI's ModifiedResNet tower (same exporter, same C++ code) is the default.
RESNET_CONFIG = dict(CONFIG, vision_kind="resnet", vision_layers=[1, 1, 1, 1], vision_width=16,
                     vision_patch_size=None, vision_heads=16 * 32 // 64)

# ---- byte-pair vocabulary ------------------------------------------------------------------

# openai/CLIP simple_tokenizer.py's pattern, restricted to what our captions contain (ASCII).
_WORD = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def bytes_to_unicode() -> Dict[int, str]:
    """simple_tokenizer.py's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def words_of(text: str) -> List[str]:
    return _WORD.findall(" ".join(text.lower().split()))


def learn_bpe(captions: List[str], max_merges: int, min_count: int = 2) -> List[Tuple[str, str]]:
    """Greedy byte-pair merges (Sennrich et al. 2016) over the captions' words, most frequent first."""
    b2u = bytes_to_unicode()
    counts = collections.Counter()
    for c in captions:
        for w in words_of(c):
            sym = [b2u[b] for b in w.encode("utf-8")]
            counts[tuple(sym[:-1] + [sym[-1] + "</w>"])] += 1
    vocab = dict(counts)
    merges: List[Tuple[str, str]] = []
    while len(merges) < max_merges:
        pairs = collections.Counter()
        for word, n in vocab.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        # Most frequent pair; ties broken by the pair itself so the result is reproducible.
        best, n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if n < min_count:
            break
        merges.append(best)
        joined = best[0] + best[1]
        new_vocab = {}
        for word, cnt in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_vocab[tuple(out)] = new_vocab.get(tuple(out), 0) + cnt
        vocab = new_vocab
    return merges


def write_merges(path: str, merges: List[Tuple[str, str]]) -> None:
    tmp = path + ".tmp"
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2 - styleclip demonstration vocabulary, learned from the shapes world's captions\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    os.replace(tmp, path)


class Tokenizer:
    """openai/CLIP simple_tokenizer.py's encoding for ASCII text (the demo captions)."""

    def __init__(self, merges: List[Tuple[str, str]], context_length: int):
        self.b2u = bytes_to_unicode()
        base = list(self.b2u.values())
        vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = len(vocab) - 2, len(vocab) - 1
        self.vocab_size = len(vocab)
        self.context_length = context_length
        self.cache: Dict[str, List[str]] = {}

    def bpe(self, word: str) -> List[str]:
        if word in self.cache:
            return self.cache[word]
        sym = [self.b2u[b] for b in word.encode("utf-8")]
        parts = sym[:-1] + [sym[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, _ = min(pairs)
            if rank == math.inf:
                break
            a, b = min(((a, b) for a, b in zip(parts, parts[1:])), key=lambda p: self.ranks.get(p, math.inf))
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        self.cache[word] = parts
        return parts

    def encode(self, text: str) -> List[int]:
        return [self.encoder[p] for w in words_of(text) for p in self.bpe(w)]

    def __call__(self, texts: List[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.int64)
        for i, t in enumerate(texts):
            ids = [self.sot] + self.encode(t)[:self.context_length - 2] + [self.eot]
            out[i, :len(ids)] = torch.tensor(ids)
        return out


# ---- training ------------------------------------------------------------------------------

MEAN = torch.tensor(clipmod.IMAGE_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(clipmod.IMAGE_STD).view(1, 3, 1, 1)


def clip_input(images01: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """images in [0, 1] -> CLIP input: rows with raw=True as [-1, 1], others normalised."""
    norm = (images01 - MEAN) / STD
    return torch.where(raw.view(-1, 1, 1, 1), images01 * 2 - 1, norm)


def batch(n: int, gen: torch.Generator, rng: random.Random, tok: Tokenizer, hard: float = 0.0):
    """Fresh image-caption pairs; a fraction `hard` of them in groups that differ only in shape
    (captions naming the shape), so that the batch cannot be solved by colour alone."""
    n_hard = int(n * hard) // 3 * 3
    easy = world.random_scenes(n - n_hard, gen)
    if n_hard > 0:
        groups = world.shape_groups(n_hard, gen)
        scenes = {k: torch.cat([easy[k], groups[k]]) for k in easy}
    else:
        scenes = easy
    images = world.render(scenes)
    # Mild pixel noise so that a generator's small imperfections are not out of distribution.
    images = (images + 0.02 * torch.randn(images.shape, generator=gen)).clamp(0, 1)
    raw = torch.rand(n, generator=gen) < 0.5
    texts = [world.caption(scenes, i, rng, name_shape=i >= n - n_hard) for i in range(n)]
    return clip_input(images, raw), tok(texts)


@torch.no_grad()
def zero_shot(model, tok: Tokenizer, n: int = 500, seed: int = 12345) -> Dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    scenes = world.random_scenes(n, gen)
    images = world.render(scenes)
    colour_txt = F.normalize(model.encode_text(tok([f"a {c} shape" for c in world.COLOURS])), dim=-1)
    shape_txt = F.normalize(model.encode_text(tok([f"a {s}" for s in world.SHAPES])), dim=-1)
    out = {}
    for name, raw in (("normalized", False), ("raw", True)):
        img = F.normalize(model.encode_image(clip_input(images, torch.full((n,), raw))), dim=-1)
        out[f"colour_{name}"] = float(((img @ colour_txt.t()).argmax(1) == scenes["colour"]).float().mean())
        out[f"shape_{name}"] = float(((img @ shape_txt.t()).argmax(1) == scenes["shape"]).float().mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--merges", type=int, default=400, help="at most this many BPE merges")
    ap.add_argument("--hard-negatives", type=float, default=0.5,
                    help="fraction of each batch in groups that differ only in shape")
    ap.add_argument("--hard-from", type=int, default=0, help="first step that uses them")
    ap.add_argument("--vision", choices=["resnet", "vit"], default="resnet", help="the image tower")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    vocab_path = os.path.join(args.out, "vocab.txt.gz")
    merges = learn_bpe(world.caption_corpus(50000, seed=args.seed + 1), args.merges)
    write_merges(vocab_path, merges)
    tok = Tokenizer(merges, CONFIG["context_length"])
    cfg = dict(RESNET_CONFIG if args.vision == "resnet" else CONFIG, vocab_size=tok.vocab_size)
    print(f"vocabulary: {len(merges)} merges, {tok.vocab_size} tokens -> {vocab_path}", flush=True)

    torch.manual_seed(args.seed)
    sd = clipmod.random_clip_state_dict(
        seed=args.seed, embed_dim=cfg["embed_dim"], image_resolution=cfg["image_resolution"],
        vision_layers=cfg["vision_layers"], vision_width=cfg["vision_width"],
        vision_patch_size=cfg["vision_patch_size"], context_length=cfg["context_length"],
        vocab_size=cfg["vocab_size"], transformer_width=cfg["transformer_width"],
        transformer_heads=cfg["transformer_heads"], transformer_layers=cfg["transformer_layers"])
    for k in sd:                      # plain LayerNorm init (the random helper perturbs them)
        if ".ln_" in k or k.startswith("ln_"):
            sd[k] = torch.ones_like(sd[k]) if k.endswith("weight") else torch.zeros_like(sd[k])
    model = clipmod.CLIP(cfg)
    model.load_state_dict(sd)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    ckpt_path = os.path.join(args.out, "train_ckpt.pt")
    history = {"step": [], "loss": [], "acc": [], "wall_s": []}
    start, wall0 = 0, 0.0
    gen = torch.Generator().manual_seed(args.seed + 2)
    rng = random.Random(args.seed + 3)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, history, wall0 = ck["step"], ck["history"], ck["wall_s"]
        gen.set_state(ck["gen"])
        rng.setstate(ck["rng"])
        print(f"resuming at step {start}", flush=True)

    def save(step: int, wall: float) -> None:
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "history": history,
                    "wall_s": wall, "gen": gen.get_state(), "rng": rng.getstate(), "config": cfg}, tmp)
        os.replace(tmp, ckpt_path)

    warmup = max(1, args.steps // 20)
    t0 = time.time()
    model.train()
    for step in range(start, args.steps):
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        images, tokens = batch(args.batch, gen, rng, tok, args.hard_negatives if step >= args.hard_from else 0.0)
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
        labels = torch.arange(args.batch)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        wall = wall0 + time.time() - t0
        if step % 10 == 0 or step == args.steps - 1:
            acc = float((logits.argmax(1) == labels).float().mean())
            history["step"].append(step)
            history["loss"].append(float(loss))
            history["acc"].append(acc)
            history["wall_s"].append(wall)
        if step % 50 == 0:
            print(f"step {step}/{args.steps} loss {float(loss):.4f} lr {lr:.2e} {wall:.0f}s", flush=True)
        if (step + 1) % args.ckpt_every == 0:
            save(step + 1, wall)
    save(args.steps, wall0 + time.time() - t0)

    model.eval()
    result = zero_shot(model, tok)
    result["wall_s"] = history["wall_s"][-1] if history["wall_s"] else 0.0
    print("zero-shot:", json.dumps(result), flush=True)
    sd_path = os.path.join(args.out, "clip_state_dict.pt")
    torch.save(model.state_dict(), sd_path + ".tmp")
    os.replace(sd_path + ".tmp", sd_path)
    world.save_training_record(args.out, "clip", {"config": cfg, "args": vars(args), "history": history,
                                                  "zero_shot": result}, {"loss": history["loss"]}, result)

if __name__ == "__main__":
    main()
