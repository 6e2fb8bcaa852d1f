//! The threaded fast paths (directions in parallel, products split by rows or by
//! columns) give the reference loop's numbers, with 1 and 2 threads, on sizes large
//! enough to take them.

use crate::common;

use common::{assert_close, random_array};
use ndarray::ArrayD;
use recurrent::{reference, Float, Nonlinearity, Rnn, RnnConfig};

/// The recurrences split between two threads wait up to 200 µs for the second one by
/// default, and a worker the OS put to sleep can take milliseconds to wake here; a long
/// wait lets the two-thread paths run whenever the pool's second worker gets a core
/// within 10 s. (No test in this file keeps a worker busy: those are in busy_pool.rs, a
/// separate process. Either path gives the reference's numbers.)
fn wait_for_helpers() {
    recurrent::__bench::set_helper_wait(std::time::Duration::from_secs(10));
}

fn input<T: Float>(shape: &[usize], seed: u64) -> ArrayD<T> {
    random_array(shape, seed, 0.8)
}

fn check<T: Float>(config: RnnConfig, shape: &[usize], with_h0: bool) {
    let rnn = Rnn::<T>::seeded(config.clone(), 3).unwrap();
    let x = input::<T>(shape, 7);
    let layers = config.num_directions() * config.num_layers;
    let batch = if shape.len() == 3 {
        shape[usize::from(!config.batch_first)]
    } else {
        1
    };
    let h0_shape = if shape.len() == 3 {
        vec![layers, batch, config.hidden_size]
    } else {
        vec![layers, config.hidden_size]
    };
    let h0 = with_h0.then(|| input::<T>(&h0_shape, 11));
    let (want_out, want_hn) =
        reference::forward(&rnn, x.view(), h0.as_ref().map(|h| h.view())).unwrap();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (out, hn) = pool
            .install(|| rnn.forward(x.view(), h0.as_ref().map(|h| h.view())))
            .unwrap();
        let what = format!("{config} {shape:?} threads={threads}");
        assert_close(&out, &want_out, &format!("{what}: output"));
        assert_close(&hn, &want_hn, &format!("{what}: h_n"));
    }
}

#[test]
fn row_split_products() {
    let _serial = crate::serial();
    // 320 rows x 37 x 129 >= 2^20: the projections split by rows (with a leftover that
    // is not a tile multiple); N = 40 splits the recurrence by batch.
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let config = RnnConfig::new(37, 129).num_layers(2).nonlinearity(nl);
        check::<f32>(config.clone(), &[8, 40, 37], true);
        check::<f64>(config.batch_first(true), &[40, 8, 37], false);
    }
}

#[test]
fn column_split_products_for_batch_one() {
    let _serial = crate::serial();
    // N = 1 and a 1037-wide weight (>= 2^20 multiply-adds a step): split by columns,
    // with an odd edge.
    let config = RnnConfig::new(33, 1037);
    check::<f32>(config.clone(), &[4, 33], true);
    check::<f64>(config.bidirectional(true), &[3, 1, 33], false);
}

#[test]
fn narrow_layers_split_by_batch() {
    let _serial = crate::serial();
    // H < 16 runs the fused narrow kernel; N = 37 with enough work splits the batch
    // unevenly between two threads.
    let config = RnnConfig::new(15, 15).num_layers(2);
    check::<f32>(config.clone(), &[120, 37, 15], true);
    check::<f64>(
        config
            .batch_first(true)
            .bidirectional(true)
            .nonlinearity(Nonlinearity::Relu),
        &[37, 120, 15],
        true,
    );
}

#[test]
fn bidirectional_layers_in_parallel() {
    let _serial = crate::serial();
    let config = RnnConfig::new(5, 17).num_layers(3).bidirectional(true);
    check::<f32>(config.clone(), &[6, 4, 5], true);
    check::<f64>(
        config.batch_first(true).nonlinearity(Nonlinearity::Relu),
        &[4, 6, 5],
        true,
    );
}

#[test]
fn long_batch_one_recurrence_split_across_two_threads() {
    let _serial = crate::serial();
    wait_for_helpers();
    // N * H * H * L >= 2^24 with N < 16 and H >= 256: the recurrence runs on two threads
    // meeting at a per-step barrier.
    let config = RnnConfig::new(8, 512);
    check::<f32>(config.clone(), &[70, 1, 8], true);
    check::<f64>(
        config.nonlinearity(Nonlinearity::Relu).batch_first(true),
        &[2, 40, 8],
        true,
    );
}

/// An LSTM or GRU layer with lengths through the fast path on a pool of `threads`.
fn gated_forward<T: recurrent::Float>(
    kind: &str,
    layers: &recurrent::params::Layers<T>,
    x: &ndarray::ArrayD<T>,
    lengths: &[usize],
    h0: &ndarray::ArrayD<T>,
    c0: &ndarray::ArrayD<T>,
    pool: &rayon::ThreadPool,
) -> (ndarray::ArrayD<T>, ndarray::ArrayD<T>) {
    use recurrent::{Gru, Lstm};
    pool.install(|| match kind {
        "lstm" => {
            let lstm = Lstm::from_layers(layers.clone()).unwrap();
            let (o, (h, _)) = lstm
                .forward_padded(x.view(), lengths, Some((h0.view(), c0.view())))
                .unwrap();
            (o, h)
        }
        _ => Gru::from_layers(layers.clone())
            .unwrap()
            .forward_padded(x.view(), lengths, Some(h0.view()))
            .unwrap(),
    })
}

