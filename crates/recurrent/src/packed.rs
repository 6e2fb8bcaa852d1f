//! Variable-length batches: `torch.nn.utils.rnn`'s [`PackedSequence`] and its helpers.
//!
//! A batch of sequences of different lengths is stored *packed*: time step by time step,
//! only the sequences still running at that step, longest first. With lengths `[2, 5, 3]`
//! the packed rows are
//!
//! ```text
//! step 0: seq 1, seq 2, seq 0     batch_sizes = [3, 3, 2, 1, 1]
//! step 1: seq 1, seq 2, seq 0     sorted_indices = [1, 2, 0]
//! step 2: seq 1, seq 2            unsorted_indices = [2, 0, 1]
//! step 3: seq 1
//! step 4: seq 1
//! ```
//!
//! | torch                                   | here                                  |
//! |-----------------------------------------|---------------------------------------|
//! | `PackedSequence`                        | [`PackedSequence`]                    |
//! | `pack_padded_sequence`                  | [`pack_padded_sequence`]              |
//! | `pad_packed_sequence`                   | [`pad_packed_sequence`]               |
//! | `pack_sequence`                         | [`pack_sequence`]                     |
//! | `pad_sequence` (right padding)          | [`pad_sequence`]                      |
//! | `unpack_sequence`                       | [`unpack_sequence`]                   |
//! | `unpad_sequence`                        | [`unpad_sequence`]                    |
//!
//! Sequences carry one feature axis: padded batches are `(L, N, F)` (or `(N, L, F)` with
//! `batch_first`), packed data is `(sum(lengths), F)`, single sequences are `(L_i, F)`.
//!
//! Where this module departs from torch, on purpose:
//!
//! - A length greater than the padded input's `L` is an error
//!   ([`Error::LengthExceedsInput`]). torch accepts it and builds a `PackedSequence` whose
//!   `batch_sizes` promise more rows than `data` holds; it fails only later, in
//!   `pad_packed_sequence` or in a layer, with an unrelated-looking message.
//! - Sorting (`enforce_sorted = false`) is a *stable* descending sort. torch uses
//!   `torch.sort(descending=True)`, which on the CPU is stable only for up to 16 lengths;
//!   for more, the order among equal lengths (and so `sorted_indices`,
//!   `unsorted_indices` and the row order inside a time step of `data`) may differ from
//!   torch's. `batch_sizes`, everything [`pad_packed_sequence`] returns, and any layer
//!   output after padding are the same.
//! - Sequences given to [`pad_sequence`] / [`pack_sequence`] must have equal feature sizes
//!   ([`Error::SequenceFeatures`]); torch would broadcast a size-1 feature axis.
//! - [`unpad_sequence`] wants one length per batch element and no length beyond `L`;
//!   torch's zips (silently dropping extras) and indexes out of range.

use std::cmp::Reverse;
use std::ops::Range;

use ndarray::{s, Array2, Array3, ArrayView2, ArrayView3, Axis};

use crate::element::Float;
use crate::error::{Error, Result};

/// A batch of variable-length sequences, packed time step by time step; mirrors
/// `torch.nn.utils.rnn.PackedSequence`.
///
/// Built by [`pack_padded_sequence`] or [`pack_sequence`] (or checked by
/// [`PackedSequence::new`]), so the parts always agree: `batch_sizes` is non-empty,
/// positive and non-increasing, `data` has `sum(batch_sizes)` rows, and the indices, when
/// present, are inverse permutations of `0..batch_size()`.
///
/// ```
/// use ndarray::array;
/// use recurrent::packed::pack_padded_sequence;
///
/// // (L, N, F) = (3, 2, 1); the second sequence has length 2.
/// let x = array![[[1.0f32], [4.0]], [[2.0], [5.0]], [[3.0], [6.0]]];
/// let packed = pack_padded_sequence(x.view(), &[3, 2], false, true)?;
/// assert_eq!(packed.data(), &array![[1.0], [4.0], [2.0], [5.0], [3.0]]);
/// assert_eq!(packed.batch_sizes(), [2, 2, 1]);
/// assert_eq!(packed.sorted_indices(), None);
/// # Ok::<(), recurrent::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PackedSequence<T> {
    data: Array2<T>,
    batch_sizes: Vec<usize>,
    sorted_indices: Option<Vec<usize>>,
    unsorted_indices: Option<Vec<usize>>,
}

