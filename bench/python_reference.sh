# bench/python_reference.sh — sourced by the benchmark scripts: how the Python side is run.
# Needs PY, ROOT, REF (the reference script) and a `die` function; reads PY_ALLOCATOR. Sets PYREF
# (the command line before the script's own arguments) and PY_ALLOCATOR_LABEL (for the table's
# footnote): the reference script as it is, or run through with_styleclip_allocator.py with
# styleclip's CPU allocator when PY_ALLOCATOR names libstyleclip_python_allocator.so.
PY_ALLOCATOR="${PY_ALLOCATOR:-}"
PYREF=("$PY" "$REF") PY_ALLOCATOR_LABEL="LibTorch's"
if [[ -n "$PY_ALLOCATOR" ]]; then
  [[ -f "$PY_ALLOCATOR" ]] || die "PY_ALLOCATOR '$PY_ALLOCATOR' not found: build styleclip_python_allocator (bench/README.md)"
  PYREF=("$PY" "$ROOT/bench/with_styleclip_allocator.py" "$PY_ALLOCATOR" "$REF")
  PY_ALLOCATOR_LABEL="styleclip's (bench/with_styleclip_allocator.py)"
fi