fn gated_case<T: recurrent::Float>(kind: &str, config: RnnConfig, shape: [usize; 3]) {
    // Lengths, h_0 and c_0, fast path against the reference loop on one and two threads.
    let batch = shape[usize::from(!config.batch_first)];
    let steps = shape[usize::from(config.batch_first)];
    let lengths: Vec<usize> = (0..batch).map(|n| steps - (n * 5) % steps).collect();
    let layers = recurrent::params::Layers::<T>::seeded(config.clone(), 4).unwrap();
    let x = input::<T>(&shape, 1);
    let d = config.num_directions() * config.num_layers;
    let h0 = input::<T>(&[d, batch, config.output_hidden_size()], 2);
    let c0 = input::<T>(&[d, batch, config.hidden_size], 3);
    let use_c = kind == "lstm";
    let (want, want_h, _) = reference::forward_layers(
        &layers,
        x.view(),
        Some(h0.view()),
        use_c.then(|| c0.view()),
        Some(&lengths),
    )
    .unwrap();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // Every worker running: the lockstep waits only briefly for a second thread.
        pool.broadcast(|_| ());
        let (out, h) = gated_forward(kind, &layers, &x, &lengths, &h0, &c0, &pool);
        let what = format!("{kind} {config} threads={threads}");
        assert_close(&out, &want, &format!("{what}: output"));
        assert_close(&h, &want_h, &format!("{what}: h_n"));
    }
}

#[test]
fn lstm_and_gru_threaded_paths_with_lengths_match_the_reference() {
    let _serial = crate::serial();
    // N = 40 >= 16 with enough work: each thread recurs over half of the batch.
    gated_case::<f32>(
        "lstm",
        RnnConfig::lstm(9, 40).num_layers(2).proj_size(7),
        [6, 40, 9],
    );
    gated_case::<f32>("gru", RnnConfig::gru(9, 40).bidirectional(true), [6, 40, 9]);
}

#[test]
fn gated_units_in_two_parts_on_one_and_two_threads() {
    let _serial = crate::serial();
    wait_for_helpers();
    // Parts of 64 + 66 units, sequential (bidirectional: one thread per direction).
    gated_case::<f32>(
        "lstm",
        RnnConfig::lstm(9, 130).num_layers(2).bidirectional(true),
        [12, 3, 9],
    );
    // 2 * 4H * H >= 2^17 per step over 33 steps: lockstep with two threads.
    gated_case::<f64>(
        "lstm",
        RnnConfig::lstm(5, 128).batch_first(true),
        [2, 33, 5],
    );
    gated_case::<f32>("gru", RnnConfig::gru(9, 150).bias(false), [40, 2, 9]);
    // A batch of 16 would split by batch, but W_hh is 4 MiB: lockstep by units, each
    // part projecting its columns of each step's input (8 rows or more).
    gated_case::<f32>("lstm", RnnConfig::lstm(4, 512), [3, 16, 4]);
    // Lockstep over 9 rows, batch first: each part projects the step's strided rows.
    gated_case::<f64>("gru", RnnConfig::gru(3, 140).batch_first(true), [9, 20, 3]);
    gated_case::<f64>(
        "gru",
        RnnConfig::gru(3, 210).num_layers(2).batch_first(true),
        [1, 40, 3],
    );
}

