"""Writing a bundle folder: manifest.json with dimensions, provenance and sha256 of each file.

The manifest is read by the C++ loader (`src/models/bundle.cpp`); its format, as a JSON Schema:
`docs/manifest.schema.json`.
"""

import datetime
import hashlib
import json
import os

import torch

from styleclip_export import atomic

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
    """Atomic write: a reader never sees a half-written manifest. The temporary file has a unique
    name (two exporters may finish into one folder at once) and is made world-readable (0644):
    a manifest is meant to be read by anyone."""
    manifest["format"] = FORMAT
    manifest["format_version"] = FORMAT_VERSION
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return atomic.write_text_atomic(os.path.join(out_dir, "manifest.json"), text, unique_temp=True)

