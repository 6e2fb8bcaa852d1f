//! `recurrent stream`: frames from stdin through a layer's stream, each step's output to
//! stdout as soon as it is computed, for piping a live source through a model.
//!
//! Formats (`--format`):
//! - `raw` (the default): little-endian floats of `--dtype`, `N * H_in` per frame (`N =
//!   --batch`, 1 when not given); each frame's output is `N * H_out` floats.
//! - `npy`: a sequence of `.npy` arrays, each one step (`(H_in,)`, or `(N, H_in)` with
//!   `--batch N`) or a chunk of steps (`(K, H_in)`, or `(K, N, H_in)`); each input array
//!   gives one output array of the same form, `H_out` wide.
//!
//! The state carries over from frame to frame, from zeros (or `--h0`/`--c0`). End of
//! input ends the stream; a frame cut short is an error, after the outputs of the whole
//! frames before it were written.

use std::io::{BufRead, Read, Write};

use ndarray::{Array2, ArrayD, Axis, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadableElement, WriteNpyExt};
use recurrent::{Error, Float, Gru, Kind, Lstm, Recurrent, RecurrentStream, Rnn};

use crate::{StreamArgs, StreamFormat};

/// Runs `recurrent stream`.
pub fn stream(args: StreamArgs) -> Result<(), String> {
    let dict = recurrent::io::StateDict::read(&args.model).map_err(|e| e.to_string())?;
    let at = |e: Error| format!("{}: {e}", args.model.display());
    let prefix = dict.resolve_prefix(args.prefix.as_deref()).map_err(at)?;
    let mut config = dict.infer_config(&prefix).map_err(at)?;
    if let Some(n) = args.nonlinearity {
        if config.kind != Kind::Rnn {
            return Err(format!(
                "--nonlinearity: only an RNN has one; {} holds {}",
                args.model.display(),
                config
            ));
        }
        config.nonlinearity = n.into();
    }
    match args.dtype {
        crate::DtypeArg::F32 => stream_typed::<f32>(&args, &dict, &prefix, config),
        crate::DtypeArg::F64 => stream_typed::<f64>(&args, &dict, &prefix, config),
    }
}

fn stream_typed<T: Float + ReadableElement + ndarray_npy::WritableElement>(
    args: &StreamArgs,
    dict: &recurrent::io::StateDict,
    prefix: &str,
    config: recurrent::RnnConfig,
) -> Result<(), String> {
    let at = |e: Error| format!("{}: {e}", args.model.display());
    let h0 = read_state::<T>(&args.h0, "--h0")?;
    let c0 = read_state::<T>(&args.c0, "--c0")?;
    match config.kind {
        Kind::Rnn => {
            let layer: Rnn<T> = dict.load_rnn(prefix, config).map_err(at)?;
            run(args, &layer, h0.as_ref())
        }
        Kind::Gru => {
            let layer: Gru<T> = dict.load_gru(prefix, config).map_err(at)?;
            run(args, &layer, h0.as_ref())
        }
        Kind::Lstm => {
            let layer: Lstm<T> = dict.load_lstm(prefix, config).map_err(at)?;
            let state = match (h0, c0) {
                (Some(h), Some(c)) => Some((h, c)),
                (None, None) => None,
                _ => return Err("--h0 and --c0: give both or neither".to_string()),
            };
            run(args, &layer, state.as_ref())
        }
    }
}

fn read_state<T: Float>(
    path: &Option<std::path::PathBuf>,
    flag: &str,
) -> Result<Option<ArrayD<T>>, String> {
    path.as_ref()
        .map(|p| recurrent::io::npy::read::<T>(p).map_err(|e| format!("{flag}: {e}")))
        .transpose()
}