impl<T: Float> PackedSequence<T> {
    /// Checks and assembles a packed sequence from its parts, as torch's
    /// `PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)` does; where
    /// torch leaves the parts unchecked ("should only be used internally"), this returns
    /// [`Error::InvalidPackedSequence`] for parts that do not fit together.
    ///
    /// As in torch, `unsorted_indices` may be left `None` when `sorted_indices` is given:
    /// it is then computed as the inverse permutation.
    ///
    /// ```
    /// use ndarray::array;
    /// use recurrent::PackedSequence;
    ///
    /// // Two sequences: element 1 (length 2) is the longer, so it comes first.
    /// let data = array![[10.0f64], [20.0], [11.0]];
    /// let p = PackedSequence::new(data, vec![2, 1], Some(vec![1, 0]), None)?;
    /// assert_eq!(p.unsorted_indices(), Some(&[1, 0][..]));
    /// assert_eq!(p.lengths(), [1, 2]);
    ///
    /// // batch_sizes must be non-increasing.
    /// assert!(PackedSequence::new(array![[1.0f64], [2.0], [3.0]], vec![1, 2], None, None).is_err());
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn new(
        data: Array2<T>,
        batch_sizes: Vec<usize>,
        sorted_indices: Option<Vec<usize>>,
        unsorted_indices: Option<Vec<usize>>,
    ) -> Result<Self> {
        let invalid = |msg: String| Err(Error::InvalidPackedSequence(msg));
        let Some(&batch) = batch_sizes.first() else {
            return invalid("expected at least one time step in batch_sizes, got none".into());
        };
        if let Some(t) = batch_sizes.iter().position(|&b| b == 0) {
            return invalid(format!(
                "expected every batch size to be positive, got batch_sizes[{t}] = 0"
            ));
        }
        if let Some(t) = batch_sizes.windows(2).position(|w| w[1] > w[0]) {
            return invalid(format!(
                "expected batch_sizes to be non-increasing, got batch_sizes[{t}] = {} < \
                 batch_sizes[{}] = {}",
                batch_sizes[t],
                t + 1,
                batch_sizes[t + 1]
            ));
        }
        let Some(total) = batch_sizes
            .iter()
            .try_fold(0usize, |sum, &b| sum.checked_add(b))
        else {
            return invalid("sum(batch_sizes) overflows".into());
        };
        if data.nrows() != total {
            return invalid(format!(
                "expected data to have sum(batch_sizes) = {total} rows, got {}",
                data.nrows()
            ));
        }
        let unsorted_indices = match (&sorted_indices, unsorted_indices) {
            (None, None) => None,
            (None, Some(_)) => {
                return invalid(
                    "expected sorted_indices when unsorted_indices is given, got none".into(),
                )
            }
            (Some(sorted), unsorted) => {
                let Some(inverse) = invert_permutation(sorted, batch) else {
                    return invalid(format!(
                        "expected sorted_indices to be a permutation of 0..{batch}, got {sorted:?}"
                    ));
                };
                if let Some(unsorted) = &unsorted {
                    if *unsorted != inverse {
                        return invalid(format!(
                            "expected unsorted_indices to be the inverse of sorted_indices, \
                             {inverse:?}, got {unsorted:?}"
                        ));
                    }
                }
                Some(inverse)
            }
        };
        Ok(PackedSequence {
            data,
            batch_sizes,
            sorted_indices,
            unsorted_indices,
        })
    }

