//! # gensplit-eigen
//!
//! Matrix-free eigensolvers for symmetric linear operators, built for the
//! case where each operator application is expensive (a neural-network
//! Hessian-vector product) and the number of matvecs matters above all.
//! No ML dependency: anything implementing [`LinearOperator`] works.
//!
//! ```
//! use gensplit_eigen::{lanczos, DenseSymmetric, LanczosParams, NoObserver, Which};
//!
//! // A small symmetric matrix (row-major).
//! let a = DenseSymmetric::new(
//!     vec![
//!         4.0, 1.0, 0.0, 0.0,
//!         1.0, 3.0, 1.0, 0.0,
//!         0.0, 1.0, 2.0, 1.0,
//!         0.0, 0.0, 1.0, 1.0,
//!     ],
//!     4,
//! )?;
//! let params = LanczosParams { k: 2, which: Which::LargestAlgebraic, tol: 1e-10, ..Default::default() };
//! let res = lanczos(&a, &params, &mut NoObserver)?;
//! // Compare with the dense oracle (ascending eigenvalues).
//! let (w, _) = gensplit_eigen::sym_eig(a.as_slice(), 4)?;
//! assert!((res.values[0] - w[3]).abs() < 1e-9 && (res.values[1] - w[2]).abs() < 1e-9);
//! for (v, r) in res.vectors.iter().zip(&res.residuals) {
//!     assert_eq!(v.len(), 4);
//!     assert!(*r < 1e-9); // ||A v - λ v||
//! }
//! println!("{:?} after {} matvecs ({:?})", res.values, res.matvecs, res.stop);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Mathematics
//!
//! [`lanczos()`] builds an orthonormal basis `V_m` of the Krylov space
//! `K_m(A, v_1) = span{v_1, A v_1, …, A^{m−1} v_1}` with the relation
//! `A V_m = V_m T_m + β_m v_{m+1} e_m^T`, `T_m = V_m^T A V_m`. Eigenpairs
//! `(θ_i, y_i)` of the small matrix `T_m` give Ritz pairs `(θ_i, V_m y_i)` with
//! residual norm `|β_m e_m^T y_i|`; a pair is accepted when this is at most
//! `tol · max_j |θ_j|` (over all Ritz values so far), checked after *every*
//! step. Vectors are fully reorthogonalized (classical Gram–Schmidt, twice), the basis is
//! thick-restarted (Wu–Simon) when it reaches `max_basis` vectors, and
//! invariant subspaces (breakdown, `β_m ≈ 0`) are deflated and continued from a
//! fresh random vector so repeated eigenvalues are resolved. The reported
//! residuals are true residuals `‖A v − λ v‖`, computed from the stored
//! products `A V_m` without extra matvecs. Results are deterministic for a
//! given seed (ChaCha8 start vectors, sequential arithmetic).
//!
//! Also provided: stochastic Lanczos quadrature for spectral densities
//! ([`slq()`](mod@slq)), Hutchinson trace estimation ([`hutchinson`], module [`trace`]), projected operators
//! `P A P` with `P = I − Q Q^T` ([`Projected`]) and a dense symmetric
//! eigensolver ([`dense`]: Householder tridiagonalization and implicit QL,
//! used as an oracle and for the small problems). The crate depends on
//! `rand`, `rand_chacha` and `thiserror` only (and `proptest` with the
//! `proptest` feature).
//!
//! ## Property-testing your own operator
//!
//! With the cargo feature `proptest` (e.g. `gensplit-eigen = { version = "…",
//! features = ["proptest"] }` under `[dev-dependencies]`) the module
//! `testkit` exports planted-spectrum strategies (clustered, exactly
//! repeated, power-law bulk with outliers, small negative values, …), random
//! orthogonal bases, operators `Q diag(λ) Qᵀ` with known eigenpairs, and
//! `check_lanczos`: it materialises any [`LinearOperator`] of dimension
//! `≤ 600`, runs [`lanczos()`] on it and compares with the dense oracle —
//! eigenvalues, the subspace angle of each cluster of (nearly) repeated
//! eigenvalues, true residuals `‖Av − λv‖` and orthonormality — returning a
//! report, or a `CheckError` naming the failed check with its numbers. Wrap
//! your operator and property-test it in five lines:
//!
//! ```
//! # use gensplit_eigen::LinearOperator;
//! use gensplit_eigen::testkit::{any_which, check_lanczos, fixed_config, CheckTol};
//! use gensplit_eigen::LanczosParams;
//! use proptest::prelude::*;
//!
//! /// A user's operator: the path-graph Laplacian plus a potential.
//! struct Chain { potential: Vec<f64> }
//! impl LinearOperator for Chain {
//!     fn dim(&self) -> usize { self.potential.len() }
//!     fn apply(&self, x: &[f64], y: &mut [f64]) {
//!         let n = x.len();
//!         for i in 0..n {
//!             let left = if i > 0 { x[i - 1] } else { 0.0 };
//!             let right = if i + 1 < n { x[i + 1] } else { 0.0 };
//!             y[i] = (2.0 + self.potential[i]) * x[i] - left - right;
//!         }
//!     }
//! }
//!
//! proptest!(fixed_config(8), |(potential in prop::collection::vec(-1.0..1.0f64, 3..80), which in any_which())| {
//!     let params = LanczosParams { k: 3, which, tol: 1e-10, multiplicity_check: true, ..Default::default() };
//!     check_lanczos(&Chain { potential }, &params, CheckTol::for_params(&params))?;
//! });
//! ```
//!
//! [`LanczosParams::multiplicity_check`] makes the solver look for further
//! copies of (nearly) repeated eigenvalues (a single Krylov sequence finds
//! only one); leave it on unless your operator's extreme eigenvalues are
//! known to be well separated. Inside `#[test] fn`s generated by
//! `proptest! { … }` the same body works; `testkit::assert_lanczos_matches_dense`
//! panics with the full report instead. `tests/eigen/user_operator.rs` has complete
//! examples, and the crate's own property tests use the same kit.
//!
//! ## Matvec counts
//!
//! Synthetic NN-Hessian-like spectrum (`n = 30000`: outliers 35.4, 26.5, 18.8,
//! 15, 12.1, …, a power-law bulk decaying to 0, 5 % small negative values;
//! see `tests/eigen/nn_like.rs`), `tol = 1e-6`, default basis, seed 42:
//!
//! | wanted `k` | bulk `6(1+i)^−0.7` | bulk `5(1+i)^−0.3` | ARPACK on real Hessians (reference) |
//! |-----------:|-------------------:|-------------------:|-------------------------:|
//! | 1          | 11                 | 11                 | ≤ 21                     |
//! | 5          | 20                 | 21                 | ≤ 33                     |
//! | 20         | 46                 | 62                 | ≤ 86                     |

pub mod dense;
pub mod lanczos;
pub mod operator;
pub mod slq;
#[cfg(feature = "proptest")]
pub mod testkit;
pub mod trace;
mod util;

pub use dense::{sym_eig, DenseError};
pub use lanczos::{
    lanczos, EigenResult, LanczosError, LanczosParams, NoObserver, Observer, StepInfo, StopReason, Which,
};
pub use operator::{DenseSymmetric, Diagonal, LinearOperator, OperatorError, Projected, Scaled, Shifted};
pub use slq::{slq, QuadratureRule, SlqError, SlqParams, SlqResult};
pub use trace::{hutchinson, TraceError, TraceEstimate};
