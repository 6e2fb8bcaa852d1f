//! The threaded fast paths (directions in parallel, products split by rows or by
//! columns) give the reference loop's numbers, with 1 and 2 threads, on sizes large
//! enough to take them.

mod common;

use common::{assert_close, random_array};
use ndarray::ArrayD;
use recurrent::{reference, Float, Nonlinearity, Rnn, RnnConfig};

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
    // N = 40 rows per step: split by rows (with a leftover that is not a tile multiple).
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let config = RnnConfig::new(37, 129).num_layers(2).nonlinearity(nl);
        check::<f32>(config.clone(), &[3, 40, 37], true);
        check::<f64>(config.batch_first(true), &[40, 3, 37], false);
    }
}

#[test]
fn column_split_products_for_batch_one() {
    // N = 1 and a 520-wide weight: split by columns, with an odd edge.
    let config = RnnConfig::new(33, 520);
    check::<f32>(config.clone(), &[4, 33], true);
    check::<f64>(config.bidirectional(true), &[3, 1, 33], false);
}

#[test]
fn bidirectional_layers_in_parallel() {
    let config = RnnConfig::new(5, 17).num_layers(3).bidirectional(true);
    check::<f32>(config.clone(), &[6, 4, 5], true);
    check::<f64>(
        config.batch_first(true).nonlinearity(Nonlinearity::Relu),
        &[4, 6, 5],
        true,
    );
}