    /// The packed rows, `(sum(lengths), F)`: step 0 of every sequence (longest first),
    /// then step 1 of those still running, and so on. torch's `.data`.
    ///
    /// ```
    /// # use ndarray::array;
    /// # use recurrent::packed::pack_sequence;
    /// let p = pack_sequence(&[array![[1.0f32, 2.0]].view()], true)?;
    /// assert_eq!(p.data().dim(), (1, 2));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn data(&self) -> &Array2<T> {
        &self.data
    }

    /// How many sequences are running at each time step; non-increasing, one entry per
    /// step of the longest sequence. torch's `.batch_sizes` (an int64 tensor there).
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let x = Array3::<f32>::zeros((4, 3, 1));
    /// let p = pack_padded_sequence(x.view(), &[4, 2, 2], false, true)?;
    /// assert_eq!(p.batch_sizes(), [3, 3, 1, 1]);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn batch_sizes(&self) -> &[usize] {
        &self.batch_sizes
    }

    /// For packed position `j`, the caller's batch index: `sorted_indices[j]`. `None` when
    /// the input was already sorted (`enforce_sorted = true`). torch's `.sorted_indices`.
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let x = Array3::<f32>::zeros((5, 3, 1));
    /// let p = pack_padded_sequence(x.view(), &[2, 5, 3], false, false)?;
    /// assert_eq!(p.sorted_indices(), Some(&[1, 2, 0][..]));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn sorted_indices(&self) -> Option<&[usize]> {
        self.sorted_indices.as_deref()
    }

    /// The inverse of [`sorted_indices`](Self::sorted_indices): for the caller's batch
    /// index `i`, its packed position. torch's `.unsorted_indices`.
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let x = Array3::<f32>::zeros((5, 3, 1));
    /// let p = pack_padded_sequence(x.view(), &[2, 5, 3], false, false)?;
    /// assert_eq!(p.unsorted_indices(), Some(&[2, 0, 1][..]));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn unsorted_indices(&self) -> Option<&[usize]> {
        self.unsorted_indices.as_deref()
    }

    /// The number of sequences, `N` (`batch_sizes[0]`).
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((4, 3, 1)).view(), &[4, 2, 1], false, true)?;
    /// assert_eq!(p.batch_size(), 3);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn batch_size(&self) -> usize {
        self.batch_sizes[0]
    }

    /// The longest sequence's length: the number of time steps, `batch_sizes.len()`.
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((6, 2, 1)).view(), &[1, 3], false, false)?;
    /// assert_eq!(p.max_seq_len(), 3);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn max_seq_len(&self) -> usize {
        self.batch_sizes.len()
    }

    /// The feature size `F` (columns of [`data`](Self::data)).
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((2, 2, 7)).view(), &[2, 1], false, true)?;
    /// assert_eq!(p.features(), 7);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn features(&self) -> usize {
        self.data.ncols()
    }

    /// Each sequence's length, in the caller's batch order (what
    /// [`pad_packed_sequence`] returns alongside the padded batch).
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((5, 3, 1)).view(), &[2, 5, 3], false, false)?;
    /// assert_eq!(p.lengths(), [2, 5, 3]);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn lengths(&self) -> Vec<usize> {
        let sorted = self.sorted_lengths();
        match &self.sorted_indices {
            None => sorted,
            Some(order) => {
                let mut lengths = vec![0; sorted.len()];
                for (&i, &len) in order.iter().zip(&sorted) {
                    lengths[i] = len;
                }
                lengths
            }
        }
    }

    /// Each sequence's length in packed (longest-first) order: `sorted_lengths()[j]` is
    /// the length of the caller's sequence `sorted_indices[j]`.
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((5, 3, 1)).view(), &[2, 5, 3], false, false)?;
    /// assert_eq!(p.sorted_lengths(), [5, 3, 2]);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn sorted_lengths(&self) -> Vec<usize> {
        let mut lengths = vec![0; self.batch_size()];
        for &b in &self.batch_sizes {
            for len in &mut lengths[..b] {
                *len += 1;
            }
        }
        lengths
    }

    /// The rows of [`data`](Self::data) that hold time step `t`
    /// (`batch_sizes[t]` of them, packed order), or `None` past the longest sequence.
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((3, 3, 1)).view(), &[3, 2, 1], false, true)?;
    /// assert_eq!(p.step_rows(1), Some(3..5));
    /// assert_eq!(p.step_rows(3), None);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn step_rows(&self, t: usize) -> Option<Range<usize>> {
        let &b = self.batch_sizes.get(t)?;
        let start: usize = self.batch_sizes[..t].iter().sum();
        Some(start..start + b)
    }

    /// Time step `t` of every sequence still running: `(batch_sizes[t], F)`, packed order.
    ///
    /// ```
    /// # use ndarray::array;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let x = array![[[1.0f32], [4.0]], [[2.0], [5.0]], [[3.0], [6.0]]];
    /// let p = pack_padded_sequence(x.view(), &[3, 2], false, true)?;
    /// assert_eq!(p.step(2).unwrap(), array![[3.0]]);
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn step(&self, t: usize) -> Option<ArrayView2<'_, T>> {
        let rows = self.step_rows(t)?;
        Some(self.data.slice(s![rows, ..]))
    }

    /// The same batch structure (batch sizes and indices) around new data, as a layer
    /// builds its packed output (torch: `PackedSequence(output, *input[1:])`). The feature
    /// size may change; the row count must not.
    ///
    /// ```
    /// # use ndarray::{Array2, Array3};
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((3, 2, 4)).view(), &[1, 3], false, false)?;
    /// let out = p.with_data(Array2::ones((4, 8)))?;
    /// assert_eq!(out.features(), 8);
    /// assert_eq!(out.lengths(), [1, 3]);
    /// assert!(p.with_data(Array2::ones((5, 8))).is_err());
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn with_data(&self, data: Array2<T>) -> Result<PackedSequence<T>> {
        if data.nrows() != self.data.nrows() {
            return Err(Error::InvalidPackedSequence(format!(
                "expected data to have sum(batch_sizes) = {} rows, got {}",
                self.data.nrows(),
                data.nrows()
            )));
        }
        Ok(PackedSequence {
            data,
            batch_sizes: self.batch_sizes.clone(),
            sorted_indices: self.sorted_indices.clone(),
            unsorted_indices: self.unsorted_indices.clone(),
        })
    }

    /// The parts: `(data, batch_sizes, sorted_indices, unsorted_indices)`.
    ///
    /// ```
    /// # use ndarray::Array3;
    /// # use recurrent::packed::pack_padded_sequence;
    /// let p = pack_padded_sequence(Array3::<f32>::zeros((2, 1, 3)).view(), &[2], false, true)?;
    /// let (data, batch_sizes, sorted, unsorted) = p.into_parts();
    /// assert_eq!((data.dim(), batch_sizes, sorted, unsorted), ((2, 3), vec![1, 1], None, None));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> (
        Array2<T>,
        Vec<usize>,
        Option<Vec<usize>>,
        Option<Vec<usize>>,
    ) {
        (
            self.data,
            self.batch_sizes,
            self.sorted_indices,
            self.unsorted_indices,
        )
    }

    /// The caller's batch index of packed position `j`.
    fn original_index(&self, j: usize) -> usize {
        self.sorted_indices.as_ref().map_or(j, |s| s[j])
    }
}

