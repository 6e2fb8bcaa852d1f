//! A tour of torch's recurrent layers, run with `cargo run --example tour`.
//!
//! Parts 1-5 follow the classic "RNN from scratch" walk-through: write the recurrence as
//! a loop, check it against the layer, then look at shapes, batch_first, the parameters
//! of a deeper network and streaming. Unlike the widely copied version of that loop,
//! layer k > 0 here reads the previous layer's *output sequence* (not x_t), and h_0 is
//! never written to. Parts 6-9 do the same for the rest of the family: an LSTM with
//! `proj_size` whose `(h, c)` is carried from call to call, a bidirectional GRU,
//! sequences of different lengths, and the cells. Every part prints its largest
//! difference from the reference loop (`recurrent::reference`), the readable spec.

use std::sync::atomic::{AtomicU32, Ordering};

use ndarray::{s, Array2, Array3, Axis};
use recurrent::{reference, Gru, GruCell, Lstm, Nonlinearity, Result, Rnn, RnnConfig};

/// The largest difference any part of the tour found (as f32 bits; positive floats
/// order as their bits do). The tour fails at the end if it is not within f32 rounding.
static WORST: AtomicU32 = AtomicU32::new(0);

fn max_abs_diff(a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "compared arrays differ in shape");
    let worst = (a - b).iter().fold(0.0f32, |m, d| {
        if d.is_nan() {
            f32::INFINITY
        } else {
            m.max(d.abs())
        }
    });
    WORST.fetch_max(worst.to_bits(), Ordering::Relaxed);
    worst
}

