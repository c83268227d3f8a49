#!/usr/bin/env python3
"""Checks the shipped demonstration bundle (models/demo) with the shapes world's measurer as judge.

  /usr/bin/python3 tests/python/test_demo_bundle.py BUILD/src/styleclip [MODELS_DIR]

Every threshold below was written down before the bundle's results were seen (models/demo/README.md
records the measured rates); none is tuned after the fact.

* generator quality: of 500 samples, >= 90 % are one clean shape on a uniform background with a
  colour near the palette (demo_world.is_clean), at truncation 1; >= 80 % at truncation 0.7
  (what `--seed` renders by default);
* CLIP zero-shot on 500 fresh scenes: the right colour word among the 8 >= 90 %, the right shape
  among the 3 >= 80 %;
* the C++ tokenizer gives the Python tokenizer's ids on 200 captions;
* semantic edits, 20 seeds each, through the real command line:
  - toward a colour (optimize and global: "a blue shape"; the shipped mapper: "a red shape"): the
    shape's measured colour gets closer to that palette colour in >= 80 % of the seeds whose
    shape was not already that colour; the background colour moves by a median RGB distance
    < 0.20 (of the [0, 1] range) and the centroid by a median < 6 px;
  - "a large shape" / "a small shape" (optimize and global): the measured area grows / shrinks in
    >= 70 % of the seeds.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import demo_world as world  # noqa: E402
from demo_train_clip import Tokenizer, clip_input  # noqa: E402

BINARY = None
MODELS = os.path.join(ROOT, "models", "demo")
SEEDS = "0-19"


def read_png(path: str) -> torch.Tensor:
    from PIL import Image  # python3-pil (scripts/install_deps.sh)
    import numpy as np
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def load_tokenizer(context_length: int) -> Tokenizer:
    import gzip
    with gzip.open(os.path.join(MODELS, "vocab.txt.gz"), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    merges = [tuple(line.split()) for line in lines if line.strip()]
    return Tokenizer(merges, context_length)


def run(args):
    r = subprocess.run([BINARY] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"styleclip {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r


def before_after(out_dir: str, tag: str, n: int):
    """The before | after halves of each seed's compare image, measured."""
    before, after = [], []
    for s in range(n):
        pair = read_png(os.path.join(out_dir, f"seed{s:04d}.{tag}.compare.png"))
        w = pair.shape[2] // 2
        before.append(pair[:, :, :w])
        after.append(pair[:, :, w:])
    return world.measure(torch.stack(before)), world.measure(torch.stack(after))