/// `inverse[perm[j]] = j`, or `None` if `perm` is not a permutation of `0..n`.
fn invert_permutation(perm: &[usize], n: usize) -> Option<Vec<usize>> {
    if perm.len() != n {
        return None;
    }
    let mut inverse = vec![usize::MAX; n];
    for (j, &i) in perm.iter().enumerate() {
        let slot = inverse.get_mut(i)?;
        if *slot != usize::MAX {
            return None;
        }
        *slot = j;
    }
    Some(inverse)
}

/// torch's length checks, in torch's order (after the count check), and the packed
/// order: `None` for "as given" (`enforce_sorted`), else a stable descending sort.
fn check_lengths(lengths: &[usize], enforce_sorted: bool) -> Result<Option<Vec<usize>>> {
    if enforce_sorted {
        // ATen checks the last length first, then the order.
        if lengths.last() == Some(&0) {
            return Err(Error::ZeroLength {
                index: lengths.len() - 1,
            });
        }
        if let Some(index) = lengths.windows(2).position(|w| w[0] < w[1]) {
            return Err(Error::LengthsNotSorted {
                index,
                length: lengths[index],
                next: lengths[index + 1],
            });
        }
        Ok(None)
    } else {
        if let Some(index) = lengths.iter().position(|&l| l == 0) {
            return Err(Error::ZeroLength { index });
        }
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| Reverse(lengths[i])); // stable
        Ok(Some(order))
    }
}

/// `batch_sizes` for lengths already in non-increasing order.
fn batch_sizes_of(sorted_lengths: &[usize]) -> Vec<usize> {
    let max_len = sorted_lengths.first().copied().unwrap_or(0);
    let mut batch_sizes = Vec::with_capacity(max_len);
    let mut running = sorted_lengths.len();
    for t in 0..max_len {
        while running > 0 && sorted_lengths[running - 1] <= t {
            running -= 1;
        }
        batch_sizes.push(running);
    }
    batch_sizes
}

