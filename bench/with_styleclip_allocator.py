#!/usr/bin/python3
"""Runs a Python benchmark script with styleclip's CPU allocator in the Python process.

    with_styleclip_allocator.py LIBRARY SCRIPT [ARGS...]

LIBRARY is the `styleclip_python_allocator` library that the benchmarks' CMake build makes
(build-bench/bench/libstyleclip_python_allocator.so); it must be built against the same
LibTorch as this Python's torch. The allocator is installed before SCRIPT allocates anything,
then SCRIPT runs as __main__ with ARGS. So a C++ ÷ Python ratio can be measured with the same
allocator on both sides (bench/README.md). STYLECLIP_CPU_ALLOCATOR=system turns the allocator
off here as in the C++ tools; this script then stops with an error rather than time the wrong thing.
"""

import atexit
import ctypes
import os
import runpy
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: with_styleclip_allocator.py LIBRARY SCRIPT [ARGS...]")
    library, script = sys.argv[1], sys.argv[2]
    if not os.path.isfile(library):
        sys.exit(f"with_styleclip_allocator: '{library}' not found: build the target "
                 "styleclip_python_allocator (bench/README.md)")
    import torch  # noqa: F401  (loads this torch's libc10 first, so the library binds to it)

    lib = ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    if lib.styleclip_install_cpu_allocator() != 1:
        sys.exit("with_styleclip_allocator: the allocator was not installed "
                 "(STYLECLIP_CPU_ALLOCATOR=system in the environment?)")
    lib.styleclip_cpu_allocator_reused.restype = ctypes.c_ulonglong
    # On stderr, so the script's JSON on stdout stays one line: shows the allocator did serve it.
    atexit.register(lambda: print(f"with_styleclip_allocator: {lib.styleclip_cpu_allocator_reused()} "
                                  "large buffers reused", file=sys.stderr))
    sys.argv = sys.argv[2:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
