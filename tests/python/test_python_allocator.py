#!/usr/bin/python3
"""bench/with_styleclip_allocator.py really puts styleclip's CPU allocator into Python's torch:
the same-allocator ratios in bench/RESULTS.md rest on it.

Usage: test_python_allocator.py LIBRARY (build/bench/libstyleclip_python_allocator.so)."""

import os
import subprocess
import sys
import tempfile

from checks import check, report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRAPPER = os.path.join(ROOT, "bench", "with_styleclip_allocator.py")
LIBRARY = sys.argv[1] if len(sys.argv) > 1 else ""

# Frees a 40 MiB tensor (above the allocator's 32 MiB threshold) and asks for the same size
# again: styleclip's allocator serves the second from its cache, glibc's maps it afresh.
SCRIPT = """
import sys, torch
a = torch.ones(10 << 20); del a
b = torch.zeros(10 << 20)
assert float(b.sum()) == 0.0, "a reused buffer must be zeroed by zeros()"
print("args", sys.argv[1:])
"""


def run(env_extra=None, library=LIBRARY):
    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "probe.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        env = {k: v for k, v in os.environ.items() if k != "STYLECLIP_CPU_ALLOCATOR"}
        env.update(env_extra or {})
        return subprocess.run([sys.executable, WRAPPER, library, script, "--x", "1"], env=env,
                              capture_output=True, text=True, timeout=120)


@check("the wrapped script runs as __main__ with its own arguments and reuses a large buffer")
def reuses():
    r = run()
    assert r.returncode == 0, r.stderr
    assert "args ['--x', '1']" in r.stdout, r.stdout
    last = r.stderr.strip().splitlines()[-1]
    n = int(last.split(":")[1].split()[0])
    assert n >= 1, f"no large buffer was reused, so the allocator is not Python's: {last!r}"
    return last


@check("STYLECLIP_CPU_ALLOCATOR=system stops it with an error instead of timing the wrong thing")
def refuses_when_disabled():
    r = run({"STYLECLIP_CPU_ALLOCATOR": "system"})
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "not installed" in r.stderr and "args" not in r.stdout, r.stderr


@check("a missing library is a one-line error naming it")
def missing_library():
    r = run(library="/nonexistent/libx.so")
    assert r.returncode == 1 and "'/nonexistent/libx.so' not found" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@check("without a library and a script it says how it is used")
def usage():
    r = subprocess.run([sys.executable, WRAPPER, LIBRARY], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("usage: with_styleclip_allocator.py"), r.stderr


sys.exit(report())
