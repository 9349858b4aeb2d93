//! Errors of the sphere search.

use gensplit_models::ModelError;

/// What can go wrong in a sphere search.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SphereError {
    /// θ, the inputs or the labels do not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A vector has the wrong length.
    #[error("{what} has {got} entries, expected {expected}")]
    Length {
        /// Which vector.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A parameter is out of its valid range.
    #[error("invalid sphere-search parameter `{field}`: {reason}")]
    Param {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The loss or its gradient is NaN or infinite.
    #[error("non-finite {what} at radius {radius}")]
    NonFinite {
        /// Loss or gradient.
        what: &'static str,
        /// The radius being searched.
        radius: f64,
    },
    /// No feasible point: the constraints leave nothing of the search space.
    #[error("the constraints leave no feasible direction in the {dim}-dimensional search space")]
    Infeasible {
        /// Coordinates of the search space.
        dim: usize,
    },
}
