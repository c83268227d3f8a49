"""The demonstration world: one coloured shape on a plain background, its captions, and a measurer.

Used to train the demonstration CLIP and generator in `models/demo/` (see models/demo/README.md),
and by the semantic tests as an independent judge: the measurer reads colour, area, centroid and
background straight from pixel statistics, with no learned part.

Images are 64x64 RGB, rendered 4x supersampled (anti-aliased edges). A scene is
  shape       circle | square | triangle
  colour      one of PALETTE (8 named colours)
  background  one of BACKGROUNDS (the palette plus grey; never the shape's colour)
  size        0..1, continuous (half-extent 7.7 .. 21.8 px)
  position    0..1 in x and y, continuous, over the range that keeps the shape inside the image

Run as a script to write a contact sheet and example captions:
  python3 scripts/demo_world.py --sheet /tmp/world.png
"""

import argparse
import math
import os
import random
import re
import struct
import zlib
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

RESOLUTION = 64

PALETTE: Dict[str, tuple] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS: List[str] = list(PALETTE)
BACKGROUNDS: List[str] = COLOURS + ["grey"]
BG_RGB: Dict[str, tuple] = dict(PALETTE, grey=(128, 128, 128))
SHAPES: List[str] = ["circle", "square", "triangle"]

SHAPE_WORDS = {"circle": ["circle", "disc"], "square": ["square", "box"], "triangle": ["triangle"]}
COLOUR_WORDS = {c: [c] for c in COLOURS}
COLOUR_WORDS["purple"] = ["purple", "violet"]
COLOUR_WORDS["grey"] = ["grey", "gray"]
BG_WORDS = dict(COLOUR_WORDS)


def palette_tensor(names: List[str]) -> torch.Tensor:
    """[len(names), 3] colours in [0, 1]."""
    return torch.tensor([BG_RGB[n] for n in names], dtype=torch.float32) / 255.0


# ---- scenes --------------------------------------------------------------------------------


