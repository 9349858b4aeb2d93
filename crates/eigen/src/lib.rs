//! # gensplit-eigen (in progress)
//!
//! Matrix-free symmetric eigensolvers.
