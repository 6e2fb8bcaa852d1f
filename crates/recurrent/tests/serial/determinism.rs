//! The same layer, input and thread count give bit-identical results on every call:
//! whether a recurrence split between two threads found its second thread in time or ran
//! alone (`forward/pair.rs`), and whatever the memory layout of the caller's state and
//! input. (Agreement with torch and the reference loop is checked elsewhere; here every
//! comparison is bit for bit.)

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::random_array;
use ndarray::{s, Array3, ArrayD, ArrayViewD, ShapeBuilder};
use recurrent::{Float, Gru, Lstm, Nonlinearity, Rnn, RnnConfig};

/// Panics unless `a` and `b` have the same shape and the same bits everywhere.
fn assert_bits<T: Float>(a: &ArrayD<T>, b: &ArrayD<T>, what: &str) {
    if let Some(message) = bit_difference(a, b, what) {
        panic!("{message}");
    }
}

/// What differs between `a` and `b` in shape or bits, if anything.
fn bit_difference<T: Float>(a: &ArrayD<T>, b: &ArrayD<T>, what: &str) -> Option<String> {
    if a.shape() != b.shape() {
        return Some(format!(
            "{what}: shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        ));
    }
    let differ = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| x.as_f64().to_bits() != y.as_f64().to_bits())
        .count();
    let worst = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x.as_f64() - y.as_f64()).abs())
        .fold(0.0f64, f64::max);
    (differ > 0).then(|| format!("{what}: {differ} elements differ (by up to {worst:e})"))
}

/// Runs `f` on a two-thread pool whose other worker spins until `f` returns: a
/// recurrence split between two threads finds no second thread and runs alone.
fn alone<R: Send>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R + Send) -> R {
    let release = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    {
        let (release, started) = (release.clone(), started.clone());
        pool.spawn(move || {
            started.store(true, Ordering::Release);
            while !release.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        });
    }
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let result = pool.install(f);
    release.store(true, Ordering::Release);
    result
}

/// Runs `f` on a two-thread pool with both workers awake and a long wait for the second
/// one: a recurrence split between two threads runs on both.
fn together<R: Send>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R + Send) -> R {
    pool.broadcast(|_| ());
    pool.install(f)
}

/// Calls `f` once with the split recurrences forced to run alone and once with both
/// threads, on the same two-thread pool; records every result that is not bit-identical.
fn same_alone_and_together<T: Float>(
    failures: &mut Vec<String>,
    what: &str,
    f: impl Fn() -> Vec<ArrayD<T>> + Sync,
) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // No second thread ever comes: do not wait for it.
    recurrent::__bench::set_helper_wait(std::time::Duration::ZERO);
    let one = alone(&pool, &f);
    // A second thread comes whenever the OS gives the pool's worker a core.
    recurrent::__bench::set_helper_wait(std::time::Duration::from_secs(10));
    let two = together(&pool, &f);
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        failures.extend(bit_difference(a, b, &format!("{what}: result {i}")));
    }
}

