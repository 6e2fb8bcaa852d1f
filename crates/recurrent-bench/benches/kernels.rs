//! Which product kernel? The shapes an RNN forward multiplies, single-threaded, f32,
//! through `matrixmultiply` (ndarray's own backend), `gemm` (faer's), and this crate's
//! panel GEMM (`kernels/panel.rs`), which reads `Wᵀ` packed once into column panels
//! instead of packing `W` on every call.
//!
//! `cargo bench -p recurrent-bench --bench kernels`. Results and the choice are in the README.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// (label, m, k, n): C (m x n) = A (m x k) * B (k x n), B a transposed weight (strided).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("step N=5 H=3", 5, 3, 3),
    ("step N=1 H=64", 1, 64, 64),
    ("step N=1 H=512", 1, 512, 512),
    ("step N=32 H=256", 32, 256, 256),
    ("step N=64 H=1024", 64, 1024, 1024),
    ("proj L*N=3200 128->256", 3200, 128, 256),
    ("proj L*N=500 256->512", 500, 256, 512),
    ("proj L*N=12800 512->1024", 12800, 512, 1024),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_f32");
    for &(label, m, k, n) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
        // The weight is stored (n, k) row-major as torch stores W; we multiply by W^T.
        let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let mut out = vec![0f32; m * n];
        group.bench_function(BenchmarkId::new("matrixmultiply", label), |bch| {
            bch.iter(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    w.as_ptr(),
                    1,
                    k as isize,
                    1.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                );
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new("gemm", label), |bch| {
            bch.iter(|| unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    true,
                    a.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                black_box(&out);
            })
        });
        // The weight transposed and packed once into column panels, as the layer stores it.
        let wt = ndarray::ArrayView2::from_shape((n, k), &w).expect("shape");
        let panels = recurrent::__bench::PanelWeight::new(wt.t());
        let x = ndarray::ArrayView2::from_shape((m, k), &a).expect("shape");
        let mut y = ndarray::Array2::<f32>::zeros((m, n));
        group.bench_function(BenchmarkId::new("panels", label), |bch| {
            bch.iter(|| {
                recurrent::__bench::panel_matmul_acc(&x, &panels, &mut y.view_mut());
                black_box(&y);
            })
        });
    }
    group.finish();
}

/// The activation every step applies: libm's scalar `tanhf` against the vectorised one.
fn tanh(c: &mut Criterion) {
    let mut group = c.benchmark_group("tanh_f32");
    for len in [15usize, 64, 1024] {
        let xs: Vec<f32> = (0..len).map(|i| (i as f32 - 30.0) * 0.07).collect();
        let mut ys = xs.clone();
        group.bench_function(BenchmarkId::new("libm tanhf", len), |bch| {
            bch.iter(|| {
                ys.copy_from_slice(&xs);
                for y in &mut ys {
                    *y = y.tanh();
                }
                black_box(&ys);
            })
        });
        group.bench_function(BenchmarkId::new("vectorised", len), |bch| {
            bch.iter(|| {
                ys.copy_from_slice(&xs);
                recurrent::__bench::tanh_slice_f32(&mut ys);
                black_box(&ys);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = bench, tanh
}
criterion_main!(benches);
