#!/usr/bin/env bash
# Make a diverse whole-machine `perf script` recording for the collapse benchmarks:
# 40 s at 999 Hz on every CPU (`perf record -F 999 -a -g`) while a `pip install` builds
# a C extension from source, gcc compiles a generated C program at -O2, and a C
# program burns CPU. Tens of thousands of distinct records: the case where counting
# alike records does not help and every record must be folded.
#
#   tests/bench/record_diverse.sh OUT.txt [SDIST]
#
# SDIST: a source distribution with a C extension (default: `pip download
# --no-binary :all: markupsafe`). Keep OUT outside the repository (for example
# /work/refs/data/diverse-40s.txt) and give it to bench_perf.py as FLAMED_BENCH_PERF.
# Needs root (or perf_event_paranoid <= -1), perf, gcc and python3.
set -euo pipefail
out=$(realpath -m "$1")
seconds=${SECONDS_TO_RECORD:-40}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

sdist=${2:-}
if [ -z "$sdist" ]; then
    python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp/sdist" markupsafe
    sdist=$(ls "$tmp"/sdist/*)
fi
python3 -m venv "$tmp/venv"

cat >"$tmp/burn.c" <<'EOF'
volatile unsigned long sink;
__attribute__((noinline)) void light(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) void heavy(unsigned long n) { for (unsigned long i = 0; i < 3 * n; i++) sink += i; }
int main(void) { for (;;) { light(1000000); heavy(1000000); } }
EOF
gcc -O0 -fno-omit-frame-pointer -o "$tmp/burn" "$tmp/burn.c"
# A C file big enough to keep the compiler busy: many small functions calling each other.
python3 - "$tmp/big.c" <<'EOF'
import sys
with open(sys.argv[1], "w") as out:
    for i in range(3000):
        out.write(f"static int f{i}(int x) {{ int s = x; for (int k = 0; k < {i % 13 + 2}; k++)"
                  f" s = s * 31 + (s >> 3) ^ {i}; return s{' + f%d(s)' % (i - 1) if i else ''}; }}\n")
    out.write("int main(int argc, char **argv) { (void)argv; return f2999(argc) & 1; }\n")
EOF

setsid bash -c "while :; do '$tmp/venv/bin/pip' install -q --no-cache-dir --force-reinstall \
    --no-binary :all: '$sdist' >/dev/null 2>&1; done" &
pids+=($!)
setsid bash -c "while :; do gcc -O2 -fno-omit-frame-pointer -o '$tmp/big' '$tmp/big.c'; done" &
pids+=($!)
setsid "$tmp/burn" &
pids+=($!)
sleep 2
perf record -e cpu-clock -F 999 -a -g -q -o "$tmp/perf.data" -- sleep "$seconds"
perf script -i "$tmp/perf.data" >"$out.tmp" 2>/dev/null
mv "$out.tmp" "$out"
echo "$out: $(wc -c <"$out") bytes, $(grep -c '^$' "$out") records"
