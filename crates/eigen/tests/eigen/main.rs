//! gensplit-eigen's integration tests, one test binary (one link instead of
//! five): the dense eigensolver against planted spectra and Jacobi, property
//! tests of Lanczos over planted spectra, the matvec counts on a
//! network-like spectrum, the operators and estimators, and operators
//! written the way a user would write one.

mod common;
mod dense;
mod lanczos_props;
mod nn_like;
mod operators_and_estimators;
mod testkit;
mod user_operator;
