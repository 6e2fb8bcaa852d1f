//! Input forms (unbatched, sequence-first, batch-first) and torch's shape checks.
//!
//! As in `torch/nn/modules/rnn.py`, an unbatched input gets a batch axis of 1 at the edge
//! and loses it on the way out, so the core only sees batched sequences.

use ndarray::{ArrayView3, ArrayViewD, Axis, CowArray, Ix3};

use crate::config::RnnConfig;
use crate::element::Float;
use crate::error::{Error, Result};

/// A checked input with its initial state, ready for the core.
pub(crate) struct Prepared<'a, T> {
    /// The input in the caller's axis order, standard (C) layout: `(L, N, F)`, or
    /// `(N, L, F)` when `batch_first`. An unbatched input becomes `(L, 1, F)`.
    pub input: CowArray<'a, T, Ix3>,
    /// Whether `input`'s axes are `(N, L, F)`.
    pub batch_first: bool,
    /// Whether the caller's input was 2-D.
    pub unbatched: bool,
    /// `(D * num_layers, N, H_out)`, if the caller gave h_0.
    pub h0: Option<ArrayView3<'a, T>>,
    /// LSTM: `(D * num_layers, N, H)`, if the caller gave c_0.
    pub c0: Option<ArrayView3<'a, T>>,
}

impl<T: Float> Prepared<'_, T> {
    /// `L`.
    pub fn seq_len(&self) -> usize {
        self.input.len_of(self.time_axis())
    }

    /// `N`.
    pub fn batch(&self) -> usize {
        self.input.len_of(self.batch_axis())
    }

    /// The input's time axis.
    pub fn time_axis(&self) -> Axis {
        Axis(usize::from(self.batch_first))
    }

    /// The input's batch axis.
    pub fn batch_axis(&self) -> Axis {
        Axis(usize::from(!self.batch_first))
    }
}

/// Checks `input` and `h0` against `config` in torch's order and with torch's meaning,
/// and normalises them to batched form. Every forward and backward entry point (and the
/// reference loops) starts here, so this is also where an invalid `RECURRENT_ISA` fails
/// them (see [`crate::isa()`]), before any other check.
pub(crate) fn prepare<'a, T: Float>(
    config: &RnnConfig,
    input: ArrayViewD<'a, T>,
    h0: Option<ArrayViewD<'a, T>>,
) -> Result<Prepared<'a, T>> {
    prepare_with_cell(config, input, h0, None)
}

/// [`prepare`] with an LSTM's cell state as well (`h0` and `c0` both or neither).
pub(crate) fn prepare_with_cell<'a, T: Float>(
    config: &RnnConfig,
    input: ArrayViewD<'a, T>,
    h0: Option<ArrayViewD<'a, T>>,
    c0: Option<ArrayViewD<'a, T>>,
) -> Result<Prepared<'a, T>> {
    crate::isa::check()?;
    let rank = input.ndim();
    if rank != 2 && rank != 3 {
        return Err(Error::InputRank {
            got: rank,
            shape: input.shape().to_vec(),
        });
    }
    let unbatched = rank == 2;
    if let Some(h) = &h0 {
        if h.ndim() != rank {
            return Err(Error::HiddenRank {
                input_rank: rank,
                hidden_rank: h.ndim(),
            });
        }
    }
    if let Some(c) = &c0 {
        if c.ndim() != rank {
            return Err(Error::CellRank {
                input_rank: rank,
                cell_rank: c.ndim(),
            });
        }
    }
    let features = input.shape()[rank - 1];
    if features != config.input_size {
        return Err(Error::InputSize {
            expected: config.input_size,
            got: features,
        });
    }
    // An unbatched (L, F) input is (L, 1, F) in either axis order; keep it sequence-first.
    let batch_first = config.batch_first && !unbatched;
    let input3 = if unbatched {
        input.insert_axis(Axis(1))
    } else {
        input
    };
    let input3 = input3
        .into_dimensionality::<Ix3>()
        .map_err(|_| internal_rank())?;
    let (seq_len, batch) = if batch_first {
        (input3.shape()[1], input3.shape()[0])
    } else {
        (input3.shape()[0], input3.shape()[1])
    };
    let layers = config.num_directions() * config.num_layers;
    let state = |h: Option<ArrayViewD<'a, T>>,
                 width: usize,
                 cell: bool|
     -> Result<Option<ArrayView3<'a, T>>> {
        let Some(h) = h else { return Ok(None) };
        let expected = if unbatched {
            vec![layers, width]
        } else {
            vec![layers, batch, width]
        };
        if h.shape() != expected.as_slice() {
            let got = h.shape().to_vec();
            return Err(if cell {
                Error::CellShape { expected, got }
            } else {
                Error::HiddenShape { expected, got }
            });
        }
        let h = if unbatched { h.insert_axis(Axis(1)) } else { h };
        Ok(Some(
            h.into_dimensionality::<Ix3>()
                .map_err(|_| internal_rank())?,
        ))
    };
    let h0 = state(h0, config.output_hidden_size(), false)?;
    let c0 = state(c0, config.hidden_size, true)?;
    if seq_len == 0 {
        return Err(Error::EmptySequence {
            shape: if unbatched {
                vec![0, features]
            } else {
                input3.shape().to_vec()
            },
        });
    }
    // Everything a pass allocates follows from these sizes: checked before the first
    // allocation, the copy of a strided (or broadcast) input below included.
    crate::memory::forward_budget(config, seq_len, batch, std::mem::size_of::<T>())
        .add(std::mem::size_of::<T>(), &[seq_len, batch, features])
        .add(
            std::mem::size_of::<T>(),
            &[2, layers, batch, config.hidden_size],
        )
        .check(|| format!("a pass of {config} over {seq_len} steps of {batch} sequences"))?;
    let input = if input3.is_standard_layout() {
        CowArray::from(input3)
    } else {
        CowArray::from(input3.as_standard_layout().into_owned())
    };
    Ok(Prepared {
        input,
        batch_first,
        unbatched,
        h0,
        c0,
    })
}

/// Unreachable: ranks were checked just before each conversion.
fn internal_rank() -> Error {
    Error::Config("internal error: rank changed during shape normalisation".to_string())
}

/// Lengths must be one per sequence, each in `1..=L` (torch's errors; torch accepts a
/// length above L and fails later, this refuses it).
pub(crate) fn check_lengths<T: Float>(lengths: &[usize], prepared: &Prepared<'_, T>) -> Result<()> {
    let (batch, seq_len) = (prepared.batch(), prepared.seq_len());
    // torch's pack_padded_sequence: "Cannot pack empty tensors."
    if prepared.input.is_empty() {
        let mut shape = prepared.input.shape().to_vec();
        if prepared.unbatched {
            shape.remove(1);
        }
        return Err(Error::EmptyPack { shape });
    }
    if lengths.len() != batch {
        return Err(Error::LengthsCount {
            lengths: lengths.len(),
            batch_size: batch,
        });
    }
    for (index, &length) in lengths.iter().enumerate() {
        if length == 0 {
            return Err(Error::ZeroLength { index });
        }
        if length > seq_len {
            return Err(Error::LengthExceedsInput {
                index,
                length,
                seq_len,
            });
        }
    }
    Ok(())
}
