//! GFLOP/s of the product kernel on the shapes the layers multiply, one thread, f32:
//! this crate's panel GEMM (weights packed once, `kernels/panel.rs`) against
//! `matrixmultiply` (which packs on every call), `y += x · Wᵀ`.
//!
//! `cargo run --release -p recurrent-bench --example gflops [-- m k n [m k n ...]]`;
//! `RECURRENT_ISA=avx2` measures the AVX2 path on an AVX-512 machine.
use std::time::Instant;

/// Best-of-5 GFLOP/s of `run`, each sample about 0.4 s of calls.
fn rate(flops: f64, mut run: impl FnMut()) -> f64 {
    let reps = ((4e8 / flops) as usize).max(3);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            run();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    flops / best / 1e9
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let shapes: Vec<(usize, usize, usize)> = if args.len() >= 3 {
        args.chunks_exact(3).map(|c| (c[0], c[1], c[2])).collect()
    } else {
        vec![
            (1, 16, 32),
            (1, 256, 1024),
            (1, 512, 2048),
            (4, 256, 1024),
            (16, 256, 1024),
            (32, 256, 256),
            (32, 1024, 1024),
            (32, 1024, 4096),
            (64, 1024, 4096),
            (3200, 128, 1024),
            (12800, 512, 4096),
        ]
    };
    println!("kernel path: {:?}", recurrent::isa());
    println!(
        "{:>22}  {:>8}  {:>15}",
        "m x k x n", "panels", "matrixmultiply"
    );
    for (m, k, n) in shapes {
        let x = ndarray::Array2::from_shape_fn((m, k), |(i, p)| ((i * 7 + p) % 13) as f32 * 0.01);
        // W as torch stores it, (n, k).
        let w = ndarray::Array2::from_shape_fn((n, k), |(j, p)| ((j + p * 3) % 11) as f32 * 0.01);
        let panels = recurrent::__bench::PanelWeight::new(w.t());
        let mut y = ndarray::Array2::<f32>::zeros((m, n));
        let flops = 2.0 * (m * k * n) as f64;
        let ours = rate(flops, || {
            recurrent::__bench::panel_matmul_acc(&x.view(), &panels, &mut y.view_mut());
            std::hint::black_box(&y);
        });
        let theirs = rate(flops, || {
            ndarray::linalg::general_mat_mul(1.0, &x, &w.t(), 1.0, &mut y);
            std::hint::black_box(&y);
        });
        println!(
            "{:>22}  {ours:8.1}  {theirs:15.1}",
            format!("{m} x {k} x {n}")
        );
    }
}