/// The rows of a packed sequence, the sum of the lengths; a sum past `usize` (lengths of
/// a broadcast input) is [`Error::OutOfMemory`].
fn packed_rows(lengths: &[usize], features: usize) -> Result<usize> {
    lengths
        .iter()
        .try_fold(0usize, |sum, &l| sum.checked_add(l))
        .ok_or_else(|| Error::OutOfMemory {
            what: format!(
                "a packed sequence of {} sequences of {features} features",
                lengths.len()
            ),
            bytes: None,
        })
}

/// Packs a padded batch of variable-length sequences; torch's
/// `pack_padded_sequence(input, lengths, batch_first, enforce_sorted)`.
///
/// `input` is `(L, N, F)`, or `(N, L, F)` when `batch_first`; `lengths[i]` is the length of
/// sequence `i` (what lies past it is ignored). With `enforce_sorted` the lengths must be
/// non-increasing and the result has no indices; without, the sequences are sorted by
/// length (a stable sort: see the [module notes](self) on ties) and `sorted_indices` /
/// `unsorted_indices` record the permutation.
///
/// Errors, in torch's order: [`Error::EmptyPack`] for an input with no elements,
/// [`Error::LengthsCount`] unless there is one length per batch element,
/// [`Error::ZeroLength`], [`Error::LengthsNotSorted`] (only with `enforce_sorted`); then,
/// where torch would accept and fail later, [`Error::LengthExceedsInput`] for a length
/// greater than `L`.
///
/// ```
/// use ndarray::Array3;
/// use recurrent::packed::{pack_padded_sequence, pad_packed_sequence};
///
/// // Batch-first (N, L, F) = (3, 5, 1), values 10 * i + t.
/// let x = Array3::from_shape_fn((3, 5, 1), |(i, t, _)| (10 * i + t) as f32);
/// let packed = pack_padded_sequence(x.view(), &[2, 5, 3], true, false)?;
/// assert_eq!(packed.batch_sizes(), [3, 3, 2, 1, 1]);
/// assert_eq!(packed.sorted_indices(), Some(&[1, 2, 0][..]));
/// let col: Vec<f32> = packed.data().column(0).to_vec();
/// assert_eq!(col, [10.0, 20.0, 0.0, 11.0, 21.0, 1.0, 12.0, 22.0, 13.0, 14.0]);
///
/// // Lengths must be positive and, with enforce_sorted, non-increasing.
/// assert!(pack_padded_sequence(x.view(), &[2, 0, 1], true, false).is_err());
/// assert!(pack_padded_sequence(x.view(), &[2, 5, 3], true, true).is_err());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn pack_padded_sequence<T: Float>(
    input: ArrayView3<'_, T>,
    lengths: &[usize],
    batch_first: bool,
    enforce_sorted: bool,
) -> Result<PackedSequence<T>> {
    if input.is_empty() {
        return Err(Error::EmptyPack {
            shape: input.shape().to_vec(),
        });
    }
    let input = if batch_first {
        input.permuted_axes([1, 0, 2])
    } else {
        input
    };
    let (seq_len, batch, features) = input.dim();
    if lengths.len() != batch {
        return Err(Error::LengthsCount {
            lengths: lengths.len(),
            batch_size: batch,
        });
    }
    let order = check_lengths(lengths, enforce_sorted)?;
    if let Some(index) = lengths.iter().position(|&l| l > seq_len) {
        return Err(Error::LengthExceedsInput {
            index,
            length: lengths[index],
            seq_len,
        });
    }
    // The packed rows and one batch size per step, checked before either is allocated
    // (a broadcast input can claim more rows than memory holds).
    let total = packed_rows(lengths, features)?;
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    crate::memory::Budget::new()
        .add(std::mem::size_of::<T>(), &[total, features])
        .add(std::mem::size_of::<usize>(), &[max_len])
        .check(|| format!("a packed sequence of {total} rows"))?;
    let source = |j: usize| order.as_ref().map_or(j, |o| o[j]);
    let sorted_lengths: Vec<usize> = (0..batch).map(|j| lengths[source(j)]).collect();
    let batch_sizes = batch_sizes_of(&sorted_lengths);
    let mut data = Array2::zeros((total, features));
    let mut rows = data.rows_mut().into_iter();
    for (t, &b) in batch_sizes.iter().enumerate() {
        let step = input.index_axis(Axis(0), t);
        for (j, mut row) in (0..b).zip(rows.by_ref()) {
            row.assign(&step.row(source(j)));
        }
    }
    let unsorted_indices = order.as_ref().and_then(|o| invert_permutation(o, batch));
    Ok(PackedSequence {
        data,
        batch_sizes,
        sorted_indices: order,
        unsorted_indices,
    })
}

