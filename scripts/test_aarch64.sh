#!/usr/bin/env bash
# The test suite on aarch64 (64-bit ARM), emulated: cross-compiles the workspace's tests
# for aarch64-unknown-linux-gnu and runs them under qemu-user. No aarch64 machine is
# needed, and on x86_64 this is the check that the crate is correct off x86 (the
# portable kernels; the NEON-free path). Speed under emulation means nothing.
#
#   bash scripts/test_aarch64.sh [cargo test arguments...]
#
# Installs what it needs from the registries: Debian's qemu-user and the aarch64 GNU
# cross toolchain (apt-get, as root), and the Rust standard library for the target
# (rustup; already present on machines whose toolchain ships it). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu

need_apt=()
command -v qemu-aarch64 >/dev/null 2>&1 || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx "$target"; then
    echo "== rustup target add $target"
    rustup target add "$target"
fi

# Link with the cross gcc, build C dependencies (mimalloc) with it, run under qemu with
# the cross sysroot's dynamic loader and libc.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# A separate target folder: the host's builds stay as they are.
# Tests that start a process (the CLI binary, the fuzz replays' children) start it
# through the same emulator.
export RECURRENT_TEST_RUNNER="$CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/aarch64}"

echo "== cargo test --workspace --target $target (under qemu-aarch64)"
# Doc-tests are compiled for the host by rustdoc and would not test the target; the
# unit, integration and CLI tests all run here. The Python extension is left out: its
# test harness links the target's libpython, which a cross toolchain does not ship (its
# Rust code is the library's, tested here; its Python tests run on the host, .ci/run).
cargo test --workspace --exclude recurrent-bench --exclude recurrent-py --target "$target" --lib --bins --tests "$@"