/// The stream loop for any kind.
fn run<T: Float + ReadableElement + ndarray_npy::WritableElement, L: Recurrent<T>>(
    args: &StreamArgs,
    layer: &L,
    state: Option<&L::State>,
) -> Result<(), String> {
    let config = layer.config().clone();
    let mut stream = layer
        .stream(state)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut output = std::io::BufWriter::new(stdout.lock());
    let batch = args.batch.unwrap_or(1);
    let (h_in, h_out) = (config.input_size, config.output_hidden_size());
    let size = std::mem::size_of::<T>();
    let write_err = |e: std::io::Error| -> String {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        format!("cannot write to stdout: {e}")
    };
    match args.format {
        StreamFormat::Raw => {
            let mut frame = vec![0u8; batch * h_in * size];
            let mut x = Array2::<T>::zeros((batch, h_in));
            let mut bytes = Vec::with_capacity(batch * h_out * size);
            let mut frames = 0usize;
            loop {
                let got = read_frame(&mut input, &mut frame)
                    .map_err(|e| format!("cannot read stdin: {e}"))?;
                if got == 0 {
                    break;
                }
                if got < frame.len() {
                    return Err(format!(
                        "stdin ended inside frame {frames}: {got} of its {} bytes ({batch} x {h_in} {} values)",
                        frame.len(),
                        T::DTYPE
                    ));
                }
                for (v, chunk) in x.iter_mut().zip(frame.chunks_exact(size)) {
                    *v = T::from_le_slice(chunk);
                }
                let y = stream
                    .step(x.view())
                    .map_err(|e| format!("frame {frames}: {e}"))?;
                bytes.clear();
                for &v in y.iter() {
                    v.extend_le_bytes(&mut bytes);
                }
                output.write_all(&bytes).map_err(write_err)?;
                output.flush().map_err(write_err)?;
                frames += 1;
            }
        }
        StreamFormat::Npy => {
            let mut arrays = 0usize;
            while !input
                .fill_buf()
                .map_err(|e| format!("cannot read stdin: {e}"))?
                .is_empty()
            {
                let x =
                    read_npy::<T>(&mut input).map_err(|e| format!("stdin, array {arrays}: {e}"))?;
                let y = feed(&mut stream, &x, args.batch)
                    .map_err(|e| format!("stdin, array {arrays}: {e}"))?;
                y.write_npy(&mut output)
                    .map_err(|e| format!("cannot write to stdout: {e}"))?;
                output.flush().map_err(write_err)?;
                arrays += 1;
            }
        }
    }
    Ok(())
}

/// One input array of the `npy` format through the stream: a step (`(H_in,)` or, with
/// `--batch`, `(N, H_in)`) or a chunk (`(K, H_in)` or `(K, N, H_in)`).
fn feed<T: Float, S: RecurrentStream<T>>(
    stream: &mut S,
    x: &ArrayD<T>,
    batch: Option<usize>,
) -> Result<ArrayD<T>, String> {
    let step_rank = if batch.is_some() { 2 } else { 1 };
    if x.ndim() == step_rank {
        // One step: a chunk of one step in the same form (the stream stays unbatched
        // when the steps are), its output without the time axis again.
        let y = stream
            .feed(x.view().insert_axis(Axis(0)))
            .map_err(|e| e.to_string())?;
        return Ok(y.index_axis_move(Axis(0), 0));
    }
    if x.ndim() == step_rank + 1 {
        return stream.feed(x.view()).map_err(|e| e.to_string());
    }
    Err(format!(
        "expected a step {} or a chunk {}, got shape {:?}",
        if batch.is_some() {
            "(N, H_in)"
        } else {
            "(H_in,)"
        },
        if batch.is_some() {
            "(K, N, H_in)"
        } else {
            "(K, H_in)"
        },
        x.shape()
    ))
}

/// Reads until `frame` is full or the input ends; returns the bytes read.
fn read_frame(input: &mut impl Read, frame: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < frame.len() {
        match input.read(&mut frame[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The most elements one array on stdin may hold (2^28: a gigabyte of float32).
const MAX_ELEMENTS: usize = 1 << 28;

/// Reads one `.npy` array of `T` (either byte order, C or Fortran order) from a stream:
/// exactly its bytes, so that the next array follows.
fn read_npy<T: Float + ReadableElement>(input: &mut impl Read) -> Result<ArrayD<T>, String> {
    let header =
        Header::from_reader(&mut *input).map_err(|e| format!("not a readable .npy array ({e})"))?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "an array of shape {:?} is too large to stream",
                header.shape
            )
        })?;
    let size = std::mem::size_of::<T>();
    let mut data = vec![0u8; count * size];
    input
        .read_exact(&mut data)
        .map_err(|_| format!("the input ends inside an array of shape {:?}", header.shape))?;
    let values = T::read_to_end_exact_vec(&mut data.as_slice(), &header.type_descriptor, count)
        .map_err(|e| {
            format!(
                "expected {} values (see --dtype), got descr {} ({e})",
                T::DTYPE,
                header.type_descriptor
            )
        })?;
    let shape = IxDyn(&header.shape).set_f(header.layout.is_fortran());
    ArrayD::from_shape_vec(shape, values).map_err(|e| e.to_string())
}