/// Pads a packed batch back to a rectangular one; torch's
/// `pad_packed_sequence(sequence, batch_first, padding_value, total_length)`.
///
/// Returns the padded batch, `(T, N, F)` or `(N, T, F)` when `batch_first`, in the
/// caller's batch order (`unsorted_indices` undone), with `padding_value` past each
/// sequence's end, and the lengths in the same order. `T` is the longest length, or
/// `total_length` when given; [`Error::TotalLength`] if that is shorter than the longest
/// sequence.
///
/// ```
/// use ndarray::{array, Array3};
/// use recurrent::packed::{pack_padded_sequence, pad_packed_sequence};
///
/// let x = Array3::from_shape_fn((4, 2, 1), |(t, i, _)| (10 * i + t) as f64);
/// let packed = pack_padded_sequence(x.view(), &[1, 3], false, false)?;
/// let (padded, lengths) = pad_packed_sequence(&packed, true, -1.0, None)?;
/// assert_eq!(lengths, [1, 3]);
/// assert_eq!(padded.index_axis(ndarray::Axis(2), 0), array![[0.0, -1.0, -1.0], [10.0, 11.0, 12.0]]);
///
/// let (padded, _) = pad_packed_sequence(&packed, false, 0.0, Some(4))?;
/// assert_eq!(padded.dim(), (4, 2, 1));
/// assert!(pad_packed_sequence(&packed, false, 0.0, Some(2)).is_err());
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn pad_packed_sequence<T: Float>(
    sequence: &PackedSequence<T>,
    batch_first: bool,
    padding_value: T,
    total_length: Option<usize>,
) -> Result<(Array3<T>, Vec<usize>)> {
    let max_length = sequence.max_seq_len();
    let out_len = match total_length {
        Some(total_length) if total_length < max_length => {
            return Err(Error::TotalLength {
                total_length,
                max_length,
            })
        }
        Some(total_length) => total_length,
        None => max_length,
    };
    let (batch, features) = (sequence.batch_size(), sequence.features());
    let shape = if batch_first {
        (batch, out_len, features)
    } else {
        (out_len, batch, features)
    };
    crate::memory::Budget::new()
        .add(std::mem::size_of::<T>(), &[out_len, batch, features])
        .check(|| format!("a padded batch of {out_len} steps of {batch} sequences"))?;
    let mut out = Array3::from_elem(shape, padding_value);
    {
        let mut steps = out.view_mut();
        if batch_first {
            steps.swap_axes(0, 1);
        }
        let mut rows = sequence.data.rows().into_iter();
        for (t, &b) in sequence.batch_sizes.iter().enumerate() {
            let mut step = steps.index_axis_mut(Axis(0), t);
            for (j, row) in (0..b).zip(rows.by_ref()) {
                step.row_mut(sequence.original_index(j)).assign(&row);
            }
        }
    }
    Ok((out, sequence.lengths()))
}

