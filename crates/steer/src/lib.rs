//! # gensplit-steer
//!
//! Independence analysis and steering on the flat parameter vector θ of any
//! model written over [`gensplit_models::Ops`].
//!
//! (Crate docs are completed below the module list.)

pub mod error;
pub mod independence;
pub mod subspace;

pub use error::SteerError;
pub use subspace::Basis;