def random_scenes(n: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
    """n scenes drawn uniformly (shape, colour, background != colour, size, position)."""
    shape = torch.randint(0, len(SHAPES), (n,), generator=gen)
    colour = torch.randint(0, len(COLOURS), (n,), generator=gen)
    # Background: any of the 9 but the shape's colour (draw from 8, skip over the colour).
    bg = torch.randint(0, len(BACKGROUNDS) - 1, (n,), generator=gen)
    bg = bg + (bg >= colour).long()
    u = torch.rand(n, 3, generator=gen)
    return {"shape": shape, "colour": colour, "bg": bg, "size": u[:, 0], "x": u[:, 1], "y": u[:, 2]}


def shape_groups(n: int, gen: torch.Generator, group: int = 3) -> Dict[str, torch.Tensor]:
    """n scenes in groups of `group` that share colour, background and size but not shape (one
    of each shape per group, positions drawn afresh): hard negatives for contrastive training."""
    base = random_scenes((n + group - 1) // group, gen)
    out = {k: v.repeat_interleave(group)[:n].clone() for k, v in base.items()}
    out["shape"] = (torch.arange(n) % group + torch.randint(0, len(SHAPES), (1,), generator=gen)) % len(SHAPES)
    u = torch.rand(n, 2, generator=gen)
    out["x"], out["y"] = u[:, 0], u[:, 1]
    return out


def half_extent(size: torch.Tensor, res: int = RESOLUTION) -> torch.Tensor:
    return (0.12 + 0.22 * size) * res


def render(scenes: Dict[str, torch.Tensor], res: int = RESOLUTION, supersample: int = 4) -> torch.Tensor:
    """Scenes -> images [N, 3, res, res] in [0, 1] (anti-aliased by supersampling)."""
    n = scenes["shape"].shape[0]
    ss = res * supersample
    r = half_extent(scenes["size"], res)                      # [N] px
    margin = 1.2 * r + 1.0
    cx = margin + scenes["x"] * (res - 2 * margin)
    cy = margin + scenes["y"] * (res - 2 * margin)
    coords = (torch.arange(ss, dtype=torch.float32) + 0.5) / supersample
    dx = coords.view(1, 1, ss) - cx.view(n, 1, 1)
    dy = coords.view(1, ss, 1) - cy.view(n, 1, 1)
    rr = r.view(n, 1, 1)
    circle = dx * dx + dy * dy <= rr * rr
    # Same area as the circle: side sqrt(pi) r.
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.5 * math.sqrt(math.pi) * rr
    # Equilateral, apex up, circumradius 1.2 r: inside all three edges (inradius 0.6 r).
    rho = 1.2 * rr
    tri = (dy <= 0.5 * rho) & (0.8660254 * dx - 0.5 * dy <= 0.5 * rho) & (-0.8660254 * dx - 0.5 * dy <= 0.5 * rho)
    kind = scenes["shape"].view(n, 1, 1)
    mask = torch.where(kind == 0, circle, torch.where(kind == 1, square, tri)).float()
    cover = F.avg_pool2d(mask.unsqueeze(1), supersample)        # [N, 1, res, res]
    # Explicit RGB (a blend of two palette colours, for the generator's training) wins over the index.
    fg = scenes["fg_rgb"] if "fg_rgb" in scenes else palette_tensor(COLOURS)[scenes["colour"]]
    bg = scenes["bg_rgb"] if "bg_rgb" in scenes else palette_tensor(BACKGROUNDS)[scenes["bg"]]
    fg, bg = fg.view(n, 3, 1, 1), bg.view(n, 3, 1, 1)
    return bg * (1 - cover) + fg * cover


# ---- captions ------------------------------------------------------------------------------

_TEMPLATES = [
    "a {size}{colour} {shape} on a {bg} background",
    "a {size}{colour} {shape}",
    "{colour} {shape} on {bg}",
    "a {shape} that is {colour}",
    "a {colour} {shape} with a {bg} background",
    "a {bg} background with a {size}{colour} {shape}",
    "a {colour} shape",
    "a {size}{colour} shape on a {bg} background",
    "a {size}{shape}",
    "a {size}shape",
    "a {colour} {shape} in the {where}",
    "{size}{colour} {shape}",
    "a {shape} on a {bg} background",
    "a {colour} object",
]
_WRAPPERS = ["{}", "{}", "{}", "a photo of {}.", "a picture of {}.", "an image of {}.", "{}."]


def size_word(size: float, rng: random.Random) -> str:
    if size < 0.3:
        return rng.choice(["small ", "little ", "tiny "])
    if size > 0.7:
        return rng.choice(["large ", "big ", "huge "])
    return rng.choice(["", "", "medium "])


def where_word(x: float, y: float) -> str:
    row = "top" if y < 0.33 else ("bottom" if y > 0.67 else "middle")
    col = "left" if x < 0.33 else ("right" if x > 0.67 else "centre")
    if row == "middle" and col == "centre":
        return "centre"
    if row == "middle":
        return col
    if col == "centre":
        return row
    return f"{row} {col}"


def caption(scenes: Dict[str, torch.Tensor], i: int, rng: random.Random, name_shape: bool = False) -> str:
    """One varied English caption for scene i (with `name_shape`, one that names the shape)."""
    shape = SHAPES[int(scenes["shape"][i])]
    colour = COLOURS[int(scenes["colour"][i])]
    bg = BACKGROUNDS[int(scenes["bg"][i])]
    size = float(scenes["size"][i])
    templates = [t for t in _TEMPLATES if "{shape}" in t] if name_shape else _TEMPLATES
    text = rng.choice(templates).format(
        size=size_word(size, rng), colour=rng.choice(COLOUR_WORDS[colour]),
        shape=rng.choice(SHAPE_WORDS[shape]), bg=rng.choice(BG_WORDS[bg]),
        where=where_word(float(scenes["x"][i]), float(scenes["y"][i])))
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)              # "an orange", "an image"
    return rng.choice(_WRAPPERS).format(text)


def caption_corpus(n: int, seed: int) -> List[str]:
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    scenes = random_scenes(n, gen)
    return [caption(scenes, i, rng) for i in range(n)]


# ---- the measurer --------------------------------------------------------------------------


def measure(images: torch.Tensor, threshold: float = 0.25) -> Dict[str, torch.Tensor]:
    """Pixel statistics of images [N, 3, H, W] in [0, 1] (no learning).

    background   median colour of the 1-px border, [N, 3]
    mask         pixels farther than `threshold` (RGB distance) from the background
    colour       median colour of the mask, [N, 3]
    area         mask fraction of the image, [N]
    centroid     mask centre (x, y) in pixels, [N, 2]
    bg_spread    mean distance of border pixels from the background colour, [N]
    fg_spread    mean distance of the mask's inner pixels from the shape colour, [N]
    nearest      index into COLOURS of the palette colour nearest the shape colour, [N]
    palette_dist distance of the shape colour from that palette colour, [N]
    """
    n, _, h, w = images.shape
    border = torch.cat([images[:, :, 0, :], images[:, :, -1, :], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values
    bg_spread = (border - bg.unsqueeze(2)).norm(dim=1).mean(dim=1)
    dist = (images - bg.view(n, 3, 1, 1)).norm(dim=1)            # [N, H, W]
    mask = dist > threshold
    area = mask.float().mean(dim=(1, 2))
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1) + 0.5
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w) + 0.5
    m = mask.float()
    cnt = m.sum(dim=(1, 2)).clamp_min(1)
    centroid = torch.stack([(m * xs).sum(dim=(1, 2)) / cnt, (m * ys).sum(dim=(1, 2)) / cnt], dim=1)
    # Inner pixels (mask eroded by one) avoid the anti-aliased rim.
    inner = -F.max_pool2d(-m.unsqueeze(1), 3, 1, 1).squeeze(1) > 0.5
    colour = torch.zeros(n, 3)
    fg_spread = torch.zeros(n)
    for i in range(n):
        sel = inner[i] if inner[i].sum() >= 4 else mask[i]
        if sel.sum() == 0:
            colour[i] = bg[i]
            fg_spread[i] = float("inf")
            continue
        px = images[i][:, sel]                                    # [3, K]
        colour[i] = px.median(dim=1).values
        fg_spread[i] = (px - colour[i].view(3, 1)).norm(dim=0).mean()
    pal = palette_tensor(COLOURS)
    d = torch.cdist(colour, pal)
    nearest = d.argmin(dim=1)
    return {"background": bg, "mask": mask, "colour": colour, "area": area, "centroid": centroid,
            "bg_spread": bg_spread, "fg_spread": fg_spread, "nearest": nearest,
            "palette_dist": d.gather(1, nearest.view(-1, 1)).squeeze(1)}


def is_clean(meas: Dict[str, torch.Tensor]) -> torch.Tensor:
    """One clean shape on a uniform background with a colour near the palette: [N] bool.

    Bounds (fixed before any generator was trained): the border within 0.06 of its median,
    the shape's inner pixels within 0.10 of their median, the shape colour within 0.15 of a
    palette colour, and an area between 1 % and 60 % of the image.
    """
    return ((meas["bg_spread"] < 0.06) & (meas["fg_spread"] < 0.10) & (meas["palette_dist"] < 0.15)
            & (meas["area"] > 0.01) & (meas["area"] < 0.60))


# ---- PNG without extra packages ------------------------------------------------------------


def write_png(path: str, image: torch.Tensor) -> None:
    """image [3, H, W] in [0, 1] -> 8-bit RGB PNG."""
    img = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous()
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + bytes(img[y].flatten().tolist()) for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def grid(images: torch.Tensor, cols: int, pad: int = 2) -> torch.Tensor:
    n, c, h, w = images.shape
    rows = (n + cols - 1) // cols
    out = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, cols)
        out[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return out


def plot_curves(path: str, series: Dict[str, List[float]], width: int = 480, height: int = 240,
                log: bool = True) -> None:
    """A plain line chart (one colour per series, no labels) written as PNG; the legend goes in
    the README beside it."""
    colours = [(0.85, 0.2, 0.2), (0.2, 0.4, 0.9), (0.2, 0.7, 0.3), (0.9, 0.6, 0.1), (0.6, 0.2, 0.8)]
    img = torch.ones(3, height, width)
    vals = [v for s in series.values() for v in s if v == v and (v > 0 or not log)]
    if not vals:
        write_png(path, img)
        return
    tf = (lambda v: math.log10(v)) if log else (lambda v: v)
    lo, hi = min(tf(v) for v in vals), max(tf(v) for v in vals)
    hi = hi if hi > lo else lo + 1
    for gy in range(1, 4):                                        # light grid
        img[:, gy * height // 4, :] = 0.9
    for k, s in enumerate(series.values()):
        col = torch.tensor(colours[k % len(colours)]).view(3, 1)
        pts = [(i * (width - 1) / max(1, len(s) - 1), (height - 1) * (1 - (tf(v) - lo) / (hi - lo)))
               for i, v in enumerate(s) if v == v and (v > 0 or not log)]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
            for t in range(steps + 1):
                x = int(round(x0 + (x1 - x0) * t / steps))
                y = int(round(y0 + (y1 - y0) * t / steps))
                img[:, max(0, y - 1):y + 1, x] = col
    write_png(path, img)


def save_training_record(out_dir: str, prefix: str, record: dict, curves: Dict[str, List[float]],
                         result: dict) -> None:
    """A training run's record: PREFIX_history.json (everything), PREFIX_curves.png, PREFIX_eval.json."""
    import json
    with open(os.path.join(out_dir, f"{prefix}_history.json"), "w") as f:
        json.dump(record, f)
    plot_curves(os.path.join(out_dir, f"{prefix}_curves.png"), curves)
    with open(os.path.join(out_dir, f"{prefix}_eval.json"), "w") as f:
        json.dump(result, f, indent=1)


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sheet", help="write a contact sheet of 32 scenes here (PNG)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", type=int, default=0, metavar="N",
                    help="render N scenes and report how many the measurer calls clean")
    args = ap.parse_args(argv)
    gen = torch.Generator().manual_seed(args.seed)
    rng = random.Random(args.seed)
    scenes = random_scenes(32, gen)
    images = render(scenes)
    for i in range(8):
        print(caption(scenes, i, rng))
    if args.sheet:
        write_png(args.sheet, grid(images, 8))
        print(f"wrote {args.sheet}")
    if args.check:
        sc = random_scenes(args.check, gen)
        meas = measure(render(sc))
        clean = is_clean(meas)
        right = meas["nearest"] == sc["colour"]
        print(f"clean {clean.float().mean():.3f}, colour right {right.float().mean():.3f}")


if __name__ == "__main__":
    main()