#[test]
fn states_in_any_memory_layout() {
    let _serial = crate::serial();
    use ndarray::{s, ShapeBuilder};
    use recurrent::{Gru, Lstm};
    // Fortran-order and reversed states give the numbers of row-major ones.
    let x = input::<f64>(&[5, 3, 4], 1);
    let h = input::<f64>(&[1, 3, 6], 2);
    let c = input::<f64>(&[1, 3, 6], 3);
    let mut h_f = ndarray::Array3::<f64>::zeros((1, 3, 6).f());
    h_f.assign(&h.view().into_dimensionality::<ndarray::Ix3>().unwrap());
    let mut c_f = ndarray::Array3::<f64>::zeros((1, 3, 6).f());
    c_f.assign(&c.view().into_dimensionality::<ndarray::Ix3>().unwrap());
    let h_rev_src = h.slice(s![.., .., ..;-1]).to_owned();
    let h_rev = h_rev_src.slice(s![.., .., ..;-1]); // same values, negative strides

    let gru = Gru::<f64>::seeded(RnnConfig::gru(4, 6), 0).unwrap();
    let (want, _) = gru.forward(x.view(), Some(h.view())).unwrap();
    for state in [h_f.view().into_dyn(), h_rev.view().into_dyn()] {
        let (got, _) = gru.forward(x.view(), Some(state.clone())).unwrap();
        assert_close(&got, &want, "gru, strided h0");
        let (got, _) = gru
            .forward_padded(x.view(), &[5, 2, 4], Some(state))
            .unwrap();
        let (want_p, _) = gru
            .forward_padded(x.view(), &[5, 2, 4], Some(h.view()))
            .unwrap();
        assert_close(&got, &want_p, "gru padded, strided h0");
    }
    let lstm = Lstm::<f64>::seeded(RnnConfig::lstm(4, 6), 0).unwrap();
    let (want, _) = lstm.forward(x.view(), Some((h.view(), c.view()))).unwrap();
    let (got, _) = lstm
        .forward(
            x.view(),
            Some((h_f.view().into_dyn(), c_f.view().into_dyn())),
        )
        .unwrap();
    assert_close(&got, &want, "lstm, Fortran-order states");

    // The backward copies the states row-major too.
    let go = input::<f64>(&[5, 3, 6], 4);
    let want = gru
        .backward(x.view(), Some(h.view()), go.view(), None)
        .unwrap();
    for state in [h_f.view().into_dyn(), h_rev.view().into_dyn()] {
        let got = gru
            .backward(x.view(), Some(state), go.view(), None)
            .unwrap();
        assert_close(&got.input, &want.input, "gru backward, strided h0");
        assert_close(&got.h0, &want.h0, "gru backward, strided h0: dh0");
    }
    let state = |h: ndarray::ArrayViewD<'_, f64>, c: ndarray::ArrayViewD<'_, f64>| {
        lstm.backward(x.view(), Some((h, c)), go.view(), (None, None))
            .unwrap()
    };
    let want = state(h.view(), c.view());
    let got = state(h_f.view().into_dyn(), c_f.view().into_dyn());
    assert_close(
        &got.input,
        &want.input,
        "lstm backward, Fortran-order states",
    );
    assert_close(
        got.c0.as_ref().unwrap(),
        want.c0.as_ref().unwrap(),
        "lstm backward, Fortran-order states: dc0",
    );
}

/// Every gradient of a backward on a pool of `threads`.
fn gradients_on<T: Float>(
    kind: recurrent::Kind,
    layers: &recurrent::params::Layers<T>,
    x: &ArrayD<T>,
    lengths: &[usize],
    grad_out: &ArrayD<T>,
    threads: usize,
) -> Vec<(String, ArrayD<T>)> {
    use recurrent::{Gru, Kind, Lstm};
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let g = pool
        .install(|| match kind {
            Kind::Rnn => Rnn::from_layers(layers.clone()).unwrap().backward_padded(
                x.view(),
                lengths,
                None,
                grad_out.view(),
                None,
            ),
            Kind::Lstm => Lstm::from_layers(layers.clone()).unwrap().backward_padded(
                x.view(),
                lengths,
                None,
                grad_out.view(),
                (None, None),
            ),
            Kind::Gru => Gru::from_layers(layers.clone()).unwrap().backward_padded(
                x.view(),
                lengths,
                None,
                grad_out.view(),
                None,
            ),
        })
        .unwrap();
    let mut all = g.parameters;
    all.push(("input".to_string(), g.input));
    all.push(("h0".to_string(), g.h0));
    all.extend(g.c0.map(|c| ("c0".to_string(), c)));
    all
}

#[test]
fn backward_splits_the_batch_between_two_threads() {
    let _serial = crate::serial();
    // N = 20 >= 16: with two threads the backward's forward and step loops each run
    // half of the batch on each thread. N = 3: the two directions of a bidirectional
    // layer run one per thread. (The one-thread path is the one the torch fixtures
    // check.)
    for batch in [20, 3] {
        let lengths: Vec<usize> = (0..batch).map(|n| 1 + (n * 3) % 7).collect();
        for config in [
            RnnConfig::new(5, 12).num_layers(2).bidirectional(true),
            RnnConfig::lstm(5, 10)
                .proj_size(4)
                .num_layers(2)
                .bidirectional(true),
            RnnConfig::lstm(5, 10).proj_size(4).num_layers(2),
            RnnConfig::gru(5, 9).batch_first(true).bidirectional(true),
        ] {
            let layers = recurrent::params::Layers::<f64>::seeded(config.clone(), 2).unwrap();
            let shape = if config.batch_first {
                [batch, 7, 5]
            } else {
                [7, batch, 5]
            };
            let x = input::<f64>(&shape, 1);
            let mut out_shape = shape;
            out_shape[2] = config.output_size();
            let grad_out = input::<f64>(&out_shape, 2);
            let one = gradients_on(config.kind, &layers, &x, &lengths, &grad_out, 1);
            let two = gradients_on(config.kind, &layers, &x, &lengths, &grad_out, 2);
            for ((name, a), (_, b)) in two.iter().zip(&one) {
                let what = format!("{config} N={batch}: {name}");
                common::assert_close_tol(a, b, 1e-10, 1e-12, &what);
            }
        }
    }
}