#[test]
fn split_recurrences_alone_give_the_bits_of_two_threads() {
    let _serial = crate::serial();
    // One test (not several) because the helper wait is process-wide.
    let mut failures = Vec::new();

    // RNN, N < 16, H >= 256, N * H * H * L >= 2^24: columns split between two threads.
    // H = 256 (f32) and 320 (f64): the two halves' column blocks differ from the whole
    // row's, so a different order of sums would show.
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let rnn = Rnn::<f32>::seeded(RnnConfig::new(8, 256).nonlinearity(nl), 1).unwrap();
        let x = random_array::<f32>(&[128, 2, 8], 2, 0.8);
        let h0 = random_array::<f32>(&[1, 2, 256], 3, 0.8);
        same_alone_and_together(&mut failures, &format!("rnn {nl} f32"), || {
            let (o, h) = rnn.forward(x.view(), None).unwrap();
            let (o2, h2) = rnn.forward(x.view(), Some(h0.view())).unwrap();
            vec![o, h, o2, h2]
        });
    }
    let rnn = Rnn::<f64>::seeded(RnnConfig::new(8, 320).batch_first(true), 1).unwrap();
    let x = random_array::<f64>(&[2, 96, 8], 2, 0.8);
    same_alone_and_together(&mut failures, "rnn f64", || {
        let (o, h) = rnn.forward(x.view(), None).unwrap();
        vec![o, h]
    });

    // LSTM and GRU of 160 units (packed in two parts of 80), N = 2 over 30 steps: the
    // units split between two threads in lockstep.
    let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(8, 160), 1).unwrap();
    let x = random_array::<f32>(&[30, 2, 8], 2, 0.8);
    let h0 = random_array::<f32>(&[1, 2, 160], 3, 0.8);
    let c0 = random_array::<f32>(&[1, 2, 160], 4, 0.8);
    same_alone_and_together(&mut failures, "lstm f32", || {
        let (o, (h, c)) = lstm.forward(x.view(), None).unwrap();
        let (o2, (h2, c2)) = lstm
            .forward(x.view(), Some((h0.view(), c0.view())))
            .unwrap();
        let (o3, (h3, c3)) = lstm.forward_padded(x.view(), &[30, 17], None).unwrap();
        vec![o, h, c, o2, h2, c2, o3, h3, c3]
    });
    // With projections the units are not split; the guarantee holds all the same.
    let lstm_p = Lstm::<f32>::seeded(RnnConfig::lstm(8, 160).proj_size(40), 1).unwrap();
    same_alone_and_together(&mut failures, "lstm proj f32", || {
        let (o, (h, c)) = lstm_p.forward(x.view(), None).unwrap();
        vec![o, h, c]
    });
    let gru = Gru::<f32>::seeded(RnnConfig::gru(8, 160), 1).unwrap();
    same_alone_and_together(&mut failures, "gru f32", || {
        let (o, h) = gru.forward(x.view(), None).unwrap();
        let (o2, h2) = gru.forward(x.view(), Some(h0.view())).unwrap();
        vec![o, h, o2, h2]
    });
    let gru = Gru::<f64>::seeded(RnnConfig::gru(8, 160).batch_first(true), 1).unwrap();
    let x = random_array::<f64>(&[3, 30, 8], 2, 0.8);
    same_alone_and_together(&mut failures, "gru f64", || {
        let (o, h) = gru.forward(x.view(), None).unwrap();
        vec![o, h]
    });
    assert!(
        failures.is_empty(),
        "alone vs two threads:\n{}",
        failures.join("\n")
    );
}

/// `a` (3-D) in Fortran order, and as a view with non-unit strides into a larger array.
fn layouts<T: Float>(a: &ArrayD<T>) -> (Array3<T>, Array3<T>) {
    let a3 = a.view().into_dimensionality::<ndarray::Ix3>().unwrap();
    let mut fortran = Array3::<T>::zeros(a3.raw_dim().f());
    fortran.assign(&a3);
    let (d0, d1, d2) = a3.dim();
    // Every other element of a wider array, the batch axis reversed: strides (.., -.., 2).
    let mut big = Array3::<T>::from_elem((d0, d1, 2 * d2), T::nan());
    big.slice_mut(s![.., ..;-1, ..;2]).assign(&a3);
    (fortran, big)
}

/// The strided view [`layouts`] built into `big`.
fn strided<T: Float>(big: &Array3<T>) -> ArrayViewD<'_, T> {
    big.slice(s![.., ..;-1, ..;2]).into_dyn()
}

