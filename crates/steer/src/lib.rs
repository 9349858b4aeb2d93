//! # gensplit-steer
//!
//! Independence analysis and steering on the flat parameter vector θ of any
//! model written over [`gensplit_models::Ops`]: move θ so that ONE rule a
//! network learned dies while another survives, and measure how independent
//! the two rules' curvature is.
//!
//! ```
//! use gensplit_steer::{direction, independence, Basis};
//!
//! // Two losses on R^4 whose top eigenspaces share one direction (e1).
//! let e = |i: usize| { let mut v = vec![0.0; 4]; v[i] = 1.0; v };
//! let keep = Basis::span(&[e(0), e(1)], 4)?;
//! let ablate = Basis::span(&[e(0), e(2)], 4)?;
//! assert!((independence::overlap(&keep, &ablate)? - 0.5).abs() < 1e-12);
//!
//! // The authors' direction: the top ablate eigenvector with the keep
//! // eigenspace projected out.
//! let u = vec![0.6, 0.0, 0.8, 0.0];
//! let d = direction::seed(&u, &keep)?;
//! assert!(d[0].abs() < 1e-12 && (d[2] - 1.0).abs() < 1e-12);
//! # Ok::<(), gensplit_steer::SteerError>(())
//! ```
//!
//! ## Modules
//!
//! * [`subspace`]: [`Basis`], an orthonormal basis with projections `P`, `P⊥`.
//! * [`independence`]: overlap `‖U_aᵀU_b‖²_F / k` and principal angles with
//!   their random-subspace baselines, the cross-curvature `uᵀH_s u / λ_r(u)`,
//!   and the decomposition of a vector against two subspaces.
//! * [`direction`]: steering directions — `unprojected`, the authors'
//!   `seed` (`P⊥_keep u_ablate`), the generalized eigenvector of
//!   `(H_ablate, H_keep + μI)` in a span, the projected gradient and random
//!   baselines.
//! * [`sweep`]: straight-line sweeps `θ* + α d`, evaluation on named sets,
//!   the KL divergence from the unsteered model, and the calibration-only
//!   operating-point rule.
//! * [`walk`]: curved paths — the curvature-guarded ascent walk, the
//!   unlearning fine-tune baseline, and relearning from a steered model.
//! * [`demix`]: stand-ins for an unknown rule's inputs, recovered from
//!   averaged mixed data and the known rule's pure data (semi-supervised
//!   steering).
//!
//! Units: θ and every direction live in the model's flat parameter
//! coordinates (`gensplit_models::ParamLayout`); directions have unit
//! Euclidean norm, α is in θ units, losses in nats, accuracies in `[0, 1]`,
//! curvatures (`dᵀHd`, eigenvalues) in nats per unit θ².
//!
//! Curvature products come from any [`gensplit_eigen::LinearOperator`]
//! (`gensplit_hvp::HessianOperator` for a model's exact Hessian); this crate
//! never materialises a Hessian.

pub mod demix;
pub mod direction;
pub mod error;
pub mod independence;
pub mod subspace;
pub mod sweep;
pub mod walk;

pub use error::SteerError;
pub use subspace::Basis;
