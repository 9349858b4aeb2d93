//! # gensplit-eigen
//!
//! Matrix-free symmetric eigensolvers.
//!
//! ```
//! // placeholder
//! ```

pub mod dense;
pub mod lanczos;
pub mod operator;
pub mod slq;
pub mod trace;
mod util;

pub use dense::{sym_eig, DenseError};
pub use lanczos::{
    lanczos, EigenResult, LanczosError, LanczosParams, NoObserver, Observer, StepInfo, StopReason, Which,
};
pub use operator::{Diagonal, DenseSymmetric, LinearOperator, OperatorError, Projected, Scaled, Shifted};
pub use slq::{slq, QuadratureRule, SlqError, SlqParams, SlqResult};
pub use trace::{hutchinson, TraceError, TraceEstimate};
