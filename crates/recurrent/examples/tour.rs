//! A tour of torch.nn.RNN's options, run with `cargo run --example tour`.
//!
//! It follows the classic "RNN from scratch" walk-through: write the recurrence as a
//! loop, check it against the layer, then look at shapes, batch_first and the parameters
//! of a deeper network. Unlike the widely copied version of that loop, layer k > 0 here
//! reads the previous layer's *output sequence* (not x_t), and h_0 is never written to.

use ndarray::{s, Array2, Array3, Axis};
use recurrent::{reference, Nonlinearity, Result, Rnn, RnnConfig};

fn max_abs_diff(a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>) -> f32 {
    (a - b).iter().fold(0.0, |m, d| m.max(d.abs()))
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
    println!(
        "the last output step equals h_n: {}",
        output.index_axis(Axis(0), seq_len - 1) == h_n.index_axis(Axis(0), 0)
    );

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
    println!("h_0 untouched: {}", h0.iter().all(|&v| v == 0.1));

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
    Ok(())
}
