//! Memory checked before it is needed.
//!
//! The sizes of everything a call allocates follow from sizes the caller gives (the
//! sequence length, the batch, `hidden_size`, ...). A few bytes of a file's header, or a
//! typing slip in `--hidden-size`, can ask for terabytes; Rust's allocation failure
//! aborts the process. So every entry point adds up what it will allocate, with checked
//! arithmetic, and asks the system allocator once for that much before it computes or
//! changes anything: if the system refuses (more than the machine can give), the call
//! returns [`Error::OutOfMemory`] instead of aborting later.
//!
//! The estimate is an upper bound of the call's largest buffers (the outputs, what the
//! backward keeps per step, the input projections), not an exact count.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::config::RnnConfig;
use crate::error::{Error, Result};

/// A running total of bytes; `None` once it overflows `u64`.
///
/// ```
/// use recurrent::memory::Budget;
/// // 2^40 rows of 1024 float32 values: 4 TiB, which no machine here can give.
/// let huge = Budget::new().add(4, &[1 << 40, 1024]);
/// assert!(matches!(huge.check(|| "a buffer".into()), Err(recurrent::Error::OutOfMemory { .. })));
/// assert!(Budget::new().add(4, &[1000, 1000]).check(|| "a buffer".into()).is_ok());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    bytes: Option<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    /// Nothing yet.
    pub fn new() -> Self {
        Budget { bytes: Some(0) }
    }

    /// Adds `product(dims)` elements of `elem_bytes` bytes each.
    pub fn add(mut self, elem_bytes: usize, dims: &[usize]) -> Self {
        let product = dims.iter().try_fold(elem_bytes as u64, |acc, &d| {
            acc.checked_mul(u64::try_from(d).ok()?)
        });
        self.bytes = self
            .bytes
            .zip(product)
            .and_then(|(total, more)| total.checked_add(more));
        self
    }

    /// Fails with [`Error::OutOfMemory`] (about `what`) unless the system allocator can
    /// give the whole total at once.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`], with `bytes: None` when the total overflowed `u64`.
    pub fn check(self, what: impl FnOnce() -> String) -> Result<()> {
        let fail = |bytes| Error::OutOfMemory {
            what: what(),
            bytes,
        };
        let Some(bytes) = self.bytes else {
            return Err(fail(None));
        };
        // Small totals always fit; asking would only cost time.
        if bytes < 1 << 26 {
            return Ok(());
        }
        let Some(layout) = usize::try_from(bytes)
            .ok()
            .and_then(|size| Layout::from_size_align(size, 64).ok())
        else {
            return Err(fail(Some(bytes)));
        };
        // The system allocator, whatever the program's global one is: it asks the kernel
        // for the pages without touching them, and the kernel refuses what it could not
        // give.
        // SAFETY: `layout` has a non-zero size (at least 2^26 bytes); the block is freed
        // at once with the same layout and never read or written.
        unsafe {
            let block = System.alloc(layout);
            if block.is_null() {
                return Err(fail(Some(bytes)));
            }
            System.dealloc(block, layout);
        }
        Ok(())
    }
}

/// The widths every estimate reads off a configuration (validated, so these small
/// products cannot overflow).
struct Widths {
    /// Directions.
    d: usize,
    /// `hidden_size`.
    h: usize,
    /// `proj_size` if set, else `hidden_size`.
    h_out: usize,
    /// Gate rows, `G * H`.
    g: usize,
    /// The widest layer input, `max(input_size, D * H_out)`.
    widest_input: usize,
}

impl Widths {
    fn of(config: &RnnConfig) -> Self {
        let d = config.num_directions();
        let h_out = config.output_hidden_size();
        Widths {
            d,
            h: config.hidden_size,
            h_out,
            g: config.gate_size(),
            widest_input: config.input_size.max(d * h_out),
        }
    }
}

/// An upper bound of what a forward pass of `config` over `(L, N)` allocates, in elements
/// of the layer's type: the output and the previous layer's, the input projections of
/// every step (all directions), the final states.
pub(crate) fn forward_budget(
    config: &RnnConfig,
    seq_len: usize,
    batch: usize,
    elem: usize,
) -> Budget {
    let Widths { d, h, h_out, g, .. } = Widths::of(config);
    Budget::new()
        .add(elem, &[2, seq_len, batch, d, h_out])
        .add(elem, &[seq_len, batch, d, g])
        .add(elem, &[2, config.num_layers, d, batch, h])
}

/// An upper bound of what a backward pass allocates: every layer's input, what each
/// direction keeps per step (previous states, gates, cell values, projections), the
/// pre-activation gradients, and the input gradient.
pub(crate) fn backward_budget(
    config: &RnnConfig,
    seq_len: usize,
    batch: usize,
    elem: usize,
) -> Budget {
    let Widths {
        d,
        h,
        h_out,
        g,
        widest_input,
    } = Widths::of(config);
    let per_step = h_out + 3 * h + 3 * g;
    forward_budget(config, seq_len, batch, elem)
        .add(elem, &[config.num_layers, seq_len, batch, widest_input])
        .add(elem, &[config.num_layers, d, seq_len, batch, per_step])
        .add(elem, &[2, seq_len, batch, widest_input])
}

/// An upper bound of a layer's parameters in bytes (weights, biases, and the fast path's
/// packed copies of the weights).
pub(crate) fn parameter_budget(config: &RnnConfig, elem: usize) -> Budget {
    let Widths {
        d,
        h,
        h_out,
        g,
        widest_input,
    } = Widths::of(config);
    // Each weight is held twice (torch's layout and the packed one), with some padding.
    Budget::new()
        .add(
            elem,
            &[2, config.num_layers, d, g, widest_input + h_out + 32],
        )
        .add(elem, &[2, config.num_layers, d, config.proj_size, h + 32])
}
