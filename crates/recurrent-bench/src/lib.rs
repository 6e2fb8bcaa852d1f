//! Nothing here: this package holds the criterion benchmarks in `benches/` (see the
//! README's "Kernels" section), kept out of the library so that its tests do not build
//! criterion and gemm.