class DemoBundle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isfile(os.path.join(MODELS, "manifest.json")):
            raise unittest.SkipTest(f"no demonstration bundle at {MODELS}")
        cls.manifest = json.load(open(os.path.join(MODELS, "manifest.json")))
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    # ---- the models themselves ------------------------------------------------------------

    def test_generator_sample_quality(self):
        g = torch.jit.load(os.path.join(MODELS, "generator.pt"))
        z = torch.randn(500, self.manifest["generator"]["z_dim"], generator=torch.Generator().manual_seed(2024))
        for psi, need in ((1.0, 0.90), (0.7, 0.80)):
            with torch.no_grad():
                w = g.mapping(z)
                w = g.w_avg + psi * (w - g.w_avg)
                ws = w.unsqueeze(1).repeat(1, self.manifest["generator"]["num_ws"], 1)
                images = torch.cat([g.synthesis(ws[i:i + 100], False) for i in range(0, 500, 100)])
            clean = float(world.is_clean(world.measure(((images.clamp(-1, 1) + 1) / 2))).float().mean())
            print(f"generator: {clean:.1%} clean samples at truncation {psi}", file=sys.stderr)
            self.assertGreaterEqual(clean, need, f"truncation {psi}")

    def test_clip_zero_shot(self):
        clip = torch.jit.load(os.path.join(MODELS, "clip.pt"))
        tok = load_tokenizer(self.manifest["clip"]["config"]["context_length"])
        gen = torch.Generator().manual_seed(777)
        scenes = world.random_scenes(500, gen)
        images = world.render(scenes)
        with torch.no_grad():
            ct = F.normalize(clip.encode_text(tok([f"a {c} shape" for c in world.COLOURS])), dim=-1)
            st = F.normalize(clip.encode_text(tok([f"a {s}" for s in world.SHAPES])), dim=-1)
            img = F.normalize(clip.encode_image(clip_input(images, torch.zeros(500, dtype=torch.bool))), dim=-1)
        colour = float(((img @ ct.t()).argmax(1) == scenes["colour"]).float().mean())
        shape = float(((img @ st.t()).argmax(1) == scenes["shape"]).float().mean())
        print(f"clip zero-shot: colour {colour:.1%}, shape {shape:.1%}", file=sys.stderr)
        self.assertGreaterEqual(colour, 0.90)
        self.assertGreaterEqual(shape, 0.80)

    def test_cpp_tokenizer_matches_python(self):
        tok = load_tokenizer(self.manifest["clip"]["config"]["context_length"])
        captions = world.caption_corpus(200, seed=99)
        out = run(["tokenize", "--models", MODELS, "--json"] + captions).stdout.strip().split("\n")
        self.assertEqual(len(out), len(captions))
        expected = tok(captions)
        for line, caption, ids in zip(out, captions, expected):
            got = json.loads(line)["ids"]
            self.assertEqual(got, ids.tolist(), caption)

    # ---- semantic edits, judged by the measurer -------------------------------------------

    def colour_edit(self, extra, target, tag):
        out = os.path.join(self.tmp.name, tag)
        run(["edit", "--models", MODELS, "--seed", SEEDS, "--compare", "--out", out, "-q"] + extra)
        b, a = before_after(out, tag, 20)
        goal = world.palette_tensor([target])[0]
        keep = b["nearest"] != world.COLOURS.index(target)
        closer = ((a["colour"] - goal).norm(dim=1) < (b["colour"] - goal).norm(dim=1))[keep]
        rate = float(closer.float().mean())
        bg_move = float((a["background"] - b["background"]).norm(dim=1).median())
        centre_move = float((a["centroid"] - b["centroid"]).norm(dim=1).median())
        print(f"{tag}: closer to {target} in {rate:.0%} of {int(keep.sum())} seeds; median background "
              f"move {bg_move:.3f}, centroid move {centre_move:.2f} px", file=sys.stderr)
        self.assertGreaterEqual(rate, 0.80, tag)
        self.assertLess(bg_move, 0.20, tag)
        self.assertLess(centre_move, 6.0, tag)

    def size_edit(self, extra, word, tag):
        out = os.path.join(self.tmp.name, tag)
        run(["edit", "--models", MODELS, "--seed", SEEDS, "--compare", "--out", out, "-q"] + extra)
        b, a = before_after(out, tag, 20)
        moved = a["area"] > b["area"] if word == "large" else a["area"] < b["area"]
        rate = float(moved.float().mean())
        print(f"{tag}: area {'grew' if word == 'large' else 'shrank'} in {rate:.0%} of 20 seeds",
              file=sys.stderr)
        self.assertGreaterEqual(rate, 0.70, tag)

    OPT = ["--method", "optimize", "--steps", "60", "--batch", "20"]
    GLOBAL = ["--method", "global", "--neutral", "a shape", "--no-templates"]

    def test_optimize_colour(self):
        self.colour_edit(self.OPT + ["--text", "a blue shape"], "blue", "a-blue-shape.optimize")

    def test_optimize_size(self):
        for word in ("large", "small"):
            self.size_edit(self.OPT + ["--text", f"a {word} shape"], word, f"a-{word}-shape.optimize")

    def test_global_colour(self):
        self.colour_edit(self.GLOBAL + ["--text", "a blue shape"], "blue", "a-blue-shape.global")

    def test_global_size(self):
        for word in ("large", "small"):
            self.size_edit(self.GLOBAL + ["--text", f"a {word} shape"], word, f"a-{word}-shape.global")

    def test_mapper_colour(self):
        mapper = os.path.join(MODELS, "red.mapper.pt")
        self.colour_edit(["--method", "mapper", "--mapper", mapper], "red", "a-red-shape.mapper")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    BINARY = sys.argv.pop(1)
    if len(sys.argv) > 1:
        MODELS = sys.argv.pop(1)
    unittest.main(verbosity=2)