/// Checks a list of `(L_i, F)` sequences: at least one, all with the first's `F`.
fn check_sequences<T>(sequences: &[ArrayView2<'_, T>]) -> Result<usize> {
    let Some(first) = sequences.first() else {
        return Err(Error::NoSequences);
    };
    let expected = first.ncols();
    match sequences.iter().position(|s| s.ncols() != expected) {
        Some(index) => Err(Error::SequenceFeatures {
            index,
            expected,
            got: sequences[index].ncols(),
        }),
        None => Ok(expected),
    }
}

/// Pads a list of `(L_i, F)` sequences into one batch; torch's
/// `pad_sequence(sequences, batch_first, padding_value)` (right padding).
///
/// The result is `(max L_i, N, F)`, or `(N, max L_i, F)` when `batch_first`. Sequences may
/// be empty (`L_i = 0`). [`Error::NoSequences`] for an empty list,
/// [`Error::SequenceFeatures`] when feature sizes differ.
///
/// ```
/// use ndarray::array;
/// use recurrent::packed::pad_sequence;
///
/// let a = array![[1.0f32], [2.0], [3.0]];
/// let b = array![[4.0f32]];
/// let padded = pad_sequence(&[a.view(), b.view()], true, 0.0)?;
/// assert_eq!(padded, array![[[1.0], [2.0], [3.0]], [[4.0], [0.0], [0.0]]]);
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn pad_sequence<T: Float>(
    sequences: &[ArrayView2<'_, T>],
    batch_first: bool,
    padding_value: T,
) -> Result<Array3<T>> {
    let features = check_sequences(sequences)?;
    let max_len = sequences.iter().map(|s| s.nrows()).max().unwrap_or(0);
    let n = sequences.len();
    let shape = if batch_first {
        (n, max_len, features)
    } else {
        (max_len, n, features)
    };
    crate::memory::Budget::new()
        .add(std::mem::size_of::<T>(), &[max_len, n, features])
        .check(|| format!("a padded batch of {max_len} steps of {n} sequences"))?;
    let mut out = Array3::from_elem(shape, padding_value);
    {
        let mut by_batch = out.view_mut();
        if !batch_first {
            by_batch.swap_axes(0, 1);
        }
        for (i, seq) in sequences.iter().enumerate() {
            by_batch.slice_mut(s![i, ..seq.nrows(), ..]).assign(seq);
        }
    }
    Ok(out)
}

/// Packs a list of `(L_i, F)` sequences; torch's `pack_sequence(sequences,
/// enforce_sorted)`, i.e. `pack_padded_sequence(pad_sequence(sequences), lengths,
/// enforce_sorted=enforce_sorted)` without building the padded batch.
///
/// Errors as [`pad_sequence`] and [`pack_padded_sequence`] give them, in that order
/// (an empty sequence is [`Error::ZeroLength`]).
///
/// ```
/// use ndarray::array;
/// use recurrent::packed::pack_sequence;
///
/// let a = array![[1.0f32], [2.0], [3.0]];
/// let b = array![[4.0f32], [5.0]];
/// let c = array![[6.0f32]];
/// let packed = pack_sequence(&[a.view(), b.view(), c.view()], true)?;
/// assert_eq!(packed.data().column(0).to_vec(), [1.0, 4.0, 6.0, 2.0, 5.0, 3.0]);
/// assert_eq!(packed.batch_sizes(), [3, 2, 1]);
///
/// // Unsorted input needs enforce_sorted = false.
/// assert!(pack_sequence(&[c.view(), a.view()], true).is_err());
/// let packed = pack_sequence(&[c.view(), a.view()], false)?;
/// assert_eq!(packed.sorted_indices(), Some(&[1, 0][..]));
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn pack_sequence<T: Float>(
    sequences: &[ArrayView2<'_, T>],
    enforce_sorted: bool,
) -> Result<PackedSequence<T>> {
    let features = check_sequences(sequences)?;
    let lengths: Vec<usize> = sequences.iter().map(|s| s.nrows()).collect();
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    if max_len == 0 || features == 0 {
        return Err(Error::EmptyPack {
            shape: vec![max_len, sequences.len(), features],
        });
    }
    let order = check_lengths(&lengths, enforce_sorted)?;
    let source = |j: usize| order.as_ref().map_or(j, |o| o[j]);
    let sorted_lengths: Vec<usize> = (0..lengths.len()).map(|j| lengths[source(j)]).collect();
    let batch_sizes = batch_sizes_of(&sorted_lengths);
    let total = packed_rows(&lengths, features)?;
    crate::memory::Budget::new()
        .add(std::mem::size_of::<T>(), &[total, features])
        .check(|| format!("a packed sequence of {total} rows"))?;
    let mut data = Array2::zeros((total, features));
    let mut rows = data.rows_mut().into_iter();
    for (t, &b) in batch_sizes.iter().enumerate() {
        for (j, mut row) in (0..b).zip(rows.by_ref()) {
            row.assign(&sequences[source(j)].row(t));
        }
    }
    let unsorted_indices = order
        .as_ref()
        .and_then(|o| invert_permutation(o, lengths.len()));
    Ok(PackedSequence {
        data,
        batch_sizes,
        sorted_indices: order,
        unsorted_indices,
    })
}

/// Splits a packed batch into its sequences, `(L_i, F)` each, in the caller's batch
/// order; torch's `unpack_sequence(packed_sequences)`.
///
/// ```
/// use ndarray::array;
/// use recurrent::packed::{pack_sequence, unpack_sequence};
///
/// let a = array![[1.0f32], [2.0]];
/// let b = array![[3.0f32], [4.0], [5.0]];
/// let packed = pack_sequence(&[a.view(), b.view()], false)?;
/// assert_eq!(unpack_sequence(&packed), [a, b]);
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn unpack_sequence<T: Float>(packed: &PackedSequence<T>) -> Vec<Array2<T>> {
    let features = packed.features();
    let mut out: Vec<Array2<T>> = packed
        .lengths()
        .into_iter()
        .map(|len| Array2::zeros((len, features)))
        .collect();
    let mut rows = packed.data.rows().into_iter();
    for (t, &b) in packed.batch_sizes.iter().enumerate() {
        for (j, row) in (0..b).zip(rows.by_ref()) {
            out[packed.original_index(j)].row_mut(t).assign(&row);
        }
    }
    out
}

/// Splits a padded batch into its sequences, `(lengths[i], F)` each; torch's
/// `unpad_sequence(padded_sequences, lengths, batch_first)`.
///
/// `padded` is `(L, N, F)`, or `(N, L, F)` when `batch_first`. Lengths may be 0.
/// [`Error::LengthsCount`] unless there is one length per batch element,
/// [`Error::LengthExceedsInput`] for a length greater than `L`.
///
/// ```
/// use ndarray::array;
/// use recurrent::packed::unpad_sequence;
///
/// let padded = array![[[1.0f32], [2.0], [3.0]], [[4.0], [0.0], [0.0]]];
/// let seqs = unpad_sequence(padded.view(), &[3, 1], true)?;
/// assert_eq!(seqs, [array![[1.0], [2.0], [3.0]], array![[4.0]]]);
/// # Ok::<(), recurrent::Error>(())
/// ```
pub fn unpad_sequence<T: Float>(
    padded: ArrayView3<'_, T>,
    lengths: &[usize],
    batch_first: bool,
) -> Result<Vec<Array2<T>>> {
    let by_batch = if batch_first {
        padded
    } else {
        padded.permuted_axes([1, 0, 2])
    };
    let (batch, seq_len, _) = by_batch.dim();
    if lengths.len() != batch {
        return Err(Error::LengthsCount {
            lengths: lengths.len(),
            batch_size: batch,
        });
    }
    if let Some(index) = lengths.iter().position(|&l| l > seq_len) {
        return Err(Error::LengthExceedsInput {
            index,
            length: lengths[index],
            seq_len,
        });
    }
    Ok(lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| by_batch.slice(s![i, ..len, ..]).to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverts_permutations_and_rejects_others() {
        assert_eq!(invert_permutation(&[1, 2, 0], 3), Some(vec![2, 0, 1]));
        assert_eq!(invert_permutation(&[], 0), Some(vec![]));
        assert_eq!(invert_permutation(&[0, 0], 2), None);
        assert_eq!(invert_permutation(&[0, 2], 2), None);
        assert_eq!(invert_permutation(&[0], 2), None);
    }

    #[test]
    fn batch_sizes_count_running_sequences() {
        assert_eq!(batch_sizes_of(&[5, 3, 2]), [3, 3, 2, 1, 1]);
        assert_eq!(batch_sizes_of(&[1, 1, 1, 1]), [4]);
        assert_eq!(batch_sizes_of(&[3]), [1, 1, 1]);
        assert!(batch_sizes_of(&[]).is_empty());
    }

    #[test]
    fn sorting_is_stable_and_descending() {
        let order = check_lengths(&[2, 3, 2, 3, 1], false).unwrap();
        assert_eq!(order, Some(vec![1, 3, 0, 2, 4]));
        assert_eq!(check_lengths(&[3, 3, 1], true).unwrap(), None);
    }
}
