//! `recurrent bench`: times the forward call in-process, prints one JSON line.
//!
//! Method: one warm-up call plus 0.1 s of warm-up, then samples of `k` calls each (`k`
//! chosen so a sample takes about a tenth of `--min-time`) until at least `--min-time`
//! seconds and 5 samples; the reported time is the median over samples of the time per
//! call. No file I/O is timed; input and weights are generated in memory. The JSON line
//! names the kernel path that ran (`"isa"`: `avx512`, `avx2` or `portable`; set
//! `RECURRENT_ISA` to force one, see `recurrent::isa`).

use std::time::{Duration, Instant};

use ndarray::{Array3, ArrayD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recurrent::{Float, Gru, Kind, Lstm, Recurrent, RecurrentStream, Rnn, RnnConfig};

/// The layer being timed.
enum Model<T> {
    Rnn(Rnn<T>),
    Lstm(Lstm<T>),
    Gru(Gru<T>),
}

use crate::{BenchArgs, DtypeArg, ModeArg};

/// `recurrent bench`.
pub fn bench(args: BenchArgs) -> Result<(), String> {
    // An invalid RECURRENT_ISA fails here, before any measurement.
    let isa = recurrent::isa().map_err(|e| e.to_string())?;
    if args.train && args.stream {
        return Err("--train and --stream: time one or the other".to_string());
    }
    if args.stream && args.bidirectional {
        return Err("--stream: a bidirectional layer cannot stream".to_string());
    }
    if args.threads == 0 {
        return Err("--threads: expected at least 1".to_string());
    }
    if !(args.min_time > 0.0 && args.min_time.is_finite()) {
        return Err(format!(
            "--min-time: expected a positive number of seconds, got {}",
            args.min_time
        ));
    }
    if args.seq_len == 0 {
        return Err("--seq-len: expected at least 1".to_string());
    }
    let input_elements = args
        .seq_len
        .checked_mul(args.batch)
        .and_then(|n| n.checked_mul(args.input_size.max(1)));
    if input_elements.is_none_or(|n| n > 1 << 32) {
        return Err(format!(
            "--seq-len {} x --batch {} x --input-size {}: at most 2^32 input elements",
            args.seq_len, args.batch, args.input_size
        ));
    }
    let base = match args.mode {
        ModeArg::Rnn => RnnConfig::new(args.input_size, args.hidden_size),
        ModeArg::Lstm => RnnConfig::lstm(args.input_size, args.hidden_size),
        ModeArg::Gru => RnnConfig::gru(args.input_size, args.hidden_size),
    };
    let config = base
        .proj_size(args.proj_size)
        .num_layers(args.num_layers)
        .nonlinearity(args.nonlinearity.into())
        .bidirectional(args.bidirectional);
    let median = match args.dtype {
        DtypeArg::F32 => time_forward::<f32>(&args, config.clone())?,
        DtypeArg::F64 => time_forward::<f64>(&args, config.clone())?,
    };
    // Forward + backward: the backward's products are twice the forward's.
    let flops =
        forward_flops(&config, args.seq_len, args.batch) * if args.train { 3.0 } else { 1.0 };
    let secs = median.0.as_secs_f64();
    println!(
        "{{\"mode\":\"{}\",\"train\":{},\"proj_size\":{},\"stream\":{},\"nonlinearity\":\"{}\",\"input_size\":{},\"hidden_size\":{},\"num_layers\":{},\"seq_len\":{},\"batch\":{},\"bidirectional\":{},\"threads\":{},\"dtype\":\"{}\",\"isa\":\"{}\",\"median_us\":{:.3},\"step_us\":{:.4},\"gflops\":{:.3},\"flops_per_call\":{},\"samples\":{},\"calls_per_sample\":{}}}",
        config.kind.name().to_lowercase(),
        args.train,
        config.proj_size,
        args.stream,
        config.nonlinearity,
        args.input_size,
        args.hidden_size,
        args.num_layers,
        args.seq_len,
        args.batch,
        args.bidirectional,
        args.threads,
        match args.dtype {
            DtypeArg::F32 => "f32",
            DtypeArg::F64 => "f64",
        },
        isa,
        secs * 1e6,
        secs * 1e6 / args.seq_len as f64,
        flops / secs / 1e9,
        flops,
        median.1,
        median.2,
    );
    Ok(())
}

/// Multiply-add FLOPs of one forward call: `2 L N (in_k H + H H)` per layer and
/// direction, where layer k > 0 reads `D H` inputs.
pub fn forward_flops(config: &RnnConfig, seq_len: usize, batch: usize) -> f64 {
    let h = config.hidden_size as f64;
    let g = config.kind.gate_count() as f64;
    let h_out = config.output_hidden_size() as f64;
    let proj = config.proj_size as f64;
    let mut per_step = 0.0;
    for layer in 0..config.num_layers {
        per_step += config.num_directions() as f64
            * (g * h * (config.layer_input_size(layer) as f64 + h_out) + h * proj);
    }
    2.0 * seq_len as f64 * batch as f64 * per_step
}

/// Returns (median time per call, samples, calls per sample).
fn time_forward<T: Float>(
    args: &BenchArgs,
    config: RnnConfig,
) -> Result<(Duration, usize, usize), String> {
    let layers =
        recurrent::params::Layers::<T>::seeded(config.clone(), 0).map_err(|e| e.to_string())?;
    let model = match config.kind {
        Kind::Rnn => Model::Rnn(Rnn::from_layers(layers).map_err(|e| e.to_string())?),
        Kind::Lstm => Model::Lstm(Lstm::from_layers(layers).map_err(|e| e.to_string())?),
        Kind::Gru => Model::Gru(Gru::from_layers(layers).map_err(|e| e.to_string())?),
    };
    // The input and its copy, before either is allocated.
    recurrent::memory::Budget::new()
        .add(
            std::mem::size_of::<T>(),
            &[2, args.seq_len, args.batch, args.input_size],
        )
        .check(|| "--seq-len x --batch x --input-size".to_string())
        .map_err(|e| e.to_string())?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let input: Array3<T> =
        Array3::from_shape_simple_fn((args.seq_len, args.batch, args.input_size), || {
            T::of(rng.random::<f64>() * 2.0 - 1.0)
        });
    let input3 = input.view();
    let input: ArrayD<T> = input.clone().into_dyn();
    let stream = args.stream;
    let train = args.train;
    // loss = sum(output): its gradient with respect to the output is all ones.
    let out_shape = [args.seq_len, args.batch, config.output_size()];
    let ones = ndarray::ArrayD::<T>::from_elem(ndarray::IxDyn(&out_shape), T::one());
    let call = || -> recurrent::Result<(usize, usize)> {
        match &model {
            Model::Rnn(m) if stream => stream_steps(m, input3),
            Model::Lstm(m) if stream => stream_steps(m, input3),
            Model::Gru(m) if stream => stream_steps(m, input3),
            Model::Rnn(m) if train => m
                .backward(input.view(), None, ones.view(), None)
                .map(|g| (g.input.len(), g.parameters.len())),
            Model::Lstm(m) if train => m
                .backward(input.view(), None, ones.view(), (None, None))
                .map(|g| (g.input.len(), g.parameters.len())),
            Model::Gru(m) if train => m
                .backward(input.view(), None, ones.view(), None)
                .map(|g| (g.input.len(), g.parameters.len())),
            Model::Rnn(m) => m
                .forward(input.view(), None)
                .map(|(o, h)| (o.len(), h.len())),
            Model::Lstm(m) => m
                .forward(input.view(), None)
                .map(|(o, (h, _))| (o.len(), h.len())),
            Model::Gru(m) => m
                .forward(input.view(), None)
                .map(|(o, h)| (o.len(), h.len())),
        }
    };
    let pool = rayon_pool(args.threads)?;
    pool.install(|| -> Result<(Duration, usize, usize), String> {
        call().map_err(|e| e.to_string())?;
        let warm = Instant::now();
        let mut warm_calls = 0usize;
        while warm.elapsed() < Duration::from_millis(100) {
            std::hint::black_box(call().map_err(|e| e.to_string())?);
            warm_calls += 1;
        }
        let per_call = warm.elapsed().as_secs_f64() / warm_calls as f64;
        let sample_target = args.min_time / 10.0;
        let calls = ((sample_target / per_call).ceil() as usize).max(1);
        let mut samples = Vec::new();
        let start = Instant::now();
        while samples.len() < 5 || start.elapsed().as_secs_f64() < args.min_time {
            let t = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(call().map_err(|e| e.to_string())?);
            }
            samples.push(t.elapsed().div_f64(calls as f64));
        }
        samples.sort();
        Ok((samples[samples.len() / 2], samples.len(), calls))
    })
}

/// `--stream`: the sequence one step at a time through the layer's stream, as a caller
/// with a live input would (the stream is made once per call; its first step allocates).
fn stream_steps<T: Float, L: Recurrent<T>>(
    layer: &L,
    input: ndarray::ArrayView3<'_, T>,
) -> recurrent::Result<(usize, usize)> {
    let mut s = layer.stream(None)?;
    let mut n = 0;
    for x_t in input.outer_iter() {
        n += s.step(x_t)?.len();
    }
    Ok((n, usize::from(s.state_owned().is_some())))
}

fn rayon_pool(threads: usize) -> Result<rayon::ThreadPool, String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("--threads {threads}: cannot start the thread pool: {e}"))
}
