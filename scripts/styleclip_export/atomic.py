"""Writing a file so that a reader sees either the old one or the complete new one, never a part.

The new content goes to a temporary file in the destination's folder (so the rename stays on one
filesystem), which then replaces the destination with os.replace; when writing fails the temporary
file is removed and the error propagates. Nothing is fsync'ed: the point is that a reader running
beside the exporter (or an export stopped half-way) never finds a truncated file, not durability
across a power cut. The C++ side does the same (src/io/atomic_file.cpp, write_via_temp).
"""

import os
import shutil
import tempfile


def write_via_temp(path, write, unique_temp=False):
    """Calls write(tmp) to write the new content to a temporary file, then renames it to `path`.

    The temporary file is `path + ".tmp"`, or with unique_temp a fresh hidden name from mkstemp
    (for files that several writers may replace at once, like a bundle's manifest.json); mkstemp
    creates it private, so it is made world-readable (0644) before it replaces `path`.
    Returns `path`."""
    path = os.fspath(path)
    if unique_temp:
        folder, name = os.path.split(path)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.splitext(name)[0] + ".", dir=folder or ".")
        os.close(fd)
    else:
        tmp = path + ".tmp"
    try:
        write(tmp)
        if unique_temp:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:  # never written (e.g. a missing folder): keep the original error
            pass
        raise
    return path


def save_script_atomic(module, path):
    """torch.jit.save of a scripted module to `path`, through a temporary file."""
    import torch

    return write_via_temp(path, lambda tmp: torch.jit.save(module, tmp))


def torch_save_atomic(obj, path):
    """torch.save of `obj` to `path`, through a temporary file."""
    import torch

    return write_via_temp(path, lambda tmp: torch.save(obj, tmp))


def copy_atomic(src, path):
    """A copy of the file `src` at `path` (contents only, as shutil.copyfile), through a temporary file."""
    return write_via_temp(path, lambda tmp: shutil.copyfile(src, tmp))


def write_text_atomic(path, text, unique_temp=False):
    """`text` as the whole content of `path`, through a temporary file."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return write_via_temp(path, write, unique_temp=unique_temp)
