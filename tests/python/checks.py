"""The small harness the exporter tests share: every check runs and reports, then the run fails
if any did. Usage: `@check("what must hold")` on a function that raises on failure and may
return a detail string; `sys.exit(report())` at the end."""

import os
import subprocess
import sys
import time
import traceback

results = []  # (name, ok, detail)


def check(name):
    def wrap(fn):
        t0 = time.time()
        try:
            detail = fn() or ""
            results.append((name, True, f"{detail} ({time.time() - t0:.1f}s)".lstrip()))
        except Exception:  # report every check, then fail at the end
            results.append((name, False, traceback.format_exc().strip()))
        return fn
    return wrap


def report():
    """Prints one line per check; returns the exit status (1 when any failed)."""
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if results and all(r[1] for r in results) else 1


# ---- exporting generators (the StyleGAN tests) -------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPORT = [sys.executable, os.path.join(ROOT, "scripts", "export_bundle.py")]


def export_stylegan(pkl, out):
    """Runs `export_bundle.py --stylegan pkl --out out`; returns (the completed process, out)."""
    r = subprocess.run(EXPORT + ["--stylegan", pkl, "--out", out], capture_output=True, text=True)
    return r, out


def exported_generator(pkl, out):
    """Exports `pkl` into `out` and loads the written generator.pt (an AssertionError on failure)."""
    import torch

    r, out = export_stylegan(pkl, out)
    if r.returncode != 0:
        raise AssertionError(f"export failed ({r.returncode}): {r.stderr}")
    return torch.jit.load(os.path.join(out, "generator.pt")), out


def close(a, b, tol, what):
    """The largest absolute difference of two tensors, which must be within `tol`."""
    err = (a - b).abs().max().item()
    if not err <= tol:
        raise AssertionError(f"{what}: max error {err:.3g} > {tol}")
    return err
