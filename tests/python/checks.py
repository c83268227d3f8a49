"""The small harness the exporter tests share: every check runs and reports, then the run fails
if any did. Usage: `@check("what must hold")` on a function that raises on failure and may
return a detail string; `sys.exit(report())` at the end."""

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