#[test]
fn any_memory_layout_of_the_state_gives_the_same_bits() {
    let _serial = crate::serial();
    // Narrow (H < 16), wide, split by columns (N < 16, H >= 256), split by batch
    // (N >= 16), and bidirectional.
    let cases = [
        (RnnConfig::new(6, 7), [9, 3, 6]),
        (RnnConfig::new(6, 40).num_layers(2), [9, 3, 6]),
        (RnnConfig::new(6, 256), [128, 2, 6]),
        (
            RnnConfig::new(6, 48).nonlinearity(Nonlinearity::Relu),
            [40, 20, 6],
        ),
        (RnnConfig::new(6, 33).bidirectional(true), [9, 3, 6]),
    ];
    for (config, shape) in cases {
        let rnn = Rnn::<f32>::seeded(config.clone(), 5).unwrap();
        let x = random_array::<f32>(&shape, 6, 0.8);
        let d = config.num_directions() * config.num_layers;
        let h0 = random_array::<f32>(&[d, shape[1], config.hidden_size], 7, 0.8);
        let (fortran, big) = layouts(&h0);
        let (want, want_h) = rnn.forward(x.view(), Some(h0.view())).unwrap();
        for (name, h) in [
            ("Fortran order", fortran.view().into_dyn()),
            ("strided", strided(&big)),
        ] {
            let (got, got_h) = rnn.forward(x.view(), Some(h)).unwrap();
            assert_bits(&got, &want, &format!("rnn {config}, h0 {name}: output"));
            assert_bits(&got_h, &want_h, &format!("rnn {config}, h0 {name}: h_n"));
        }
        // The input too (copied to row-major before anything reads it).
        let (x_f, x_big) = layouts(&x);
        for (name, xv) in [
            ("Fortran order", x_f.view().into_dyn()),
            ("strided", strided(&x_big)),
        ] {
            let (got, _) = rnn.forward(xv, Some(h0.view())).unwrap();
            assert_bits(&got, &want, &format!("rnn {config}, input {name}"));
        }
    }

    // LSTM and GRU, including the split in two parts (160 units).
    for hidden in [20, 160] {
        let x = random_array::<f64>(&[12, 3, 5], 1, 0.8);
        let h0 = random_array::<f64>(&[1, 3, hidden], 2, 0.8);
        let c0 = random_array::<f64>(&[1, 3, hidden], 3, 0.8);
        let (h_f, h_big) = layouts(&h0);
        let (c_f, c_big) = layouts(&c0);
        let lstm = Lstm::<f64>::seeded(RnnConfig::lstm(5, hidden), 0).unwrap();
        let (want, (want_h, want_c)) = lstm
            .forward(x.view(), Some((h0.view(), c0.view())))
            .unwrap();
        for (name, h, c) in [
            (
                "Fortran order",
                h_f.view().into_dyn(),
                c_f.view().into_dyn(),
            ),
            ("strided", strided(&h_big), strided(&c_big)),
        ] {
            let (got, (got_h, got_c)) = lstm.forward(x.view(), Some((h, c))).unwrap();
            assert_bits(&got, &want, &format!("lstm {hidden}, {name}: output"));
            assert_bits(&got_h, &want_h, &format!("lstm {hidden}, {name}: h_n"));
            assert_bits(&got_c, &want_c, &format!("lstm {hidden}, {name}: c_n"));
        }
        let gru = Gru::<f64>::seeded(RnnConfig::gru(5, hidden), 0).unwrap();
        let (want, _) = gru.forward(x.view(), Some(h0.view())).unwrap();
        for (name, h) in [
            ("Fortran order", h_f.view().into_dyn()),
            ("strided", strided(&h_big)),
        ] {
            let (got, _) = gru.forward(x.view(), Some(h)).unwrap();
            assert_bits(&got, &want, &format!("gru {hidden}, {name}"));
        }
    }
}

#[test]
fn a_stream_step_reads_any_layout_of_its_input_alike() {
    let _serial = crate::serial();
    // RnnStream::step takes the caller's (N, H_in) view as it is.
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(24, 40).num_layers(2), 8).unwrap();
    let xs = random_array::<f32>(&[5, 3, 24], 9, 0.8);
    let xs = xs.into_dimensionality::<ndarray::Ix3>().unwrap();
    let mut plain = rnn.stream(None).unwrap();
    let mut odd = rnn.stream(None).unwrap();
    for t in 0..5 {
        let x = xs.index_axis(ndarray::Axis(0), t);
        let want = plain.step(x).unwrap().to_owned().into_dyn();
        let mut x_f = ndarray::Array2::<f32>::zeros((3, 24).f());
        x_f.assign(&x);
        let got = odd.step(x_f.view()).unwrap().to_owned().into_dyn();
        assert_bits(&got, &want, &format!("step {t}, Fortran-order input"));
    }
}
