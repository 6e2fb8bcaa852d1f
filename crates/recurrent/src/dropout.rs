//! Dropout between layers in training mode, with masks that can be kept and given to
//! the backward pass.
//!
//! torch applies dropout (probability `p`) to the output of every layer but the last:
//! each element is kept with probability `1 - p` and scaled by `1 / (1 - p)`, or zeroed.
//! [`DropoutMasks`] holds those factors (0 or `1 / (1 - p)`) for one call, one
//! `(L, N, D·H_out)` array per layer boundary, sequence-first whatever `batch_first`, so
//! that `forward_with_masks` and `backward_with_masks` see the same dropout. (The random
//! stream is not torch's: the masks differ from torch's for the same seed.)

use ndarray::Array3;
use rand::Rng;

use crate::config::RnnConfig;
use crate::element::Float;
use crate::error::{Error, Result};

/// The dropout factors of one training call; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct DropoutMasks<T> {
    masks: Vec<Array3<T>>,
}

impl<T: Float> DropoutMasks<T> {
    /// Draws masks for `config` (its `dropout` and sizes) and a batch of `batch`
    /// sequences of `seq_len` steps: each factor is 0 with probability `p`, else
    /// `1 / (1 - p)` (all 0 when `p == 1`).
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use recurrent::{dropout::DropoutMasks, RnnConfig};
    /// let config = RnnConfig::new(3, 4).num_layers(3).dropout(0.25);
    /// let masks = DropoutMasks::<f32>::sample(&config, 5, 2, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))?;
    /// assert_eq!(masks.masks().len(), 2); // between layers 0-1 and 1-2
    /// assert!(masks.masks()[0].iter().all(|&m| m == 0.0 || (m - 4.0 / 3.0).abs() < 1e-6));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::OutOfMemory`] when `(num_layers - 1) * seq_len * batch * D * H`
    /// factors cannot be allocated.
    pub fn sample<R: Rng + ?Sized>(
        config: &RnnConfig,
        seq_len: usize,
        batch: usize,
        rng: &mut R,
    ) -> crate::Result<Self> {
        crate::memory::Budget::new()
            .add(
                std::mem::size_of::<T>(),
                &[
                    config.num_layers.saturating_sub(1),
                    seq_len,
                    batch,
                    config.output_size(),
                ],
            )
            .check(|| {
                format!("dropout masks of {config} for {seq_len} steps of {batch} sequences")
            })?;
        let p = config.dropout;
        let keep = if p < 1.0 {
            T::of(1.0 / (1.0 - p))
        } else {
            T::zero()
        };
        let width = config.output_size();
        let masks = (1..config.num_layers)
            .map(|_| {
                Array3::from_shape_simple_fn((seq_len, batch, width), || {
                    let u: f64 = rng.random();
                    if u < p {
                        T::zero()
                    } else {
                        keep
                    }
                })
            })
            .collect();
        Ok(DropoutMasks { masks })
    }

    /// Masks given by the caller: one `(L, N, D·H_out)` array per layer boundary
    /// (`num_layers - 1` of them), sequence-first.
    pub fn from_masks(
        config: &RnnConfig,
        seq_len: usize,
        batch: usize,
        masks: Vec<Array3<T>>,
    ) -> Result<Self> {
        let want = (seq_len, batch, config.output_size());
        if masks.len() + 1 != config.num_layers || masks.iter().any(|m| m.dim() != want) {
            return Err(Error::Config(format!(
                "dropout masks: expected {} arrays of shape {want:?}, got {:?}",
                config.num_layers - 1,
                masks.iter().map(|m| m.dim()).collect::<Vec<_>>()
            )));
        }
        Ok(DropoutMasks { masks })
    }

    /// The factors, one `(L, N, D·H_out)` array per layer boundary.
    pub fn masks(&self) -> &[Array3<T>] {
        &self.masks
    }

    /// Checks the masks fit a call with `config`, `seq_len` steps and `batch` sequences.
    pub(crate) fn check(&self, config: &RnnConfig, seq_len: usize, batch: usize) -> Result<()> {
        let want = (seq_len, batch, config.output_size());
        if self.masks.len() + 1 != config.num_layers || self.masks.iter().any(|m| m.dim() != want) {
            return Err(Error::Config(format!(
                "dropout masks were drawn for another shape: expected {} of {want:?}",
                config.num_layers - 1
            )));
        }
        Ok(())
    }
}
