#!/usr/bin/env bash
# Run the C speedups' tests and a few minutes of atheris fuzzing under AddressSanitizer.
#
#   tests/reliability/asan.sh [--short] [--minutes N]      (PYTHON: default .venv/bin/python)
#
# Builds both C modules with gcc -fsanitize=address (and UBSan) into a temporary copy
# of the package, puts it first on PYTHONPATH and preloads libasan into every Python
# process (the interpreter itself is not instrumented): the tests that compare the C
# path with the pure-Python one, then atheris on the differential `native` target and
# the collapsers. --short (CI): those tests and 1 minute of fuzzing; default: 5 minutes.
# Any report from the sanitizers fails the run (halt_on_error, exit code 99).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}
minutes=5
short=0
while [ $# -gt 0 ]; do
    case "$1" in
    --short) short=1; minutes=1 ;;
    --minutes) minutes=$2; shift ;;
    *) echo "usage: $0 [--short] [--minutes N]" >&2; exit 2 ;;
    esac
    shift
done

tmp=$(mktemp -d)
[ -n "${ASAN_KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/flamed"
for package in collapse render collector daemon; do
    cp -r "$package" "$tmp/flamed/$package"
done
find "$tmp/flamed" -name '*.so' -delete
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
flags=(-shared -fPIC -g -O1 -fno-omit-frame-pointer "-fsanitize=address,undefined"
    -fno-sanitize-recover=undefined -Wall -I"$include")
for package in collapse render; do
    gcc "${flags[@]}" "$package/_speedups.c" -o "$tmp/flamed/$package/_speedups$suffix"
done

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$libasan:$libubsan"
# Python frees little at exit and keeps arenas: leak reports would be the interpreter's.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:exitcode=99:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONPATH="$tmp${PYTHONPATH:+:$PYTHONPATH}"
export FLAMED_FUZZ_EXAMPLES=${FLAMED_FUZZ_EXAMPLES:-300}

"$python" - <<'EOF'
import flamed.collapse._speedups as c, flamed.render._speedups as r
assert "/tmp" in c.__file__ and "/tmp" in r.__file__, (c.__file__, r.__file__)
print("asan: the sanitized builds are the ones imported:", c.__file__, r.__file__)
EOF
# --capture=sys: a sanitizer's report goes to file descriptor 2, so it must not be captured.
# PYTEST_ARGS: more pytest options, split at spaces (e.g. "-x -k perf").
# shellcheck disable=SC2086
"$python" -m pytest -q -p no:cacheprovider --capture=sys ${PYTEST_ARGS:-} \
    tests/collapse tests/render/test_speedups.py \
    "tests/reliability/test_hostile_input.py::test_no_exception_escapes_a_parser"
for target in native perf dtrace; do
    seconds=$((minutes * 60 / 3))
    echo "asan: fuzzing $target for ${seconds} s"
    "$python" tests/reliability/fuzz_parsers.py --minutes "$("$python" -c "print($seconds / 60)")" \
        --only "$target" -detect_leaks=0 >"$tmp/fuzz-$target.log" 2>&1 || {
        tail -n 60 "$tmp/fuzz-$target.log"
        echo "asan: fuzzing $target failed" >&2
        exit 1
    }
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done" "$tmp/fuzz-$target.log" || true
done
echo "asan: no report from AddressSanitizer or UBSan (short=$short, ${minutes} min of fuzzing)"
