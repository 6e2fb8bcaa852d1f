//! The core clock, and from it the FMA peak of each kernel path, for "of FMA peak" in
//! BENCHMARKS.md: `cargo run --release -p recurrent-bench --example clock [-- cores]`.
//!
//! The clock is measured, not read (a VM's /proc/cpuinfo gives none): a chain of
//! dependent 64-bit integer multiplications, 3 cycles each on every x86_64 core of the
//! last decade (Intel since Nehalem, AMD since Zen), so three times the multiplications
//! per second is cycles per second, taken as the best of several runs of about 0.1 s
//! while the core is busy (as it is under a benchmark). (A chain of additions would not
//! do: Golden Cove and later fold immediate additions at rename.) The
//! peak is cores x 2 FMA units x lanes x 2 FLOPs x clock, the FMA unit count being an
//! assumption stated in the output (two on Intel Skylake-SP and later server cores, and
//! on AMD Zen 2-5).
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
    for (path, lanes) in [("avx512", 16.0), ("avx2", 8.0)] {
        let peak = cores * 2.0 * lanes * 2.0 * hz / 1e9;
        println!(
            "{path} f32 FMA peak: {peak:.0} GFLOP/s ({cores} cores x 2 FMA units x {lanes} lanes x 2 x clock)"
        );
    }
}