fn main() -> Result<()> {
    // 1. The recurrence by hand, for one layer: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
    println!("== 1. The loop and the layer agree");
    let (seq_len, batch, input_size, hidden) = (4, 5, 2, 3);
    let rnn = Rnn::<f32>::seeded(RnnConfig::new(input_size, hidden), 0)?;
    let x = Array3::from_shape_fn((seq_len, batch, input_size), |(t, n, i)| {
        ((t * 7 + n * 3 + i) as f32 * 0.37).sin()
    });
    let p = rnn.direction_params(0).expect("layer 0 exists"); // (layer 0, forward)
    let (b_ih, b_hh) = (p.b_ih.clone().unwrap(), p.b_hh.clone().unwrap());
    let mut h = Array2::<f32>::zeros((batch, hidden)); // h_0 = 0, our own copy
    let mut by_hand = Array3::<f32>::zeros((seq_len, batch, hidden));
    for t in 0..seq_len {
        let pre = x.index_axis(Axis(0), t).dot(&p.w_ih.t()) + &b_ih + h.dot(&p.w_hh.t()) + &b_hh;
        h = pre.mapv(f32::tanh);
        by_hand.index_axis_mut(Axis(0), t).assign(&h);
    }
    let (output, h_n) = rnn.forward(x.view().into_dyn(), None)?;
    println!("output {:?}, h_n {:?}", output.shape(), h_n.shape());
    println!(
        "max |loop - layer| = {:e}",
        max_abs_diff(&by_hand.into_dyn(), &output)
    );
    let (ref_out, _) = reference::forward(&rnn, x.view().into_dyn(), None)?;
    println!(
        "max |reference - layer| = {:e}",
        max_abs_diff(&ref_out, &output)
    );
    let last_is_h_n = output.index_axis(Axis(0), seq_len - 1) == h_n.index_axis(Axis(0), 0);
    println!("the last output step equals h_n: {last_is_h_n}");
    assert!(last_is_h_n);

    // 2. Unbatched vs batched: (L, H_in) behaves like a batch of one.
    println!("\n== 2. Unbatched input");
    let one = x.slice(s![.., 0, ..]).to_owned(); // (L, H_in)
    let (out_unbatched, hn_unbatched) = rnn.forward(one.view().into_dyn(), None)?;
    println!(
        "input {:?} -> output {:?}, h_n {:?}",
        one.shape(),
        out_unbatched.shape(),
        hn_unbatched.shape()
    );
    let batch_row = output.slice(s![.., 0, ..]).to_owned().into_dyn();
    println!(
        "equal to batch element 0: max diff {:e}",
        max_abs_diff(&out_unbatched, &batch_row)
    );

    // 3. batch_first changes input and output only; h_0 / h_n stay (D*layers, N, H).
    println!("\n== 3. batch_first");
    let mut rnn_bf = rnn.clone();
    rnn_bf.set_batch_first(true);
    let x_bf = x.view().permuted_axes([1, 0, 2]); // (N, L, H_in)
    let h0 = Array3::<f32>::from_elem((1, batch, hidden), 0.1);
    let (out_bf, hn_bf) = rnn_bf.forward(x_bf.into_dyn(), Some(h0.view().into_dyn()))?;
    let (out_sf, hn_sf) = rnn.forward(x.view().into_dyn(), Some(h0.view().into_dyn()))?;
    println!(
        "batch_first output {:?}, h_n {:?}",
        out_bf.shape(),
        hn_bf.shape()
    );
    let out_bf_as_sf = out_bf.view().permuted_axes(vec![1, 0, 2]).to_owned();
    println!(
        "same numbers as sequence-first: output diff {:e}, h_n diff {:e}",
        max_abs_diff(&out_bf_as_sf, &out_sf),
        max_abs_diff(&hn_bf, &hn_sf)
    );
    let untouched = h0.iter().all(|&v| v == 0.1);
    println!("h_0 untouched: {untouched}");
    assert!(untouched);

    // 4. A 3-layer bidirectional relu RNN: layer k > 0 reads 2H-wide outputs.
    println!(
        "\n== 4. Parameters of RNN(10, 20, num_layers=3, nonlinearity='relu', bidirectional=True)"
    );
    let deep = Rnn::<f32>::seeded(
        RnnConfig::new(10, 20)
            .num_layers(3)
            .nonlinearity(Nonlinearity::Relu)
            .bidirectional(true),
        1,
    )?;
    println!("{}", deep.config());
    for (name, tensor) in deep.named_parameters() {
        println!("  {name:<22} {:?}", tensor.shape());
    }
    println!("  total: {} parameters", deep.num_parameters());
    let x = Array3::<f32>::from_elem((6, 2, 10), 0.5);
    let (out, hn) = deep.forward(x.view().into_dyn(), None)?;
    println!(
        "output {:?} (L, N, 2*H), h_n {:?} (2*3, N, H)",
        out.shape(),
        hn.shape()
    );
    let (ref_out, ref_hn) = reference::forward(&deep, x.view().into_dyn(), None)?;
    println!(
        "reference agrees: output diff {:e}, h_n diff {:e}",
        max_abs_diff(&out, &ref_out),
        max_abs_diff(&hn, &ref_hn)
    );

    // 5. A live input, one step at a time: the stream carries the state between steps
    //    and gives what one call over the whole sequence gives.
    println!("\n== 5. Streaming RNN(10, 20, num_layers=2) one step at a time");
    let layered = Rnn::<f32>::seeded(RnnConfig::new(10, 20).num_layers(2), 2)?;
    let x = Array3::<f32>::from_shape_fn((8, 1, 10), |(t, _, i)| ((t * 10 + i) as f32 * 0.1).cos());
    let (whole, hn_whole) = layered.forward(x.view().into_dyn(), None)?;
    let mut stream = layered.stream(None)?;
    let mut worst = 0.0f32;
    for (t, x_t) in x.outer_iter().enumerate() {
        let y_t = stream.step(x_t)?; // (N, H): this step's output, a view into the stream
        let want = whole.index_axis(ndarray::Axis(0), t);
        worst = worst.max(max_abs_diff(&y_t.to_owned().into_dyn(), &want.to_owned()));
    }
    let hn_stream = stream.state().map(|h| h.to_owned());
    println!(
        "8 steps streamed vs one call: output diff {:e}, h_n diff {:e}",
        worst,
        hn_stream.map_or(f32::NAN, |h| max_abs_diff(&h, &hn_whole))
    );

    // 6. An LSTM with a projection: h is P wide, c is H wide. The (h, c) one call
    //    returns is the next call's initial state as it is.
    println!("\n== 6. LSTM(10, 20, num_layers=2, proj_size=5), (h, c) carried between calls");
    let lstm = Lstm::<f32>::seeded(RnnConfig::lstm(10, 20).num_layers(2).proj_size(5), 3)?;
    let x = Array3::<f32>::from_shape_fn((9, 3, 10), |(t, n, i)| {
        ((t + 2 * n + i) as f32 * 0.21).sin()
    });
    let (whole, (h_n, c_n)) = lstm.forward(x.view().into_dyn(), None)?;
    println!(
        "output {:?} (L, N, P), h_n {:?} (layers, N, P), c_n {:?} (layers, N, H)",
        whole.shape(),
        h_n.shape(),
        c_n.shape()
    );
    let (first, state) = lstm.forward(x.slice(s![..4, .., ..]).into_dyn(), None)?;
    let (rest, (h_2, c_2)) = lstm.forward(x.slice(s![4.., .., ..]).into_dyn(), &state)?;
    let joined = ndarray::concatenate(Axis(0), &[first.view(), rest.view()]).expect("same widths");
    println!(
        "4 + 5 steps vs 9: output diff {:e}, h_n diff {:e}, c_n diff {:e}",
        max_abs_diff(&joined, &whole),
        max_abs_diff(&h_2, &h_n),
        max_abs_diff(&c_2, &c_n)
    );
    // The same LSTM streamed one step at a time (every kind streams): the stream keeps
    // (h, c) and hands back each step's output as a view.
    let mut live = lstm.stream(None)?;
    let mut worst = 0.0f32;
    for (t, x_t) in x.outer_iter().enumerate() {
        let y_t = live.step(x_t)?; // (N, P)
        let want = whole.index_axis(Axis(0), t).to_owned();
        worst = worst.max(max_abs_diff(&y_t.to_owned().into_dyn(), &want));
    }
    println!("9 steps streamed vs one call: output diff {worst:e}");
    assert!(worst < 1e-5, "the LSTM stream agrees with one call");
    let (ref_out, ref_hn, ref_cn) =
        reference::forward_layers(lstm.layers(), x.view().into_dyn(), None, None, None)?;
    println!(
        "reference agrees: output diff {:e}, h_n diff {:e}, c_n diff {:e}",
        max_abs_diff(&whole, &ref_out),
        max_abs_diff(&h_n, &ref_hn),
        ref_cn.map_or(f32::NAN, |c| max_abs_diff(&c_n, &c))
    );

    // 7. A bidirectional GRU: gates r, z, n, with r applied to (W_hn h + b_hn).
    println!("\n== 7. GRU(10, 16, bidirectional=True)");
    let gru = Gru::<f32>::seeded(RnnConfig::gru(10, 16).bidirectional(true), 4)?;
    let (out, hn) = gru.forward(x.view().into_dyn(), None)?;
    let (ref_out, ref_hn, _) =
        reference::forward_layers(gru.layers(), x.view().into_dyn(), None, None, None)?;
    println!(
        "output {:?} (L, N, 2*H), h_n {:?}; reference: output diff {:e}, h_n diff {:e}",
        out.shape(),
        hn.shape(),
        max_abs_diff(&out, &ref_out),
        max_abs_diff(&hn, &ref_hn)
    );

    // 8. Sequences of different lengths in one padded batch: what torch computes with
    //    pack_padded_sequence -> layer -> pad_packed_sequence.
    println!("\n== 8. Lengths [9, 2, 6] through the LSTM of part 6");
    let lengths = [9, 2, 6];
    let (padded, (h_n, _)) = lstm.forward_padded(x.view().into_dyn(), &lengths, None)?;
    let (ref_out, ref_hn, _) = reference::forward_layers(
        lstm.layers(),
        x.view().into_dyn(),
        None,
        None,
        Some(&lengths),
    )?;
    println!(
        "reference agrees: output diff {:e}, h_n diff {:e}",
        max_abs_diff(&padded, &ref_out),
        max_abs_diff(&h_n, &ref_hn)
    );
    let alone = x.slice(s![..2, 1..2, ..]); // sequence 1, its 2 steps only
    let (_, (h_alone, _)) = lstm.forward(alone.into_dyn(), None)?;
    let zeros = padded.slice(s![2.., 1, ..]).iter().all(|&v| v == 0.0);
    assert!(zeros);
    println!(
        "outputs past a length are zero: {zeros}; sequence 1's h_n is its state after 2 steps: diff {:e}",
        max_abs_diff(&h_n.slice(s![.., 1..2, ..]).to_owned().into_dyn(), &h_alone)
    );

    // 9. The cells: one step at a time, the state in the caller's hands. A GRUCell
    //    looped over time is a one-layer GRU with the cell's weights.
    println!("\n== 9. GRUCell(10, 16) looped over 9 steps vs GRU(10, 16)");
    let cell = GruCell::<f32>::seeded(10, 16, true, 5)?;
    let layer = Gru::<f32>::from_named(
        RnnConfig::gru(10, 16),
        cell.named_parameters()
            .map(|(name, t)| (format!("{name}_l0"), t.to_owned())),
    )?;
    let mut h = cell.forward(x.index_axis(Axis(0), 0).into_dyn(), None)?;
    for t in 1..9 {
        h = cell.forward(x.index_axis(Axis(0), t).into_dyn(), &h)?;
    }
    let (_, hn) = layer.forward(x.view().into_dyn(), None)?;
    let (_, ref_hn, _) =
        reference::forward_layers(layer.layers(), x.view().into_dyn(), None, None, None)?;
    println!(
        "cell loop vs layer h_n diff {:e}; vs reference {:e}",
        max_abs_diff(&h, &hn.index_axis(Axis(0), 0).to_owned()),
        max_abs_diff(&h, &ref_hn.index_axis(Axis(0), 0).to_owned())
    );

    let worst = f32::from_bits(WORST.load(Ordering::Relaxed));
    println!("\nlargest difference anywhere in the tour: {worst:e}");
    assert!(
        worst <= 1e-5,
        "a part of the tour disagrees with the reference"
    );
    Ok(())
}
