//! The crate's error type: every fallible public function returns
//! [`SteerError`], which names the argument or field that is wrong.

use gensplit_eigen::{DenseError, OperatorError};
use gensplit_hvp::HvpError;
use gensplit_models::ModelError;

/// Errors of subspace construction, independence analysis and steering.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// A vector does not have the expected length (the model's parameter count).
    #[error("{what} has {got} entries, expected {expected}")]
    Length {
        /// What the vector is (e.g. "basis vector 3", "direction").
        what: String,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A vector or value is NaN or infinite.
    #[error("{what} contains a non-finite value")]
    NonFinite {
        /// What the value is.
        what: String,
    },
    /// A parameter is out of its allowed range.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The parameter's name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// More eigenpairs were requested than were computed.
    #[error("{what}: {requested} eigenvectors requested but only {available} were computed")]
    NotEnoughEigenpairs {
        /// Which eigenspace.
        what: String,
        /// Requested count.
        requested: usize,
        /// Available count.
        available: usize,
    },
    /// A method name that does not exist.
    #[error("unknown steering method `{name}` (known: {known})")]
    UnknownMethod {
        /// The given name.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The model rejected θ or the data.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A curvature product failed.
    #[error(transparent)]
    Hvp(#[from] HvpError),
    /// A basis could not be built.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A dense eigensolve failed.
    #[error(transparent)]
    Dense(#[from] DenseError),
}
