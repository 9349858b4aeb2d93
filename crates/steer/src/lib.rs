//! # gensplit-steer (planned; nothing implemented yet)
//!
//! This crate will hold supervised and semi-supervised steering: given the
//! flat parameter vector θ* of a trained model and the top Hessian
//! eigenvectors of two losses (from `gensplit-eigen` applied to
//! `gensplit-hvp` operators), it will move θ along a top eigenvector of the
//! loss to break, projected orthogonal to the top eigenspace of the loss to
//! keep, and measure which generalization dies and which survives.
//!
//! It is deliberately empty until the curvature core lands: no placeholder
//! functions are exported.
