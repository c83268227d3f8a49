"""Import of StyleCLIP's published global-direction files into a bundle's `global_stats.pt`.

The reference ships, per generator (global_directions/npy/<dataset>/):
* `fs3.npy`: float array [channels, 512], the per-channel CLIP directions Δi_c for the non-toRGB
  style layers up to 128 px, in StyleSpace order (docs/algorithms.md §3.3; 5376 rows for FFHQ config-f);
* `S_mean_std`: a pickle `[means, stds]`, each a list with one NumPy array per style layer (26
  for FFHQ), the per-channel mean and std of S (§3.2).
The output has the layout `styleclip global prepare` writes (src/engines/global_directions.cpp):
a dict {"layers": int64 tensor, "s_mean": [tensors], "s_std": [tensors], "directions": tensor,
"meta": JSON string}.
"""

import json
import os

import numpy as np
import torch

from styleclip_export import safe_pickle
from styleclip_export.atomic import torch_save_atomic


def default_layers(style_dims, style_is_rgb):
    """The reference's layers: non-toRGB style layers acting at 128 px or below."""
    def resolution(layer):
        return 4 if layer < 2 else 8 << ((layer - 2) // 3)
    return [l for l in range(len(style_dims)) if not style_is_rgb[l] and resolution(l) <= 128]


def import_global_stats(fs3_path, mean_std_path, generator_section, out_dir):
    """Converts the published pair; raises ValueError naming the file on any mismatch."""
    style_dims = generator_section["style_dims"]
    layers = default_layers(style_dims, generator_section["style_is_rgb"])
    try:
        fs3 = np.load(fs3_path, allow_pickle=False)  # an object array would be a pickle
    except Exception as e:  # noqa: BLE001 - NumPy raises several kinds for a bad file
        raise ValueError(f"cannot read '{fs3_path}': not a NumPy .npy file ({e})") from None
    rows = sum(style_dims[l] for l in layers)
    if fs3.ndim != 2 or fs3.shape[0] != rows:
        raise ValueError(f"'{fs3_path}' has shape {list(fs3.shape)}, expected [{rows}, D] for this generator's "
                         f"layers {layers}")
    try:
        # Read as the reference reads it (Latin-1: Python 2 strings), but only arrays and lists.
        loaded = safe_pickle.load_pickle(mean_std_path, encoding="latin1")
        means, stds = loaded[0], loaded[1]
    except safe_pickle.UnsafePickleError as e:
        raise ValueError(f"cannot read '{mean_std_path}': {e}") from None
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"cannot read '{mean_std_path}': not the reference's S_mean_std pickle ({e})") from None
    if len(means) != len(style_dims) or len(stds) != len(style_dims):
        raise ValueError(f"'{mean_std_path}' has {len(means)} style layers, the generator {len(style_dims)}")
    s_mean, s_std = [], []
    for l, c in enumerate(style_dims):
        m = np.asarray(means[l], dtype=np.float32).reshape(-1)
        s = np.asarray(stds[l], dtype=np.float32).reshape(-1)
        if m.size != c or s.size != c:
            raise ValueError(f"'{mean_std_path}': layer {l} has {m.size} channels, the generator {c}")
        s_mean.append(torch.from_numpy(m.copy()))
        s_std.append(torch.from_numpy(s.copy()))
    directions = torch.from_numpy(np.ascontiguousarray(fs3, dtype=np.float32))
    meta = {"imported_from": [os.path.basename(fs3_path), os.path.basename(mean_std_path)], "layers": layers}
    out = {"layers": torch.tensor(layers, dtype=torch.int64), "s_mean": s_mean, "s_std": s_std,
           "directions": directions, "meta": json.dumps(meta)}
    path = os.path.join(out_dir, "global_stats.pt")
    torch_save_atomic(out, path)
    return {"file": "global_stats.pt", "layers": layers, "channels": rows, "imported": meta["imported_from"]}
