"""Helpers the exporters share: recognising and reading checkpoint files, describing what a file
holds in one line, and strict state-dict loading that names missing and unexpected keys."""

import os
import zipfile
from collections import OrderedDict
from typing import List

from torch import nn

from styleclip_export import safe_pickle


def is_torchscript_archive(path: str) -> bool:
    """A TorchScript archive is a zip holding `constants.pkl` (torch.save zips do not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in z.namelist())


def load_checkpoint(path):
    """A torch.save file, read without running anything it names (safe_pickle.torch_load).
    Raises ValueError, one line naming the file: what was refused, or why it is unreadable."""
    name = os.path.basename(path)
    try:
        return safe_pickle.torch_load(path)
    except safe_pickle.UnsafePickleError as e:
        raise ValueError(f"cannot read checkpoint '{name}': {e}") from None
    except Exception as e:  # unpickling errors come in many types
        raise ValueError(f"'{name}' is not a PyTorch checkpoint ({type(e).__name__}: "
                         f"{first_line(e)})") from None


def describe(obj) -> str:
    """'a dict with 2 keys ('g_ema', 'latent_avg')', 'a Tensor', ..."""
    if isinstance(obj, dict):
        keys = list(obj.keys())
        shown = ", ".join(repr(k) for k in keys[:6]) + (", ..." if len(keys) > 6 else "")
        return f"a dict with {len(keys)} keys ({shown})"
    return f"a {type(obj).__name__}"


def first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def list_keys(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_strict(model: nn.Module, sd, what: str) -> nn.Module:
    """Loads `sd` into `model` with every key used and none missing (the reference loads with
    strict=False and silently ignores wrong keys), then eval, fp32, frozen. ValueError otherwise."""
    own = model.state_dict()
    unexpected = [k for k in sd if k not in own]
    missing = [k for k in own if k not in sd]
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected keys: {list_keys(unexpected)}")
        if missing:
            parts.append(f"missing keys: {list_keys(missing)}")
        raise ValueError(f"state dict does not match the {what} read from it (" + "; ".join(parts) + ")")
    bad = [f"{k} {list(sd[k].shape)} (expected {list(own[k].shape)})"
           for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"state dict tensors have unexpected shapes: {list_keys(bad, 4)}")
    model.load_state_dict(OrderedDict((k, v.float() if v.is_floating_point() else v)
                                      for k, v in sd.items()), strict=True)
    model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
