# bench/measure.sh — sourced by the benchmark scripts: one timed run on a quiet machine.
# Needs TMP (a scratch folder), RAWFILE, PY, QUIET_WAIT, RETRIES and a `die` function.
#
# Other work on this machine (a compile, a test run) wrecks timings: with T = cores, OpenMP's
# threads wait for a descheduled sibling at every parallel region. So: before each run, wait until
# the machine is idle; after it, compare the machine's busy CPU time with the run's own, and repeat
# a run that shared the CPU (up to RETRIES times). Runs still contended are marked in the output.
CLK="$(getconf CLK_TCK)"
cpu_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
idle_enough() {
  local b0 b1
  b0="$(cpu_busy)"; sleep 1; b1="$(cpu_busy)"
  awk -v d="$((b1 - b0))" -v c="$CLK" 'BEGIN{exit !(d / c < 0.15)}'
}
wait_quiet() {
  local waited=0
  until idle_enough || ((waited >= QUIET_WAIT)); do waited=$((waited + 1)); done
}
# run_one CMD... : one measurement; echoes its JSON line with "foreign_cpu_s" (CPU seconds other
# processes used during it), "contended" and "tries" added, and appends it to RAWFILE.
run_one() {
  local try b0 b1 t0 t1 foreign contended=1 out
  for ((try = 1; try <= 1 + RETRIES; try++)); do
    wait_quiet
    b0="$(cpu_busy)"; t0="$(date +%s.%N)"
    /usr/bin/time -f "%U %S" -o "$TMP/time" "$@" >"$TMP/out" || die "failed: $*"
    b1="$(cpu_busy)"; t1="$(date +%s.%N)"
    read -r foreign contended < <(awk -v d="$((b1 - b0))" -v c="$CLK" -v w0="$t0" -v w1="$t1" \
      '{f = d / c - $1 - $2; print f, (f > 0.1 * (w1 - w0)) ? 1 : 0}' "$TMP/time")
    ((contended)) || break
    echo "   (shared the CPU with other work: ${foreign} CPU s; repeating)" >&2
  done
  out="$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(foreign_cpu_s=round(float(sys.argv[2]),2), contended=sys.argv[3]=="1", tries=int(sys.argv[4])); print(json.dumps(d))' \
    "$(cat "$TMP/out")" "$foreign" "$contended" "$((try > 1 + RETRIES ? RETRIES + 1 : try))")"
  echo "$out" >>"$RAWFILE"
  echo "$out"
}
field() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
best() { printf '%s\n' "$@" | sort -g | head -1; }
maxof() { printf '%s\n' "$@" | sort -g | tail -1; }
fmt() { LC_ALL=C printf "%.${2:-1}f" "$1"; }

