#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each and reports what they found.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to all of: safetensors_reader
# npy_reader state_dict_loader differential. Per target it prints the executions, exec/s,
# coverage (libFuzzer's final `cov:` and `ft:`) and the crash files written; it exits
# non-zero if any target crashed (a panic, an abort, an allocation over the limit, a
# timeout) or could not run.
#
# What it installs itself:
# - cargo-fuzz, with `cargo install cargo-fuzz --locked` (from crates.io) if missing.
# - A nightly toolchain, with `rustup toolchain install nightly --profile minimal`, if
#   missing. Fuzzing with AddressSanitizer (cargo fuzz's default) needs nightly's -Z
#   flags.
# The toolchain question: this workplace's machines are promised crates.io and the other
# package registries only, so `rustup toolchain install nightly` may fail on a machine
# that does not already have nightly (on the machine this was written on, nightly was
# preinstalled and the rustup server answered, so the nightly mode ran; the stable mode
# was checked there too). Then the script falls back to the stable toolchain with
# RUSTC_BOOTSTRAP=1, which lets cargo-fuzz's -Zsanitizer=address through: stable's
# rust-std ships the ASan runtime (librustc-stable_rt.asan.a), so this is the same
# ASan fuzzing as on nightly. Should that build fail, it builds with `--sanitizer none`
# (coverage instrumentation only, which needs no -Z flag): no ASan checks of unsafe code
# and no malloc hooks, so libFuzzer's -malloc_limit_mb is not enforced; but the targets
# install their own global allocator that refuses any single allocation over 2 GiB, so
# an allocation sized by an input's claims is still a crash, and -rss_limit_mb applies.
# Both modes build with -a (debug assertions and overflow checks on, in a release build).
# FUZZ_MODE=nightly or FUZZ_MODE=stable forces a mode; the default is auto.
#
# Files: the corpus of each run is fuzz/corpus/<target>/ (seeded from the committed
# fuzz/seeds/<target>/, kept between runs, not committed); crash inputs go to
# fuzz/artifacts/<target>/; libFuzzer's output to fuzz/logs/<target>.log. Regression
# files (fuzz/regressions/) are not put in the corpus: one that still crashes would stop
# every run at once. They are replayed by `cargo test -p recurrent --test bytes fuzz_replay::`.
#
# Extra libFuzzer flags: FUZZ_ARGS, e.g. FUZZ_ARGS="-fork=2 -ignore_crashes=1" for a long
# campaign that keeps going past the first crash.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"
ALL_TARGETS=(safetensors_reader npy_reader state_dict_loader differential torch_reader)
LIMIT_MB=2048

SECONDS_PER_TARGET="${1:-60}"
[ $# -gt 0 ] && shift
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -eq 0 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]  (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
fi
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    if [[ ! " ${ALL_TARGETS[*]} " =~ " $t " ]]; then
        echo "unknown target '$t' (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

# --- tools ------------------------------------------------------------------------------
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || { echo "cannot install cargo-fuzz" >&2; exit 1; }
fi

MODE="${FUZZ_MODE:-auto}"
if [ "$MODE" = auto ]; then
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        MODE=nightly
    else
        echo "== installing a nightly toolchain"
        if rustup toolchain install nightly --profile minimal; then
            MODE=nightly
        else
            echo "== no nightly toolchain to be had: stable with RUSTC_BOOTSTRAP=1"
            MODE=stable
        fi
    fi
fi
SANITIZER="${FUZZ_SANITIZER:-address}"
set_flags() {
    case "$MODE" in
        nightly)
            CARGO_FUZZ=(cargo +nightly fuzz)
            BUILD_FLAGS=(-O -a --sanitizer "$SANITIZER")
            ;;
        stable)
            export RUSTC_BOOTSTRAP=1
            CARGO_FUZZ=(cargo +stable fuzz)
            # Own target directories: switching toolchains would rebuild everything.
            local dir=stable-asan
            [ "$SANITIZER" = address ] || dir="stable-$SANITIZER"
            BUILD_FLAGS=(-O -a --sanitizer "$SANITIZER" --target-dir "$FUZZ/target/$dir")
            ;;
        *)
            echo "FUZZ_MODE must be auto, nightly or stable, not '$MODE'" >&2
            exit 2
            ;;
    esac
}
build() {
    echo "== mode: $MODE (${CARGO_FUZZ[*]} ${BUILD_FLAGS[*]}); building ${TARGETS[*]}"
    for t in "${TARGETS[@]}"; do
        "${CARGO_FUZZ[@]}" build "${BUILD_FLAGS[@]}" "$t" || return 1
    done
}

cd "$FUZZ"
set_flags
if ! build; then
    if [ "$MODE" = stable ] && [ "$SANITIZER" != none ]; then
        echo "== the $SANITIZER build failed on stable: building without a sanitizer"
        SANITIZER=none
        set_flags
        build || { echo "build failed" >&2; exit 1; }
    else
        echo "build failed" >&2
        exit 1
    fi
fi

# --- runs -------------------------------------------------------------------------------
mkdir -p logs
failed=0
summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
    log="logs/$t.log"
    before=$(ls "artifacts/$t")
    echo "== $t: ${SECONDS_PER_TARGET}s (log: fuzz/$log)"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "${CARGO_FUZZ[@]}" run "${BUILD_FLAGS[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb="$LIMIT_MB" -malloc_limit_mb="$LIMIT_MB" -timeout=10 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?

    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    if [ -z "$execs" ]; then
        # -fork mode prints no final stats: its last "#N: cov: ... time: Ss" line instead.
        last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
        execs=$(printf '%s' "$last" | grep -o '^#[0-9]*' | tr -d '#')
        secs=$(printf '%s' "$last" | grep -o 'time: [0-9]*' | grep -o '[0-9]*$')
        [ -n "$execs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ] && rate=$((execs / secs))
    fi
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    # Crash, timeout and OOM inputs this run wrote (in -fork mode too).
    crashes=$(comm -13 <(printf '%s\n' "$before" | sort) <(ls "artifacts/$t" | sort) | grep . | sed "s|^|fuzz/artifacts/$t/|")
    ncrash=$(printf '%s' "$crashes" | grep -c . || true)
    line=$(printf '%-20s execs %-10s exec/s %-7s %-22s crashes %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-cov: ? ft: ?}" "$ncrash")
    if [ "$ncrash" -gt 0 ]; then
        failed=1
        for c in $crashes; do line+=$'\n'"    crash: $c"; done
        line+=$'\n'"    $(grep -m1 -A1 -E "panicked at|bounded allocator|ERROR: libFuzzer" "$log" | tr '\n' ' ')"
    elif [ "$status" -ne 0 ]; then
        failed=1
        line+=$'\n'"    exit status $status with no crash file: see fuzz/$log"
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary ($MODE, ${SECONDS_PER_TARGET}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
