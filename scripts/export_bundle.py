#!/usr/bin/python3
"""Export published checkpoints (or random-weight models of the same architectures) to a bundle.

Run with Debian's Python (`/usr/bin/python3`), which has PyTorch. Examples:

  # the real FFHQ generator StyleCLIP uses (rosinality format)
  /usr/bin/python3 scripts/export_bundle.py --stylegan stylegan2-ffhq-config-f.pt --out models/ffhq
  # an NVIDIA StyleGAN2-ADA network pickle (the format is told from the file, not its name)
  /usr/bin/python3 scripts/export_bundle.py --stylegan metfaces.pkl --out models/metfaces
  # an NVIDIA StyleGAN3 network pickle (configs T and R; docs/stylegan3.md)
  /usr/bin/python3 scripts/export_bundle.py --stylegan stylegan3-t-ffhq-1024x1024.pkl --out models/sg3
  # OpenAI's CLIP ViT-B/32 and its vocabulary, into the same bundle
  /usr/bin/python3 scripts/export_bundle.py --clip ViT-B-32.pt --vocab bpe_simple_vocab_16e6.txt.gz \
      --out models/ffhq
  # a published StyleCLIP mapper (for a 1024 px FFHQ bundle)
  /usr/bin/python3 scripts/export_bundle.py --mapper mohawk.pt --out models/mohawk.mapper.pt
  # ArcFace IR-SE50 for the identity loss (the file StyleCLIP, e4e and pSp load)
  /usr/bin/python3 scripts/export_bundle.py --identity model_ir_se50.pth --out models/ffhq
  # photos: YuNet for face detection and the e4e encoder for fast inversion
  /usr/bin/python3 scripts/export_bundle.py --face-detector face_detection_yunet_2022mar.onnx \
      --encoder e4e_ffhq_encode.pt --out models/ffhq
  # LPIPS-VGG for the photo projector (lpips' v0.1 linear layers + torchvision's VGG16)
  /usr/bin/python3 scripts/export_bundle.py --lpips vgg.pth --lpips-vgg vgg16-397923af.pth --out models/ffhq
  # a small random generator for tests and benchmarks
  /usr/bin/python3 scripts/export_bundle.py --random --resolution 64 --w-dim 64 --n-mlp 4 \
      --channel-divisor 8 --out /tmp/tiny

Each part is added to `DIR/manifest.json`; other parts already in the bundle are kept.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def fail(message: str, code: int = 2):
    print(f"export_bundle: {message}", file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True,
                   help="bundle folder (created if missing); with --mapper, the mapper file to write")
    g = p.add_argument_group("StyleGAN generator")
    g.add_argument("--stylegan", metavar="CKPT",
                   help="rosinality checkpoint {'g_ema': ..., 'latent_avg': ...} or NVIDIA network "
                        "pickle (stylegan2-ada-pytorch, or the stylegan3 release's StyleGAN2, "
                        "StyleGAN3-T and StyleGAN3-R .pkl; read without running the code it carries)")
    g.add_argument("--random", action="store_true", help="export a random-weight generator instead")
    g.add_argument("--resolution", type=int, default=64)
    g.add_argument("--w-dim", type=int, default=64)
    g.add_argument("--n-mlp", type=int, default=4)
    g.add_argument("--channel-multiplier", type=int, default=2)
    g.add_argument("--channel-divisor", type=int, default=8,
                   help="divide rosinality's channel table by this (1 = the real config-f widths)")
    g.add_argument("--lr-mlp", type=float, default=0.01,
                   help="mapping network learning-rate multiplier the checkpoint was trained with "
                        "(rosinality default 0.01; not recoverable from the weights)")
    g.add_argument("--seed", type=int, default=0, help="seed for --random / --random-clip")
    g.add_argument("--save-checkpoint", metavar="FILE",
                   help="with --random: also write the rosinality-format checkpoint")
    c = p.add_argument_group("CLIP")
    c.add_argument("--clip", metavar="CKPT", help="OpenAI CLIP checkpoint (TorchScript archive or state dict)")
    c.add_argument("--vocab", metavar="FILE", help="CLIP BPE merges (bpe_simple_vocab_16e6.txt.gz)")
    c.add_argument("--random-clip", metavar="SIZE", choices=["tiny", "vit-b32"],
                   help="export a random-weight CLIP of this size instead of --clip")
    c.add_argument("--clip-text-heads", type=int, default=None,
                   help="text transformer heads (default: width // 64 as OpenAI's build_model; the "
                        "weights do not determine it, so give it for models built otherwise)")
    c.add_argument("--vocab-merges", type=int, default=None,
                   help="number of merges the tokenizer uses (default: OpenAI's 48894, or all for "
                        "smaller files)")
    i = p.add_argument_group("identity (ArcFace IR-SE50)")
    i.add_argument("--identity", metavar="CKPT", help="ArcFace IR-SE50 state dict (model_ir_se50.pth)")
    i.add_argument("--random-identity", metavar="DIVISOR", type=int,
                   help="export a random-weight IR-SE50 with widths divided by DIVISOR instead")
    mp = p.add_argument_group("latent mapper (StyleCLIP's published mapper checkpoints)")
    mp.add_argument("--mapper", metavar="CKPT", help="a StyleCLIP mapper checkpoint, e.g. mohawk.pt; "
                    "--out is then the mapper file to write")
    mp.add_argument("--num-ws", type=int, default=None,
                    help="with --mapper: W+ rows of the target generator (default: from the checkpoint's "
                         "stylegan_size, 18 for 1024 px)")
    en = p.add_argument_group("e4e encoder (for photos: styleclip invert / edit PHOTO --with encoder)")
    en.add_argument("--encoder", metavar="CKPT",
                    help="the published e4e checkpoint (e4e_ffhq_encode.pt): its encoder.* and latent_avg")
    en.add_argument("--random-encoder", metavar="DIVISOR", type=int,
                    help="export a random-weight e4e (widths / DIVISOR, one unit per group, 64 px input) "
                         "for the bundle's generator instead; with --save-encoder-checkpoint FILE also "
                         "write it in the published layout")
    en.add_argument("--random-encoder-full", action="store_true",
                    help="with --random-encoder: the published depth and input (units 3/4/14/3, 256 px), "
                         "for benchmarks")
    en.add_argument("--save-encoder-checkpoint", metavar="FILE", help=argparse.SUPPRESS)
    lp = p.add_argument_group("LPIPS-VGG (the photo projector's perceptual loss)")
    lp.add_argument("--lpips", metavar="VGG_PTH", help="LPIPS v0.1 linear layers (lpips' weights/v0.1/vgg.pth)")
    lp.add_argument("--lpips-vgg", metavar="CKPT", help="torchvision's VGG16 weights (vgg16-397923af.pth)")
    lp.add_argument("--random-lpips", metavar="DIVISOR", type=int,
                    help="export a random-weight LPIPS-VGG (widths / DIVISOR) instead, for tests")
    fd = p.add_argument_group("face detector (for photos: styleclip align / edit PHOTO)")
    fd.add_argument("--face-detector", metavar="ONNX",
                    help="a YuNet face detector (face_detection_yunet_2022mar.onnx), copied into the bundle")
    gs = p.add_argument_group("global directions (StyleCLIP's published files)")
    gs.add_argument("--global-stats", metavar="FS3_NPY", help="fs3.npy: per-channel CLIP directions")
    gs.add_argument("--s-mean-std", metavar="FILE", help="S_mean_std: the pickled per-layer means and stds")
    return p.parse_args(argv)


def load_rosinality(args):
    """(state dict, latent_avg or None, source) of a rosinality checkpoint or a random one."""
    import torch
    from styleclip_export import safe_pickle, stylegan2

    if args.random:
        ckpt = stylegan2.random_checkpoint(args.resolution, args.w_dim, args.n_mlp,
                                           args.channel_multiplier, args.channel_divisor,
                                           args.seed, args.lr_mlp)
        source = None
        if args.save_checkpoint:
            torch.save(ckpt, args.save_checkpoint)
            source = args.save_checkpoint
    else:
        try:
            ckpt = safe_pickle.torch_load(args.stylegan)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
            fail(f"cannot read checkpoint '{args.stylegan}': {str(e).splitlines()[0]}", 3)
        source = args.stylegan
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        fail(f"'{args.stylegan}' is neither a rosinality StyleGAN2 checkpoint (a dict with 'g_ema') "
             "nor an NVIDIA network pickle", 3)
    return ckpt["g_ema"], ckpt.get("latent_avg"), source


def build_rosinality(args, sd, latent_avg):
    """Our generator from a rosinality state dict, its sizes and where its w_avg came from."""
    import torch
    from styleclip_export import stylegan2

    computed_avg = latent_avg is None
    try:
        if computed_avg:
            # Without a stored average, do what rosinality's mean_latent does, with a fixed seed.
            g = stylegan2.build_generator(sd, torch.zeros(sd["style.1.weight"].shape[1]), args.lr_mlp)
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                latent_avg = g.mapping(torch.randn(4096, g.z_dim, generator=gen)).mean(0)
        g = stylegan2.build_generator(sd, latent_avg, args.lr_mlp)
    except ValueError as e:
        fail(f"'{args.stylegan or 'random'}': {e}", 3)
    cfg = stylegan2.config_from_state_dict(sd)
    cfg.update(architecture="stylegan2-rosinality", lr_mlp=args.lr_mlp, seed_convention="torch",
               w_avg_source="computed: mean of 4096 mapped samples, seed 0" if computed_avg
               else "checkpoint latent_avg")
    return g, cfg


def build_nvidia(path):
    """Our generator from an NVIDIA network pickle (read without running anything in it):
    StyleGAN2 (stylegan2_nvidia.py) or StyleGAN3 (stylegan3.py), told from the recorded
    synthesis network."""
    from styleclip_export import safe_pickle, stylegan2_nvidia, stylegan3

    try:
        obj = safe_pickle.load_pickle(path)
    except safe_pickle.UnsafePickleError as e:
        fail(f"cannot read network pickle '{path}': {e}", 3)
    except Exception as e:  # noqa: BLE001 - truncated or damaged files: one line, not a traceback
        fail(f"cannot read network pickle '{path}': {type(e).__name__}: "
             f"{str(e).splitlines()[0] if str(e) else 'damaged or truncated file'}", 3)
    try:
        G, which = stylegan2_nvidia.pick_generator(obj)
        if stylegan3.is_stylegan3(G):
            g, cfg = stylegan3.build_generator(G)
            cfg["family"] = "stylegan3"
        else:
            g, cfg = stylegan2_nvidia.build_generator(G)
            cfg["architecture"] = "stylegan2-nvidia"
    except ValueError as e:
        fail(f"network pickle '{path}': {str(e).splitlines()[0] if str(e) else type(e).__name__}", 3)
    cfg.update(seed_convention="numpy-randomstate", w_avg_source=f"pickle {which}.mapping.w_avg",
               network=which)
    return g, cfg


def check_scripted(g, path, cfg):
    """Reload the written file and compare it with the eager module: the file is what C++ runs."""
    import torch

    reloaded = torch.jit.load(path)
    with torch.no_grad():
        z = torch.randn(2, cfg["z_dim"], generator=torch.Generator().manual_seed(1))
        c = torch.zeros(2, g.c_dim)
        if g.c_dim > 0:
            c[:, 0] = 1
        ws = g.mapping_conditional(z, c)[:, None, :].expand(-1, cfg["num_ws"], -1).contiguous()
        a = g.synthesis(ws, False)
        b = reloaded.synthesis(ws, False)
        w_ok = (reloaded.mapping_conditional(z, c) - ws[:, 0]).abs().max() <= 1e-5
    res = cfg["resolution"]
    return a.shape == (2, 3, res, res) and (a - b).abs().max() <= 1e-5 and bool(w_ok)


def export_stylegan(args, manifest):
    import torch
    from styleclip_export import atomic, bundle, safe_pickle, stylegan2

    if args.stylegan and not os.path.isfile(args.stylegan):
        fail(f"cannot read checkpoint '{args.stylegan}': file does not exist")
    # The format is told from the file's first bytes (NVIDIA's are plain pickles; torch.save
    # writes a zip or its legacy header), never from the name.
    if args.stylegan and safe_pickle.is_network_pickle(args.stylegan):
        g, cfg = build_nvidia(args.stylegan)
        source = args.stylegan
    else:
        sd, latent_avg, source = load_rosinality(args)
        g, cfg = build_rosinality(args, sd, latent_avg)
    scripted = torch.jit.script(g)
    os.makedirs(args.out, exist_ok=True)
    path = atomic.save_script_atomic(scripted, os.path.join(args.out, "generator.pt"))
    if not check_scripted(g, path, cfg):
        os.remove(path)
        fail("internal error: the scripted generator does not reproduce the eager one")

    manifest["files"]["generator"] = bundle.file_entry(args.out, "generator.pt")
    if cfg.get("family") == "stylegan3":
        manifest["generator"] = stylegan3_section(g, cfg, args, source)
        return
    section = {
        "architecture": cfg["architecture"],
        "resolution": cfg["resolution"],
        "w_dim": cfg["w_dim"],
        "z_dim": cfg["z_dim"],
        "c_dim": g.c_dim,
        "num_ws": cfg["num_ws"],
        "n_mlp": cfg["n_mlp"],
        "lr_mlp": cfg["lr_mlp"],
        "channels": {str(k): v for k, v in cfg["channels"].items()},
        "style_dims": stylegan2.style_dims(g),
        "style_is_rgb": stylegan2.style_is_rgb(g),
        "seed_convention": cfg["seed_convention"],
        "w_avg_source": cfg["w_avg_source"],
        "provenance": bundle.provenance(source, random=bool(args.random),
                                        random_seed=args.seed if args.random else None),
    }
    for key in ("conv_clamp", "num_fp16_res", "channel_base", "channel_max", "mapping_dims",
                "network"):
        if key in cfg:
            section[key] = cfg[key]
    manifest["generator"] = section
    kind = "NVIDIA" if cfg["architecture"] == "stylegan2-nvidia" else "rosinality"
    cond = f", {g.c_dim} classes" if g.c_dim else ""
    print(f"generator ({kind}): {cfg['resolution']} px, w_dim {cfg['w_dim']}, {cfg['num_ws']} W+ rows"
          f"{cond}, {len(section['style_dims'])} style layers -> {args.out}/generator.pt")


def stylegan3_section(g, cfg, args, source):
    """The manifest's generator section for a StyleGAN3 generator (docs/bundle-format.md 2.2,
    docs/stylegan3.md §4): one style entry per W+ row, the input transform first (not a style
    channel), ToRGB last; each entry's feature-map size; NVIDIA's recorded hyper-parameters."""
    from styleclip_export import bundle, stylegan3

    section = {
        "family": "stylegan3",
        "architecture": cfg["architecture"],
        "resolution": cfg["resolution"],
        "w_dim": cfg["w_dim"],
        "z_dim": cfg["z_dim"],
        "c_dim": g.c_dim,
        "num_ws": cfg["num_ws"],
        "n_mlp": cfg["n_mlp"],
        "lr_mlp": cfg["lr_mlp"],
        "mapping_dims": cfg["mapping_dims"],
        "num_layers": cfg["num_layers"],
        "style_dims": stylegan3.style_dims(g),
        "style_is_rgb": stylegan3.style_is_rgb(g),
        "style_is_input": stylegan3.style_is_input(g),
        "style_resolutions": stylegan3.style_resolutions(g),
        "channels": stylegan3.layer_channels(g),
        "conv_kernel": cfg["conv_kernel"],
        "use_radial_filters": cfg["use_radial_filters"],
        "output_scale": cfg["output_scale"],
        "conv_clamp": cfg["conv_clamp"],
        "seed_convention": cfg["seed_convention"],
        "w_avg_source": cfg["w_avg_source"],
        "network": cfg["network"],
        "provenance": bundle.provenance(source, random=False, random_seed=None),
    }
    for key in ("num_critical", "margin_size", "channel_base", "channel_max", "num_fp16_res",
                "magnitude_ema_beta"):
        if cfg.get(key) is not None:
            section[key] = cfg[key]
    cond = f", {g.c_dim} classes" if g.c_dim else ""
    kind = "StyleGAN3-" + cfg["architecture"].rsplit("-", 1)[-1].upper()
    print(f"generator (NVIDIA {kind}): {cfg['resolution']} px, w_dim {cfg['w_dim']}, "
          f"{cfg['num_ws']} W+ rows{cond}, {len(section['style_dims'])} style entries (input "
          f"transform, {cfg['num_layers']} layers, ToRGB) -> {args.out}/generator.pt")
    return section


def export_clip(args, manifest):
    import torch
    from styleclip_export import atomic, bundle, clip

    if not args.vocab:
        fail("--vocab FILE is required with --clip/--random-clip (CLIP's bpe_simple_vocab_16e6.txt.gz)")
    if not os.path.isfile(args.vocab):
        fail(f"cannot read vocabulary '{args.vocab}': file does not exist")
    os.makedirs(args.out, exist_ok=True)
    if args.random_clip:
        sizes = {"tiny": dict(transformer_heads=2), "vit-b32": dict(embed_dim=512, image_resolution=224, vision_layers=12,
                                              vision_width=768, vision_patch_size=32,
                                              transformer_width=512, transformer_heads=8,
                                              transformer_layers=12)}[args.random_clip]
        # The token table matches the vocabulary: 512 byte tokens, the merges, <start>, <end>
        # (49408 for OpenAI's 48894 merges; fewer for a project-made vocabulary).
        merges = args.vocab_merges if args.vocab_merges is not None else 48894
        sd = clip.random_clip_state_dict(seed=args.seed, vocab_size=512 + merges + 2, **sizes)
        src = os.path.join(args.out, ".random_clip_state_dict.pt")
        torch.save(sd, src)
        try:
            section = clip.export_clip(src, args.out, sizes.get("transformer_heads"))
        finally:
            os.remove(src)
        section["source"] = f"random ({args.random_clip}, seed {args.seed})"
    else:
        if not os.path.isfile(args.clip):
            fail(f"cannot read checkpoint '{args.clip}': file does not exist")
        try:
            section = clip.export_clip(args.clip, args.out, args.clip_text_heads)
        except ValueError as e:
            fail(str(e))
    vocab_name = "vocab.txt.gz"
    atomic.copy_atomic(args.vocab, os.path.join(args.out, vocab_name))
    manifest["files"]["clip"] = bundle.file_entry(args.out, section.pop("file"))
    manifest["files"]["vocab"] = bundle.file_entry(args.out, vocab_name)
    section["vocab_merges"] = args.vocab_merges if args.vocab_merges is not None else 48894
    section["provenance"] = bundle.provenance(args.clip if not args.random_clip else None,
                                              vocab_source=os.path.basename(args.vocab))
    manifest["clip"] = section
    cfg = section["config"]
    print(f"clip: {cfg.get('vision_kind', 'vit')} {cfg['image_resolution']} px, embed {cfg['embed_dim']} "
          f"-> {args.out}/clip.pt")


def export_identity(args, manifest):
    import torch
    from styleclip_export import bundle, identity

    os.makedirs(args.out, exist_ok=True)
    if args.random_identity:
        sd = identity.random_identity_state_dict(seed=args.seed, width_divisor=args.random_identity,
                                                 embed_dim=max(16, 512 // args.random_identity))
        src = os.path.join(args.out, ".random_identity_state_dict.pt")
        torch.save(sd, src)
        try:
            section = identity.export_identity(src, args.out)
        finally:
            os.remove(src)
        section["source"] = f"random (widths / {args.random_identity}, seed {args.seed})"
    else:
        if not os.path.isfile(args.identity):
            fail(f"cannot read checkpoint '{args.identity}': file does not exist")
        try:
            section = identity.export_identity(args.identity, args.out)
        except ValueError as e:
            fail(str(e))
    manifest["files"]["identity"] = bundle.file_entry(args.out, section.pop("file"))
    section["provenance"] = bundle.provenance(args.identity if not args.random_identity else None)
    manifest["identity"] = section
    print(f"identity: IR-SE50, {section['config']['embed_dim']}-d features -> {args.out}/identity.pt")


def export_encoder(args, manifest):
    import torch
    from styleclip_export import bundle, encoder

    gen = manifest.get("generator")
    if gen is None:
        fail(f"'{args.out}' has no generator: export it first (--stylegan), the encoder inverts into its W+")
    num_ws, w_dim = gen["num_ws"], gen["w_dim"]
    src = args.encoder
    if args.random_encoder:
        layout = {"units": (3, 4, 14, 3), "input_size": 256} if args.random_encoder_full else {}
        ckpt = encoder.random_encoder_checkpoint(num_ws, w_dim, seed=args.seed, width_divisor=args.random_encoder,
                                                 **layout)
        src = args.save_encoder_checkpoint or os.path.join(args.out, ".random_encoder.pt")
        torch.save(ckpt, src)
    elif not os.path.isfile(src):
        fail(f"cannot read checkpoint '{src}': file does not exist")
    try:
        section = encoder.export_encoder(src, args.out, num_ws, w_dim)
    except ValueError as e:
        fail(str(e))
    finally:
        if args.random_encoder and not args.save_encoder_checkpoint:
            os.remove(src)
    if args.random_encoder:
        section["source"] = (f"random (widths / {args.random_encoder}"
                             f"{', published depth' if args.random_encoder_full else ''}, seed {args.seed})")
    manifest["files"]["encoder"] = bundle.file_entry(args.out, section.pop("file"))
    section["provenance"] = bundle.provenance(None if args.random_encoder and not args.save_encoder_checkpoint else src)
    manifest["encoder"] = section
    print(f"encoder: e4e, {section['config']['input_size']} px -> W+ [{num_ws}, {w_dim}] -> {args.out}/encoder.pt")


def export_lpips(args, manifest):
    import tempfile
    from styleclip_export import bundle, lpips

    try:
        if args.random_lpips:
            with tempfile.TemporaryDirectory() as tmp:
                lin, vgg = lpips.random_lpips_files(tmp, args.random_lpips, args.seed)
                section = lpips.export_lpips(lin, vgg, args.out)
            section["source"] = f"random (widths / {args.random_lpips}, seed {args.seed})"
        else:
            section = lpips.export_lpips(args.lpips, args.lpips_vgg, args.out)
    except ValueError as e:
        fail(str(e))
    manifest["files"]["lpips"] = bundle.file_entry(args.out, section.pop("file"))
    section["provenance"] = bundle.provenance(None if args.random_lpips else args.lpips)
    manifest["lpips"] = section
    print(f"lpips: VGG16 + v0.1 linear layers -> {args.out}/lpips.pt")


def export_face_detector(args, manifest):
    from styleclip_export import atomic, bundle

    if not os.path.isfile(args.face_detector):
        fail(f"cannot read face detector '{args.face_detector}': file does not exist")
    with open(args.face_detector, "rb") as f:
        head = f.read(64)
    if len(head) < 16 or head[:1] != b"\x08":  # ONNX ModelProto starts with field 1 (ir_version)
        fail(f"face detector '{args.face_detector}' is not an ONNX model (expected YuNet's .onnx)")
    os.makedirs(args.out, exist_ok=True)
    name = "face_detector.onnx"
    atomic.copy_atomic(args.face_detector, os.path.join(args.out, name))
    manifest["files"]["face_detector"] = bundle.file_entry(args.out, name)
    print(f"face detector: {os.path.basename(args.face_detector)} -> {args.out}/{name}")


def export_global_stats(args, manifest):
    from styleclip_export import bundle, global_stats

    if not args.s_mean_std:
        fail("--global-stats needs --s-mean-std FILE (the reference's S_mean_std pickle)")
    if "generator" not in manifest:
        fail(f"'{args.out}' has no generator: export it first (--stylegan), the statistics belong to it")
    for f in (args.global_stats, args.s_mean_std):
        if not os.path.isfile(f):
            fail(f"cannot read '{f}': file does not exist")
    try:
        section = global_stats.import_global_stats(args.global_stats, args.s_mean_std, manifest["generator"], args.out)
    except ValueError as e:
        fail(str(e))
    manifest["files"]["global_stats"] = bundle.file_entry(args.out, section.pop("file"))
    manifest["global_stats"] = section
    print(f"global directions: {section['channels']} channels in layers {section['layers']} -> {args.out}/global_stats.pt")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.mapper:
        from styleclip_export import mapper
        if not os.path.isfile(args.mapper):
            fail(f"cannot read checkpoint '{args.mapper}': file does not exist")
        try:
            mapper.import_mapper(args.mapper, args.out, args.num_ws)
        except ValueError as e:
            fail(str(e))
        print(f"mapper -> {args.out}")
        return
    if args.stylegan and args.random:
        fail("give either --stylegan CKPT or --random, not both")
    if args.clip and args.random_clip:
        fail("give either --clip CKPT or --random-clip, not both")
    if args.identity and args.random_identity:
        fail("give either --identity CKPT or --random-identity, not both")
    if args.lpips and args.random_lpips:
        fail("give either --lpips VGG_PTH or --random-lpips, not both")
    if args.lpips_vgg and not args.lpips:
        fail("--lpips-vgg goes with --lpips VGG_PTH (LPIPS' linear layers)")
    if args.encoder and args.random_encoder:
        fail("give either --encoder CKPT or --random-encoder, not both")
    if not (args.stylegan or args.random or args.clip or args.random_clip or args.identity or args.face_detector
            or args.random_identity or args.global_stats or args.encoder or args.random_encoder
            or args.lpips or args.random_lpips):
        fail("nothing to export: give --stylegan CKPT, --random, --clip CKPT, --random-clip, "
             "--identity CKPT, --random-identity, --encoder CKPT or --face-detector ONNX")
    if args.save_checkpoint and not args.random:
        fail("--save-checkpoint only applies to --random")
    from styleclip_export import bundle

    # The folder is made by the first part that is written: a refused input leaves nothing.
    try:
        manifest = bundle.read_manifest(args.out)
    except (ValueError, OSError) as e:
        fail(str(e))
    if args.stylegan or args.random:
        export_stylegan(args, manifest)
    if args.clip or args.random_clip:
        export_clip(args, manifest)
    if args.identity or args.random_identity:
        export_identity(args, manifest)
    if args.global_stats:
        export_global_stats(args, manifest)
    if args.face_detector:
        export_face_detector(args, manifest)
    if args.encoder or args.random_encoder:
        export_encoder(args, manifest)
    if args.lpips or args.random_lpips:
        export_lpips(args, manifest)
    os.makedirs(args.out, exist_ok=True)
    bundle.write_manifest(args.out, manifest)


if __name__ == "__main__":
    main()
