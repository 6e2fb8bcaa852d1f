//! Which kernel path runs, as callers see it: [`isa()`], [`Isa::select`], and the
//! [`Error::Isa`] that every call that computes returns while `RECURRENT_ISA` is invalid.
//!
//! The paths, their detection and the dispatch are in `kernels/isa.rs`.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::kernels::isa::{self as path, Isa};

/// [`Error::Isa`] for `requested` on this CPU.
fn isa_error(requested: &str) -> Error {
    Error::Isa {
        requested: requested.to_string(),
        available: Isa::supported(),
    }
}

impl Isa {
    /// The path `RECURRENT_ISA=value` selects on this CPU: the best it has when `value`
    /// is `None` (the variable is not set) or blank, else the path of that name (see
    /// [`Isa::from_name`]).
    ///
    /// # Errors
    /// [`Error::Isa`] when `value` names no path, or one this CPU lacks (`avx512` on a
    /// CPU with AVX2 only; anything but `portable` off x86_64).
    ///
    /// ```
    /// use recurrent::Isa;
    /// assert_eq!(Isa::select(None)?, Isa::best());
    /// assert_eq!(Isa::select(Some("portable"))?, Isa::Portable);
    /// assert!(matches!(Isa::select(Some("sse4")), Err(recurrent::Error::Isa { .. })));
    /// # Ok::<(), recurrent::Error>(())
    /// ```
    pub fn select(value: Option<&str>) -> Result<Isa> {
        path::select_among(value, &Isa::supported())
            .ok_or_else(|| isa_error(value.unwrap_or_default()))
    }
}

impl FromStr for Isa {
    type Err = Error;

    /// The path of that name (as [`Isa::from_name`]), whether or not this CPU has it.
    ///
    /// # Errors
    /// [`Error::Isa`] when `s` names no path.
    fn from_str(s: &str) -> Result<Isa> {
        Isa::from_name(s).ok_or_else(|| isa_error(s))
    }
}

/// The kernel path that runs: the one `RECURRENT_ISA` selects (read once per process,
/// see [`Isa::select`]), or the best this CPU has when the variable is not set.
///
/// ```
/// let isa = recurrent::isa()?;
/// assert!(isa.is_supported());
/// println!("kernels: {isa}"); // avx512, avx2 or portable
/// # Ok::<(), recurrent::Error>(())
/// ```
///
/// # Errors
/// [`Error::Isa`] when `RECURRENT_ISA` names no path or one this CPU lacks; every call
/// that computes then returns the same error.
pub fn isa() -> Result<Isa> {
    if let Some(forced) = path::forced() {
        return Ok(forced);
    }
    path::from_env()
        .as_ref()
        .copied()
        .map_err(|requested| isa_error(requested))
}

/// Fails with [`Error::Isa`] while `RECURRENT_ISA` is invalid: the entry points that
/// compute call this before anything else.
pub(crate) fn check() -> Result<()> {
    isa().map(|_| ())
}

/// Runs `f` with the kernels forced onto `isa`, process-wide, and restores the previous
/// setting afterwards (also when `f` panics). [`isa()`] reports `isa` meanwhile, even if
/// `RECURRENT_ISA` is invalid.
///
/// # Errors
/// [`Error::Isa`] (and `f` does not run) when this CPU lacks `isa`.
pub(crate) fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> Result<R> {
    let _restore = path::force(isa).ok_or_else(|| isa_error(isa.name()))?;
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_and_missing_paths_are_typed_errors() {
        for bad in ["sse4", "avx2,fma", "neon", "AVX-512"] {
            match Isa::select(Some(bad)) {
                Err(Error::Isa {
                    requested,
                    available,
                }) => {
                    assert_eq!(requested, bad);
                    assert_eq!(available, Isa::supported());
                }
                other => panic!("{bad}: {other:?}"),
            }
            assert!(bad.parse::<Isa>().is_err());
        }
        for isa in Isa::ALL {
            assert_eq!(
                Isa::select(Some(isa.name())).ok(),
                isa.is_supported().then_some(isa)
            );
            assert_eq!(isa.name().parse::<Isa>().ok(), Some(isa));
        }
        assert_eq!(Isa::select(None).ok(), Some(Isa::best()));
        assert_eq!(Isa::select(Some("")).ok(), Some(Isa::best()));
    }

    #[test]
    fn messages_name_the_variable_the_value_and_the_cpu() {
        let lacking = Error::Isa {
            requested: "avx512".into(),
            available: vec![Isa::Avx2, Isa::Portable],
        };
        assert_eq!(
            lacking.to_string(),
            "RECURRENT_ISA=avx512: this CPU lacks it (it supports avx2, portable); \
             unset RECURRENT_ISA to run the best path it has"
        );
        let unknown = Error::Isa {
            requested: "sse4".into(),
            available: vec![Isa::Portable],
        };
        assert_eq!(
            unknown.to_string(),
            "RECURRENT_ISA=sse4: expected avx512, avx2 or portable (this CPU supports portable)"
        );
    }
}
