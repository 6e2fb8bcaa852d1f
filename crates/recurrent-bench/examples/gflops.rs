//! GFLOP/s of the per-step product kernels on the shapes the layers multiply, one thread:
//! `cargo run --release -p recurrent-bench --example gflops [-- m k n ...]`.
use std::time::Instant;

fn rate(m: usize, k: usize, n: usize, panel: bool) -> f64 {
    let ldw = recurrent::__bench::padded_width::<f32>(n);
    let x = ndarray::Array2::from_shape_fn((m, k), |(i, p)| ((i * 7 + p) % 13) as f32 * 0.01);
    let wt: Vec<f32> = (0..k * ldw).map(|i| (i % 11) as f32 * 0.01).collect();
    let mut y = ndarray::Array2::<f32>::zeros((m, n));
    let wv = ndarray::ArrayView2::from_shape((k, ldw), &wt).unwrap();
    let panels = recurrent::__bench::PanelWeight::new(wv.slice(ndarray::s![.., ..n]));
    let flops = 2.0 * (m * k * n) as f64;
    let reps = ((2e9 / flops) as usize).max(3);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            if panel {
                recurrent::__bench::panel_matmul_acc(&x.view(), &panels, &mut y.view_mut());
            } else {
                recurrent::__bench::packed_matmul_acc(&x.view(), &wt, ldw, &mut y.view_mut());
            }
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    std::hint::black_box(&y);
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
            (64, 1024, 4096),
            (32, 1024, 4096),
            (32, 1024, 1024),
            (16, 256, 1024),
            (32, 256, 256),
            (1, 512, 2048),
            (1, 256, 512),
            (3200, 128, 1024),
            (12800, 512, 4096),
        ]
    };
    println!("isa {:?}", recurrent::isa());
    for (m, k, n) in shapes {
        println!(
            "{m:>6} x {k:>5} x {n:>5}: rows {:7.1}  panels {:7.1} GFLOP/s",
            rate(m, k, n, false),
            rate(m, k, n, true)
        );
    }
}
