//! The core clock, and from it the FMA peak of each kernel path, for "of FMA peak" in
//! BENCHMARKS.md: `cargo run --release -p recurrent-bench --example clock [-- cores]`.
//!
//! The clock is measured, not read (a VM's /proc/cpuinfo gives none): a chain of
//! dependent 64-bit integer multiplications, 3 cycles each on every x86_64 core of the
//! last decade (Intel since Nehalem, AMD since Zen), so three times the multiplications
//! per second is cycles per second, taken as the best of several runs of about 0.1 s
//! while the core is busy (as it is under a benchmark). (A chain of additions would not
//! do: Golden Cove and later fold immediate additions at rename.)
//!
//! The number of FMA units is measured too, not assumed: per path, twelve independent
//! chains of `vfmadd231ps` on zmm (AVX-512) or ymm (AVX2) registers, enough to cover
//! the latency (4-5 cycles) of two units, give the FMA instructions the core retires per
//! cycle. That is 2 on Intel Skylake-SP and later server cores and on AMD Zen 2-5 for
//! ymm, and for zmm 2 on Zen 5 and most Xeons but 1 on Zen 4, whose AVX-512 runs on two
//! 256-bit units (and on Xeons with one 512-bit port). The rate is rounded to a whole
//! number of instructions per cycle (the units), and the peak is cores x units x lanes
//! x 2 FLOPs x clock. Each path's line prints the rate it measured, so a rounding that
//! went wrong on a noisy machine shows.
use std::time::Instant;

#[cfg(target_arch = "x86_64")]
fn cycles_per_second() -> f64 {
    const ITERS: u64 = 20_000_000; // 8 dependent multiplications each
    let mut best = 0.0f64;
    for _ in 0..7 {
        let mut x = 3u64;
        let t = Instant::now();
        // SAFETY: register-only arithmetic on two locals.
        unsafe {
            std::arch::asm!(
                "2:",
                "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}",
                "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}", "imul {x}, {x}",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) x,
                n = inout(reg) ITERS => _,
                options(nomem, nostack),
            );
        }
        let s = t.elapsed().as_secs_f64();
        std::hint::black_box(x);
        best = best.max((3 * 8 * ITERS) as f64 / s);
    }
    best
}

#[cfg(not(target_arch = "x86_64"))]
fn cycles_per_second() -> f64 {
    eprintln!("the clock probe is written for x86_64");
    std::process::exit(1)
}

/// FMA instructions retired per cycle on one core by twelve independent chains on
/// 512-bit (`zmm == true`) or 256-bit registers, at `hz` cycles per second; `None` where
/// the CPU lacks the instruction set.
#[cfg(target_arch = "x86_64")]
fn fma_per_cycle(zmm: bool, hz: f64) -> Option<f64> {
    const ITERS: u64 = 10_000_000; // 12 FMAs each
    let present = if zmm {
        std::arch::is_x86_feature_detected!("avx512f")
    } else {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    };
    if !present {
        return None;
    }
    let mut best = 0.0f64;
    for _ in 0..7 {
        let t = Instant::now();
        // SAFETY: the instruction set was detected above; register-only arithmetic.
        unsafe {
            if zmm {
                fma_chains_zmm(ITERS)
            } else {
                fma_chains_ymm(ITERS)
            }
        }
        let s = t.elapsed().as_secs_f64();
        best = best.max((12 * ITERS) as f64 / s / hz);
    }
    Some(best)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_zmm(iters: u64) {
    // SAFETY: register-only arithmetic; the caller checked avx512f.
    unsafe {
        std::arch::asm!(
            "vxorps xmm12, xmm12, xmm12",
            "vxorps xmm13, xmm13, xmm13",
            "2:",
            "vfmadd231ps zmm0, zmm12, zmm13", "vfmadd231ps zmm1, zmm12, zmm13",
            "vfmadd231ps zmm2, zmm12, zmm13", "vfmadd231ps zmm3, zmm12, zmm13",
            "vfmadd231ps zmm4, zmm12, zmm13", "vfmadd231ps zmm5, zmm12, zmm13",
            "vfmadd231ps zmm6, zmm12, zmm13", "vfmadd231ps zmm7, zmm12, zmm13",
            "vfmadd231ps zmm8, zmm12, zmm13", "vfmadd231ps zmm9, zmm12, zmm13",
            "vfmadd231ps zmm10, zmm12, zmm13", "vfmadd231ps zmm11, zmm12, zmm13",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _,
            options(nomem, nostack),
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_ymm(iters: u64) {
    // SAFETY: register-only arithmetic; the caller checked avx2 and fma.
    unsafe {
        std::arch::asm!(
            "vxorps xmm12, xmm12, xmm12",
            "vxorps xmm13, xmm13, xmm13",
            "2:",
            "vfmadd231ps ymm0, ymm12, ymm13", "vfmadd231ps ymm1, ymm12, ymm13",
            "vfmadd231ps ymm2, ymm12, ymm13", "vfmadd231ps ymm3, ymm12, ymm13",
            "vfmadd231ps ymm4, ymm12, ymm13", "vfmadd231ps ymm5, ymm12, ymm13",
            "vfmadd231ps ymm6, ymm12, ymm13", "vfmadd231ps ymm7, ymm12, ymm13",
            "vfmadd231ps ymm8, ymm12, ymm13", "vfmadd231ps ymm9, ymm12, ymm13",
            "vfmadd231ps ymm10, ymm12, ymm13", "vfmadd231ps ymm11, ymm12, ymm13",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _,
            options(nomem, nostack),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_per_cycle(_zmm: bool, _hz: f64) -> Option<f64> {
    None
}

fn main() {
    let cores: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64);
    let hz = cycles_per_second();
    println!(
        "clock: {:.2} GHz (3 x dependent 64-bit imul per second, best of 7)",
        hz / 1e9
    );
    for (path, zmm, lanes) in [("avx512", true, 16.0), ("avx2", false, 8.0)] {
        let Some(rate) = fma_per_cycle(zmm, hz) else {
            println!("{path}: not on this CPU");
            continue;
        };
        let units = rate.round().max(1.0);
        let peak = cores * units * lanes * 2.0 * hz / 1e9;
        // One line per path, parsed by bench/compare.py: "<path> fma units: <n> ...".
        println!(
            "{path} fma units: {units:.0} (measured {rate:.2} FMA instructions per cycle); \
             f32 FMA peak: {peak:.0} GFLOP/s ({cores} cores x {units:.0} units x {lanes} lanes x 2 x clock)"
        );
    }
}
