//! Dense symmetric eigendecomposition (a thin wrapper around [`faer`]).
//!
//! This is the oracle used in the tests and the solver for the small projected
//! problems inside [`crate::lanczos()`]. All computations run sequentially, so
//! results are bit-for-bit reproducible.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::{MatMut, MatRef, Par};

/// Errors of the dense eigensolver.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DenseError {
    /// The slice length is not `n * n`.
    #[error("matrix slice has length {len}, expected n*n = {expected}")]
    BadLength {
        /// Length of the given slice.
        len: usize,
        /// Expected length `n * n`.
        expected: usize,
    },
    /// The matrix contains NaN or an infinity.
    #[error("matrix contains a non-finite entry")]
    NonFinite,
    /// The QR iteration did not converge (should not happen for finite input).
    #[error("dense symmetric eigensolver did not converge")]
    NoConvergence,
}

/// Eigendecomposition of the symmetric `n x n` matrix `a`.
///
/// `a` may be stored row-major or column-major (it is symmetric; only the
/// lower triangle in column-major order, i.e. the upper triangle in row-major
/// order, is read). Returns `(values, vectors)` with the eigenvalues in
/// ascending order and the eigenvectors stored **column-major**: eigenvector
/// `j` is `vectors[j * n..(j + 1) * n]`. The eigenvectors are orthonormal.
///
/// ```
/// let a = [2.0, 1.0, 1.0, 2.0];
/// let (w, v) = gensplit_eigen::dense::sym_eig(&a, 2).unwrap();
/// assert!((w[0] - 1.0).abs() < 1e-14 && (w[1] - 3.0).abs() < 1e-14);
/// assert!((v[2].abs() - 0.5f64.sqrt()).abs() < 1e-14);
/// ```
pub fn sym_eig(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>), DenseError> {
    if a.len() != n * n {
        return Err(DenseError::BadLength {
            len: a.len(),
            expected: n * n,
        });
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(DenseError::NonFinite);
    }
    let mut values = vec![0.0; n];
    let mut vectors = vec![0.0; n * n];
    if n == 0 {
        return Ok((values, vectors));
    }
    let a = MatRef::from_column_major_slice(a, n, n);
    let mut s = faer::Mat::<f64>::zeros(n, 1);
    {
        let u = MatMut::from_column_major_slice_mut(&mut vectors, n, n);
        let par = Par::Seq;
        let req = self_adjoint_evd_scratch::<f64>(n, ComputeEigenvectors::Yes, par, Default::default());
        let mut buf = MemBuffer::new(req);
        let stack = MemStack::new(&mut buf);
        let diag = s.as_mut().col_mut(0).as_diagonal_mut();
        self_adjoint_evd(a, diag, Some(u), par, stack, Default::default()).map_err(|_| DenseError::NoConvergence)?;
    }
    for (i, v) in values.iter_mut().enumerate() {
        *v = s[(i, 0)];
    }
    Ok((values, vectors))
}

/// Eigenvalues only (ascending) of the symmetric `n x n` matrix `a`.
pub fn sym_eigvals(a: &[f64], n: usize) -> Result<Vec<f64>, DenseError> {
    sym_eig(a, n).map(|(w, _)| w)
}
