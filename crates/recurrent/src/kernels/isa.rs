//! The kernel paths, which of them this CPU has, and which one runs.
//!
//! Every dispatch site asks [`active`], which only ever answers a path this CPU
//! supports: that is what makes calling the `#[target_feature]` functions sound. The
//! path is the one a test forced ([`force`], process-wide, so that rayon's workers see
//! it too), else the one the `RECURRENT_ISA` environment variable names (read once per
//! process), else the best this CPU has. An invalid `RECURRENT_ISA` is kept as the value
//! given ([`from_env`]): `crate::isa` turns it into the error that every call that
//! computes returns before it starts, and the kernels, which cannot fail, run the best
//! path meanwhile (nothing reaches them while the error stands but the hidden `__bench`
//! entry points).
//!
//! This module imports nothing from the crate: `element.rs` reaches it through
//! `tanh.rs`, and `error.rs` names [`Isa`].

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// A path of the kernels: the instruction set that the packed products, the fused loop
/// of layers narrower than one vector and the float32 `tanh` run with.
///
/// Every path computes the same functions; they differ in rounding only (FMA against
/// separate multiply and add, and the order of the sums of a dot product), by a few
/// units in the last place. The backward's weight gradients, the one product still
/// handed to `matrixmultiply`, run that crate's own choice of kernel on every path: it
/// detects the CPU itself and cannot be told otherwise at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// AVX-512 F and VL with AVX2 and FMA (x86_64): 16 float32 lanes per register,
    /// 8 x 32 register tiles.
    Avx512,
    /// AVX2 and FMA (x86_64): 8 float32 lanes per register, 6 x 16 register tiles.
    Avx2,
    /// No instruction set beyond the target's baseline (SSE2 on x86_64), multiply and
    /// add not fused: what the compiler makes of the plain loops. The only path on
    /// other architectures.
    Portable,
}

impl Isa {
    /// Every path, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The environment variable that forces a path: `RECURRENT_ISA`.
    pub const ENV_VAR: &'static str = "RECURRENT_ISA";

    /// The path's name, as `RECURRENT_ISA` spells it: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The path called `name` (one of [`Isa::name`]'s, ignoring ASCII case and
    /// surrounding whitespace), whether or not this CPU has it; `None` for any other
    /// string.
    ///
    /// ```
    /// use recurrent::Isa;
    /// assert_eq!(Isa::from_name("AVX2"), Some(Isa::Avx2));
    /// assert_eq!(Isa::from_name("sse4"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Isa> {
        let name = name.trim();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name))
    }

    /// Whether this CPU can run the path (detected at run time; `portable` always can).
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && Isa::Avx2.is_supported()
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2 => false,
        }
    }

    /// The paths this CPU can run, best first (`portable` is always last).
    pub fn supported() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The best path this CPU can run: what runs when `RECURRENT_ISA` is not set.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Portable)
    }
}

impl fmt::Display for Isa {
    /// Writes [`Isa::name`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path forced by [`force`], process-wide: 0 for none, else `code(isa)`.
static FORCED: AtomicU8 = AtomicU8::new(0);

fn code(isa: Isa) -> u8 {
    match isa {
        Isa::Avx512 => 1,
        Isa::Avx2 => 2,
        Isa::Portable => 3,
    }
}

fn decode(code: u8) -> Option<Isa> {
    match code {
        1 => Some(Isa::Avx512),
        2 => Some(Isa::Avx2),
        3 => Some(Isa::Portable),
        _ => None,
    }
}

/// `value` as `RECURRENT_ISA` reads it, among the paths `available` (best first): the
/// best for `None` or a blank value, the path of that name if it is available, else
/// `None`.
pub(crate) fn select_among(value: Option<&str>, available: &[Isa]) -> Option<Isa> {
    let best = available.first().copied().unwrap_or(Isa::Portable);
    match value.filter(|v| !v.trim().is_empty()) {
        None => Some(best),
        Some(value) => Isa::from_name(value).filter(|isa| available.contains(isa)),
    }
}

/// What `RECURRENT_ISA` selected, read once per process: the path, or the value as
/// given (non-UTF-8 bytes replaced) when it names no path this CPU has.
pub(crate) fn from_env() -> &'static Result<Isa, String> {
    static ENV: OnceLock<Result<Isa, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let value = std::env::var_os(Isa::ENV_VAR);
        let value = value.as_ref().map(|v| v.to_string_lossy());
        select_among(value.as_deref(), &Isa::supported())
            .ok_or_else(|| value.unwrap_or_default().into_owned())
    })
}

/// The path a test forced with [`force`], if one is in force.
pub(crate) fn forced() -> Option<Isa> {
    decode(FORCED.load(Ordering::Relaxed))
}

/// The path the kernels take: the forced one, else `RECURRENT_ISA`'s, else (also while
/// `RECURRENT_ISA` is invalid) the best this CPU has. Always one this CPU supports.
#[inline]
pub(crate) fn active() -> Isa {
    if let Some(isa) = forced() {
        return isa;
    }
    match from_env() {
        Ok(isa) => *isa,
        Err(_) => Isa::best(),
    }
}

/// Puts the path forced before a [`force`] back when dropped.
pub(crate) struct Restore(u8);

impl Drop for Restore {
    fn drop(&mut self) {
        FORCED.store(self.0, Ordering::SeqCst);
    }
}

/// Forces the kernels onto `isa`, process-wide, until the returned guard is dropped;
/// `None` (and nothing changes) when this CPU lacks `isa`.
pub(crate) fn force(isa: Isa) -> Option<Restore> {
    isa.is_supported()
        .then(|| Restore(FORCED.swap(code(isa), Ordering::SeqCst)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_select_the_named_path_or_nothing() {
        let avx2_only = [Isa::Avx2, Isa::Portable];
        assert_eq!(select_among(None, &avx2_only), Some(Isa::Avx2));
        assert_eq!(select_among(Some(" "), &avx2_only), Some(Isa::Avx2));
        assert_eq!(
            select_among(Some("Portable"), &avx2_only),
            Some(Isa::Portable)
        );
        assert_eq!(select_among(Some("avx2\n"), &avx2_only), Some(Isa::Avx2));
        for bad in ["avx512", "sse4", "avx2,fma", "neon"] {
            assert_eq!(select_among(Some(bad), &avx2_only), None, "{bad}");
        }
        let portable_only = [Isa::Portable];
        assert_eq!(select_among(None, &portable_only), Some(Isa::Portable));
        assert_eq!(select_among(Some("avx2"), &portable_only), None);
    }

    #[test]
    fn the_best_path_is_supported_and_portable_always_is() {
        assert!(Isa::best().is_supported());
        assert!(Isa::Portable.is_supported());
        assert_eq!(Isa::supported().last(), Some(&Isa::Portable));
        assert_eq!(Isa::supported().first(), Some(&Isa::best()));
        assert!(active().is_supported());
        for isa in Isa::ALL {
            assert_eq!(decode(code(isa)), Some(isa));
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
    }
}
