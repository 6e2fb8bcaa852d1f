//! Property tests: the fast path (`Rnn::forward`) against the reference loop on random
//! configurations and inputs, plus identities torch's semantics imply (batch_first is a
//! permutation, unbatched is N=1, batch rows are independent, h_0 is only read, the
//! memory layout of the arguments does not matter).

use crate::common;

use common::{assert_close, assert_close_tol, random_array};
use ndarray::{s, ArrayD, Axis};
use proptest::prelude::*;
use recurrent::{reference, Float, Nonlinearity, Rnn, RnnConfig};

/// One random scenario: a configuration, an input form, and seeds.
#[derive(Debug, Clone)]
struct Scenario {
    input_size: usize,
    hidden_size: usize,
    num_layers: usize,
    relu: bool,
    bias: bool,
    batch_first: bool,
    bidirectional: bool,
    /// `None`: unbatched `(L, H_in)`.
    batch: Option<usize>,
    seq_len: usize,
    with_h0: bool,
    weight_seed: u64,
    data_seed: u64,
}

impl Scenario {
    fn config(&self) -> RnnConfig {
        RnnConfig::new(self.input_size, self.hidden_size)
            .num_layers(self.num_layers)
            .nonlinearity(if self.relu {
                Nonlinearity::Relu
            } else {
                Nonlinearity::Tanh
            })
            .bias(self.bias)
            .batch_first(self.batch_first)
            .bidirectional(self.bidirectional)
    }

    fn layers(&self) -> usize {
        self.num_layers * if self.bidirectional { 2 } else { 1 }
    }

    /// The input in the caller's axis order.
    fn input_shape(&self) -> Vec<usize> {
        match self.batch {
            None => vec![self.seq_len, self.input_size],
            Some(n) if self.batch_first => vec![n, self.seq_len, self.input_size],
            Some(n) => vec![self.seq_len, n, self.input_size],
        }
    }

    fn h0_shape(&self) -> Vec<usize> {
        match self.batch {
            None => vec![self.layers(), self.hidden_size],
            Some(n) => vec![self.layers(), n, self.hidden_size],
        }
    }

    fn rnn<T: Float>(&self) -> Rnn<T> {
        Rnn::seeded(self.config(), self.weight_seed).unwrap()
    }

    fn input<T: Float>(&self) -> ArrayD<T> {
        random_array(&self.input_shape(), self.data_seed, 1.5)
    }

    fn h0<T: Float>(&self) -> Option<ArrayD<T>> {
        self.with_h0.then(|| {
            random_array(
                &self.h0_shape(),
                self.data_seed ^ 0x9e37_79b9_7f4a_7c15,
                1.0,
            )
        })
    }
}

fn scenario(batched_only: bool) -> impl Strategy<Value = Scenario> {
    let batch = if batched_only {
        (0usize..=4).prop_map(Some).boxed()
    } else {
        prop_oneof![1 => Just(None), 3 => (0usize..=4).prop_map(Some)].boxed()
    };
    (
        (
            1usize..=9,
            prop::sample::select(vec![1usize, 2, 3, 5, 8, 16, 17, 33]),
            1usize..=3,
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (batch, 1usize..=7, any::<bool>()),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (input_size, hidden_size, num_layers),
                (relu, bias, batch_first, bidirectional),
                (batch, seq_len, with_h0),
                (weight_seed, data_seed),
            )| Scenario {
                input_size,
                hidden_size,
                num_layers,
                relu,
                bias,
                batch_first,
                bidirectional,
                batch,
                seq_len,
                with_h0,
                weight_seed,
                data_seed,
            },
        )
}

/// 64 cases per property keeps the file well under a second. A failure prints the
/// minimal scenario (its seeds reproduce it); nothing is written to the source tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(64)
    }
}

/// The shapes torch gives: output `(.., D*H)` in the input's axis order, h_n like h_0.
fn check_shapes<T>(sc: &Scenario, out: &ArrayD<T>, hn: &ArrayD<T>) {
    let mut want = sc.input_shape();
    *want.last_mut().unwrap() = sc.config().output_size();
    assert_eq!(out.shape(), want.as_slice(), "output shape");
    assert_eq!(hn.shape(), sc.h0_shape().as_slice(), "h_n shape");
}

fn fast_matches_reference<T: Float>(sc: &Scenario, rtol: f64, atol: f64) {
    let rnn = sc.rnn::<T>();
    let x = sc.input::<T>();
    let h0 = sc.h0::<T>();
    let (x_before, h0_before) = (x.clone(), h0.clone());
    let (out, hn) = rnn
        .forward(x.view(), h0.as_ref().map(|h| h.view()))
        .unwrap();
    let (ref_out, ref_hn) =
        reference::forward(&rnn, x.view(), h0.as_ref().map(|h| h.view())).unwrap();
    check_shapes(sc, &out, &hn);
    assert_close_tol(&out, &ref_out, rtol, atol, "output");
    assert_close_tol(&hn, &ref_hn, rtol, atol, "h_n");
    assert_eq!(x, x_before, "input modified");
    assert_eq!(h0, h0_before, "h_0 modified");
    // Running twice gives the same bits (no state is kept between calls).
    let (out2, hn2) = rnn
        .forward(x.view(), h0.as_ref().map(|h| h.view()))
        .unwrap();
    assert_eq!((out2, hn2), (out, hn), "forward is not repeatable");
}

