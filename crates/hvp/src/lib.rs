//! # gensplit-hvp (in progress)
//!
//! Exact Hessian-vector products of a model's mean loss with respect to its
//! flat parameter vector, by reverse-over-forward through dfdx.
