"""Writing a bundle folder: manifest.json with dimensions, provenance and sha256 of each file.

The manifest schema is read by the C++ loader (`src/models/bundle.cpp`).
"""

import datetime
import hashlib
import json
import os
import tempfile

import torch

FORMAT = "styleclip-bundle"
FORMAT_VERSION = 1
EXPORTER_VERSION = "0.1.0"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(out_dir: str) -> dict:
    path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            m = json.load(f)
        if m.get("format") != FORMAT:
            raise ValueError(f"'{path}' is not a styleclip bundle manifest")
        return m
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "files": {}}


def file_entry(out_dir: str, name: str) -> dict:
    path = os.path.join(out_dir, name)
    return {"path": name, "sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def provenance(source_path: str, **extra) -> dict:
    p = {
        "source": os.path.basename(source_path) if source_path else None,
        "source_sha256": sha256_file(source_path) if source_path and os.path.isfile(source_path) else None,
        "exporter_version": EXPORTER_VERSION,
        "torch_version": torch.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    p.update(extra)
    return p


def write_manifest(out_dir: str, manifest: dict) -> str:
    """Atomic write: a reader never sees a half-written manifest."""
    manifest["format"] = FORMAT
    manifest["format_version"] = FORMAT_VERSION
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=out_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a manifest is meant to be read by anyone
    path = os.path.join(out_dir, "manifest.json")
    os.replace(tmp, path)
    return path


def save_script(module, out_dir: str, name: str) -> str:
    """torch.jit.save through a temporary name, then rename."""
    path = os.path.join(out_dir, name)
    tmp = path + ".tmp"
    torch.jit.save(module, tmp)
    os.replace(tmp, path)
    return path
