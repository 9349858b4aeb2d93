//! # gensplit-sphere (planned; nothing implemented yet)
//!
//! This crate will hold the unsupervised "sphere search": an optimisation on
//! top of a trained network that pushes the flat parameter vector away from
//! the minimum along Hessian eigendirections, on spheres of growing radius,
//! until one generalization module breaks (scored on modular addition, where
//! each key Fourier frequency is a module). A probe found that the naive
//! version fails at a saturated minimum: there the top Hessian eigenvalues
//! are flat and every top eigenvector spreads over all frequencies.
//!
//! It is deliberately empty until the curvature core lands: no placeholder
//! functions are exported.
