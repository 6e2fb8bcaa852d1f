//! Parameters: torch's names, per-(layer, direction) storage, and default initialisation.

mod init;
mod layers;
mod name;

pub use init::uniform_init;
pub use layers::Layers;
pub use name::{looks_like_param_name, param_names, ParamKind, ParamName};

use ndarray::{Array1, Array2, ArrayView2};

use crate::element::Float;
use crate::kernels::panel::Panels;

/// The tensors of one (layer, direction), in torch's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionParams<T> {
    /// `weight_ih`: `(G*H, layer_input_size)`, G the gate count.
    pub w_ih: Array2<T>,
    /// `weight_hh`: `(G*H, H_out)`.
    pub w_hh: Array2<T>,
    /// `bias_ih`: `(G*H,)`, when the layer has biases.
    pub b_ih: Option<Array1<T>>,
    /// `bias_hh`: `(G*H,)`, when the layer has biases.
    pub b_hh: Option<Array1<T>>,
    /// `weight_hr`: `(P, H)`, for an LSTM with `proj_size > 0`.
    pub w_hr: Option<Array2<T>>,
}

impl<T: Float> DirectionParams<T> {
    /// `b_ih + b_hh`, the bias the fast path folds into the input projection once
    /// (RNN, LSTM; a GRU folds only its r and z parts, see `forward/gated.rs`).
    pub(crate) fn folded_bias(&self) -> Option<Array1<T>> {
        match (&self.b_ih, &self.b_hh) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        }
    }

    /// For a GRU (3 gates): the projection's bias `b_ih + [b_hr, b_hz, 0]` and `b_hn`,
    /// which `r` multiplies and so stays out of the projection. `None` without biases or
    /// when the rows are not three gates.
    fn gru_biases(&self) -> Option<(Array1<T>, Array1<T>)> {
        let (b_ih, b_hh) = (self.b_ih.as_ref()?, self.b_hh.as_ref()?);
        if b_ih.len() % 3 != 0 {
            return None;
        }
        let hidden = b_ih.len() / 3;
        let mut projection = b_ih + b_hh;
        projection
            .slice_mut(ndarray::s![2 * hidden..])
            .assign(&b_ih.slice(ndarray::s![2 * hidden..]));
        Some((projection, b_hh.slice(ndarray::s![2 * hidden..]).to_owned()))
    }

    /// The layouts the fast path's kernels want, computed once when weights are set, with
    /// the gate rows in torch's order.
    pub(crate) fn pack(&self) -> Packed<T> {
        Packed {
            bias: self.folded_bias(),
            gru_bias: self.gru_biases(),
            w_ih_t: PackedWeight::new(self.w_ih.t()),
            w_hh_t: PackedWeight::new(self.w_hh.t()),
            w_hr_t: self.w_hr.as_ref().map(|w| PackedWeight::new(w.t())),
            split: None,
            w_hh_finite: self.w_hh.iter().all(|w| w.is_finite()),
        }
    }

    /// [`DirectionParams::pack`] with the hidden units in two parts, `0..split` and
    /// `split..H`, and the gate rows reordered part by part: part `[a, b)` holds its `G`
    /// gate blocks of `b - a` rows together, so that each part's gate columns of the
    /// packed weights are one contiguous range, laid out as a layer of `b - a` units
    /// would be. One thread can then own a part (`forward/gated.rs`). `b_hn` stays in unit
    /// order; `w_hr` is not reordered (a layer with projections is not split).
    pub(crate) fn pack_split(&self, gates: usize, split: usize) -> Packed<T> {
        let hidden = self.w_ih.nrows() / gates;
        let mut order = Vec::with_capacity(gates * hidden);
        for units in [0..split, split..hidden] {
            for g in 0..gates {
                order.extend(units.clone().map(|j| g * hidden + j));
            }
        }
        let rows = |w: &Array2<T>| w.select(ndarray::Axis(0), &order);
        let entries = |b: &Array1<T>| b.select(ndarray::Axis(0), &order);
        let packed = self.pack();
        Packed {
            bias: packed.bias.as_ref().map(entries),
            gru_bias: packed
                .gru_bias
                .map(|(projection, b_hn)| (entries(&projection), b_hn)),
            w_ih_t: PackedWeight::new(rows(&self.w_ih).t()),
            w_hh_t: PackedWeight::new(rows(&self.w_hh).t()),
            w_hr_t: packed.w_hr_t,
            split: Some(split),
            w_hh_finite: packed.w_hh_finite,
        }
    }
}

/// The width of the narrow layout: a weight of at most this many columns is also kept
/// zero-padded to exactly this width, so that a row of the product is one fixed-width
/// vector operation per input element (`kernels/narrow.rs`).
pub(crate) const MIN_PACKED_WIDTH: usize = 16;

/// The right-hand operand `B` `(K, N)` of the products `x · B`, laid out once, when the
/// weights are set, in the forms the kernels read:
///
/// - `panels`: column panels of 64 bytes (`kernels/panel.rs`), read by the GEMM of every
///   product;
/// - `narrow`: for `N <= MIN_PACKED_WIDTH` only, a standard-layout `(K, MIN_PACKED_WIDTH)`
///   copy, zero-padded on the right, read by the fused loop of narrow layers.
///
/// For the forward `B` is a transposed weight `Wᵀ`; the backward multiplies by `W`
/// itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedWeight<T> {
    /// `B` in column panels.
    pub panels: Panels<T>,
    /// `B` padded to `MIN_PACKED_WIDTH` columns, when it has no more.
    pub narrow: Option<Array2<T>>,
}

impl<T: Float> PackedWeight<T> {
    /// The layouts of `b` `(K, N)`, any strides.
    pub(crate) fn new(b: ArrayView2<'_, T>) -> Self {
        let (k, n) = b.dim();
        PackedWeight {
            panels: Panels::new(b),
            narrow: (n <= MIN_PACKED_WIDTH).then(|| {
                let mut out = Array2::zeros((k, MIN_PACKED_WIDTH));
                out.slice_mut(ndarray::s![.., ..n]).assign(&b);
                out
            }),
        }
    }
}

/// One (layer, direction)'s weights as the fast path uses them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Packed<T> {
    /// `b_ih + b_hh`.
    pub bias: Option<Array1<T>>,
    /// GRU: the projection's bias and `b_hn` (see `DirectionParams::gru_biases`).
    pub gru_bias: Option<(Array1<T>, Array1<T>)>,
    /// `W_ihᵀ`, `(layer_input_size, G*H)` (see [`PackedWeight`]).
    pub w_ih_t: PackedWeight<T>,
    /// `W_hhᵀ`, `(H_out, G*H)`.
    pub w_hh_t: PackedWeight<T>,
    /// `W_hrᵀ`, `(H, P)`, for an LSTM with projections.
    pub w_hr_t: Option<PackedWeight<T>>,
    /// `None`: the gate rows (columns of the packed weights, entries of the biases) are
    /// in torch's order. `Some(s)`: the hidden units are in two parts, `0..s` and `s..H`,
    /// each with its gate blocks together (see [`DirectionParams::pack_split`]).
    pub split: Option<usize>,
    /// Whether every entry of `W_hh` is finite. Only then is `0 · W_hhᵀ` exactly zero, so
    /// that the product of a zero initial state may be skipped; with a NaN or an
    /// infinity in `W_hh` it is NaN (`0 · ∞ = NaN`), as torch computes it.
    pub w_hh_finite: bool,
}