/// The final state of each direction also appears in the output: forward direction at
/// the last step, reverse direction at the first (last layer only; every layer's is in
/// h_n).
fn hn_is_in_output(sc: &Scenario) {
    let rnn = sc.rnn::<f64>();
    let x = sc.input::<f64>();
    let h0 = sc.h0::<f64>();
    let (out, hn) = rnn
        .forward(x.view(), h0.as_ref().map(|h| h.view()))
        .unwrap();
    let h = sc.hidden_size;
    // Normalise to (L, N, D*H) and (layers, N, H).
    let out3 = match sc.batch {
        None => out.insert_axis(Axis(1)),
        Some(_) if sc.batch_first => out.permuted_axes(vec![1, 0, 2]),
        Some(_) => out,
    };
    let hn3 = if sc.batch.is_none() {
        hn.insert_axis(Axis(1))
    } else {
        hn
    };
    let top = (sc.num_layers - 1) * if sc.bidirectional { 2 } else { 1 };
    let last = sc.seq_len - 1;
    assert_eq!(
        out3.slice(s![last, .., ..h]),
        hn3.slice(s![top, .., ..]),
        "forward direction"
    );
    if sc.bidirectional {
        assert_eq!(
            out3.slice(s![0, .., h..]),
            hn3.slice(s![top + 1, .., ..]),
            "reverse direction"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fast_path_equals_reference_f32(sc in scenario(false)) {
        let (rtol, atol) = common::default_tolerances(recurrent::Dtype::F32);
        fast_matches_reference::<f32>(&sc, rtol, atol);
    }

    #[test]
    fn fast_path_equals_reference_f64(sc in scenario(false)) {
        fast_matches_reference::<f64>(&sc, 1e-12, 1e-12);
    }

    #[test]
    fn final_states_appear_in_the_output(sc in scenario(false)) {
        hn_is_in_output(&sc);
    }

    /// batch_first=True on (N, L, F) is batch_first=False on the permuted (L, N, F), with
    /// the output permuted back; h_n is (layers, N, H) either way.
    #[test]
    fn batch_first_is_a_permutation(sc in scenario(true)) {
        let seq_first = Scenario { batch_first: false, ..sc.clone() };
        let bf = Scenario { batch_first: true, ..sc };
        let x = seq_first.input::<f64>(); // (L, N, F)
        let h0 = seq_first.h0::<f64>();
        let rnn = seq_first.rnn::<f64>();
        let (out, hn) = rnn.forward(x.view(), h0.as_ref().map(|h| h.view())).unwrap();

        let mut rnn_bf = bf.rnn::<f64>();
        assert!(rnn_bf.config().batch_first);
        let x_bf = x.view().permuted_axes(vec![1, 0, 2]).as_standard_layout().into_owned();
        let (out_bf, hn_bf) = rnn_bf.forward(x_bf.view(), h0.as_ref().map(|h| h.view())).unwrap();
        let back = out_bf.view().permuted_axes(vec![1, 0, 2]).to_owned();
        assert_close_tol(&back, &out, 1e-12, 1e-12, "output");
        assert_close_tol(&hn_bf, &hn, 1e-12, 1e-12, "h_n");

        // set_batch_first on the same layer switches the reading, not the parameters.
        rnn_bf.set_batch_first(false);
        let (out_again, hn_again) = rnn_bf.forward(x.view(), h0.as_ref().map(|h| h.view())).unwrap();
        prop_assert_eq!(out_again, out);
        prop_assert_eq!(hn_again, hn);
    }

    /// An unbatched (L, F) input is the batched N=1 input with the batch axis removed, in
    /// either axis order.
    #[test]
    fn unbatched_is_batch_of_one(sc in scenario(false)) {
        let un = Scenario { batch: None, ..sc };
        let x = un.input::<f64>(); // (L, F)
        let h0 = un.h0::<f64>(); // (layers, H)
        let rnn = un.rnn::<f64>();
        let (out, hn) = rnn.forward(x.view(), h0.as_ref().map(|h| h.view())).unwrap();
        let batch_axis = if un.batch_first { 0 } else { 1 };
        let xb = x.clone().insert_axis(Axis(batch_axis));
        let h0b = h0.as_ref().map(|h| h.clone().insert_axis(Axis(1)));
        let (outb, hnb) = rnn.forward(xb.view(), h0b.as_ref().map(|h| h.view())).unwrap();
        assert_close_tol(&outb.index_axis(Axis(batch_axis), 0).to_owned(), &out, 1e-12, 1e-12, "output");
        assert_close_tol(&hnb.index_axis(Axis(1), 0).to_owned(), &hn, 1e-12, 1e-12, "h_n");
    }

    /// Row n of a batched result is sequence n run alone (with row n of h_0).
    #[test]
    fn batch_rows_are_independent(sc in scenario(true)) {
        let rnn = sc.rnn::<f64>();
        let x = sc.input::<f64>();
        let h0 = sc.h0::<f64>();
        let (out, hn) = rnn.forward(x.view(), h0.as_ref().map(|h| h.view())).unwrap();
        let batch_axis = Axis(usize::from(!sc.batch_first));
        for n in 0..sc.batch.unwrap() {
            let xn = x.slice_axis(batch_axis, (n..n + 1).into()).to_owned();
            let h0n = h0.as_ref().map(|h| h.slice_axis(Axis(1), (n..n + 1).into()).to_owned());
            let (outn, hnn) = rnn.forward(xn.view(), h0n.as_ref().map(|h| h.view())).unwrap();
            let want_out = out.slice_axis(batch_axis, (n..n + 1).into()).to_owned();
            let want_hn = hn.slice_axis(Axis(1), (n..n + 1).into()).to_owned();
            assert_close_tol(&outn, &want_out, 1e-12, 1e-12, &format!("row {n}: output"));
            assert_close_tol(&hnn, &want_hn, 1e-12, 1e-12, &format!("row {n}: h_n"));
        }
    }

    /// Inputs and h_0 given as strided, transposed, reversed or broadcast views give the
    /// same result as contiguous copies.
    #[test]
    fn argument_layout_does_not_matter(sc in scenario(false)) {
        let rnn = sc.rnn::<f64>();
        let x = sc.input::<f64>();
        let h0 = sc.h0::<f64>().unwrap_or_else(|| random_array(&sc.h0_shape(), 7, 1.0));
        let (out, hn) = rnn.forward(x.view(), Some(h0.view())).unwrap();

        // The same values stored with the feature axis first, then viewed back.
        let nd = x.ndim();
        let mut order: Vec<usize> = (0..nd).collect();
        order.rotate_right(1);
        let stored = x.view().permuted_axes(order.clone()).as_standard_layout().into_owned();
        let mut inverse = vec![0; nd];
        for (i, &o) in order.iter().enumerate() {
            inverse[o] = i;
        }
        let x_strided = stored.view().permuted_axes(inverse);
        // h_0 stored time-reversed along its last axis and viewed with a negative stride.
        let h_rev = h0.slice_axis(Axis(h0.ndim() - 1), ndarray::Slice::new(0, None, -1)).to_owned();
        let h_strided = h_rev.slice_axis(Axis(h0.ndim() - 1), ndarray::Slice::new(0, None, -1));
        prop_assert_eq!(h_strided.to_owned(), h0.clone());
        let (o2, h2) = rnn.forward(x_strided, Some(h_strided)).unwrap();
        assert_close_tol(&o2, &out, 1e-12, 1e-12, "strided input: output");
        assert_close_tol(&h2, &hn, 1e-12, 1e-12, "strided input: h_n");

        // A broadcast h_0 (stride 0 over the layer axis) equals its materialised copy.
        let row = h0.index_axis(Axis(0), 0);
        let h_bc = row.broadcast(h0.shape()).unwrap();
        let h_bc_owned = h_bc.to_owned();
        let (o3, h3) = rnn.forward(x.view(), Some(h_bc)).unwrap();
        let (o4, h4) = rnn.forward(x.view(), Some(h_bc_owned.view())).unwrap();
        assert_close_tol(&o3, &o4, 1e-12, 1e-12, "broadcast h_0: output");
        assert_close_tol(&h3, &h4, 1e-12, 1e-12, "broadcast h_0: h_n");
    }

    /// Without h_0 is with h_0 = zeros.
    #[test]
    fn missing_h0_is_zeros(sc in scenario(false)) {
        let rnn = sc.rnn::<f32>();
        let x = sc.input::<f32>();
        let zeros = ArrayD::<f32>::zeros(sc.h0_shape());
        let (o1, h1) = rnn.forward(x.view(), None).unwrap();
        let (o2, h2) = rnn.forward(x.view(), Some(zeros.view())).unwrap();
        assert_close(&o1, &o2, "output");
        assert_close(&h1, &h2, "h_n");
    }
}

#[test]
fn every_width_below_one_vector_matches_the_reference() {
    // H < 16 runs the fused narrow kernel (kernels/narrow.rs): every such width, both
    // activations, both directions, both dtypes, with h_0 and batch_first.
    for hidden in 1..16 {
        let sc = Scenario {
            input_size: 1 + hidden % 5,
            hidden_size: hidden,
            num_layers: 2,
            relu: hidden % 2 == 0,
            bias: hidden % 3 != 0,
            batch_first: hidden % 4 == 1,
            bidirectional: true,
            batch: Some(3),
            seq_len: 6,
            with_h0: hidden % 2 == 1,
            weight_seed: hidden as u64,
            data_seed: 100 + hidden as u64,
        };
        fast_matches_reference::<f32>(&sc, 1e-5, 1e-5);
        fast_matches_reference::<f64>(&sc, 1e-12, 1e-12);
    }
}
