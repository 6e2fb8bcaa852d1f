//! One step of each gated kind backwards, for one sequence: the chain rule through an
//! LSTM cell (`[i, f, g, o]`, the cell state) and through a GRU cell (`[r, z, n]`,
//! reset-after), from the activated gates the forward kept (`saved.rs`) to the gradients
//! of their pre-activations, as torch's autograd computes them. The RNN's one line
//! (`dh ⊙ act'(a)`) stays in the step loop (`direction.rs`), the only caller of these.
//!
//! Depends on no other file of the backward: only on [`Float`].

use crate::element::Float;

/// One LSTM cell's backward for one sequence: from the gradients `dh` of `o tanh(c)`
/// and `dc` of `c`, the pre-activation gradients `da` `[i, f, g, o]` and the gradient
/// of the previous cell state.
pub(super) fn lstm_cell_backward<T: Float>(
    gates: &[T],
    tanh_c: &[T],
    c_prev: &[T],
    dh: &[T],
    dc: &[T],
    da: &mut [T],
    dc_prev: &mut [T],
) {
    let hidden = tanh_c.len();
    let one = T::one();
    let (i, rest) = gates.split_at(hidden);
    let (f, rest) = rest.split_at(hidden);
    let (g, o) = rest.split_at(hidden);
    let (da_i, rest) = da.split_at_mut(hidden);
    let (da_f, rest) = rest.split_at_mut(hidden);
    let (da_g, da_o) = rest.split_at_mut(hidden);
    for j in 0..hidden {
        let tc = tanh_c[j];
        let d_o = dh[j] * tc;
        let d_c = dc[j] + dh[j] * o[j] * (one - tc * tc);
        dc_prev[j] = d_c * f[j];
        da_i[j] = d_c * g[j] * i[j] * (one - i[j]);
        da_f[j] = d_c * c_prev[j] * f[j] * (one - f[j]);
        da_g[j] = d_c * i[j] * (one - g[j] * g[j]);
        da_o[j] = d_o * o[j] * (one - o[j]);
    }
}

/// One GRU cell's backward for one sequence: from `dh`, the pre-activation gradients on
/// the input side `da_in` and on the hidden side `da_h` (`[r, z, n]`; they differ in
/// `n`, which `r` scales on the hidden side), and the direct gradient `z dh` of the
/// previous state. `hn` is `h W_hnᵀ + b_hn`.
pub(super) fn gru_cell_backward<T: Float>(
    gates: &[T],
    hn: &[T],
    h_prev: &[T],
    dh: &[T],
    da_in: &mut [T],
    da_h: &mut [T],
    dh_direct: &mut [T],
) {
    let hidden = hn.len();
    let one = T::one();
    for j in 0..hidden {
        let (r, z, cand) = (gates[j], gates[hidden + j], gates[2 * hidden + j]);
        let g = dh[j];
        let d_cand = g * (one - z);
        let d_z = g * (h_prev[j] - cand);
        dh_direct[j] = g * z;
        let da_n = d_cand * (one - cand * cand);
        let da_r = da_n * hn[j] * r * (one - r);
        let da_z = d_z * z * (one - z);
        da_in[j] = da_r;
        da_in[hidden + j] = da_z;
        da_in[2 * hidden + j] = da_n;
        da_h[j] = da_r;
        da_h[hidden + j] = da_z;
        da_h[2 * hidden + j] = da_n * r;
    }
}
