//! Symmetric linear operators and composable wrappers.
//!
//! The solvers only need `y = A x`; implement [`LinearOperator`] for your own
//! matrix-free operator (e.g. a Hessian-vector product). Provided here:
//!
//! * [`DenseSymmetric`]: a row-major `n x n` symmetric matrix (validated);
//! * [`Projected`]: `P A P` with `P = I - Q Q^T` (deflation / steering);
//! * [`Shifted`]: `A - sigma I`; [`Scaled`]: `alpha A`;
//! * blanket impls for `&T`, `&mut T` and `Box<T>` (including `Box<dyn LinearOperator>`).

use crate::util::{axpy, cgs_pass, dot, norm, scale};

/// Symmetric linear operator on `R^n` (f64).
///
/// Implementations must be symmetric (`x^T A y == y^T A x` up to rounding);
/// the Lanczos solver relies on it.
pub trait LinearOperator {
    /// Dimension `n` of the space.
    fn dim(&self) -> usize;
    /// `y = A x`. `x.len() == y.len() == dim()`.
    fn apply(&self, x: &[f64], y: &mut [f64]);
    /// Maps `x` (in place) into the subspace the operator acts on.
    ///
    /// Operators that are defined on a subspace only, like [`Projected`]
    /// (which acts on `span(Q)^⊥`), override this with the orthogonal
    /// projector onto it. The solvers apply it to their start and restart
    /// vectors, so Krylov spaces and eigenvectors stay in the subspace (the
    /// artificial zero eigenvalues on `span(Q)` are never returned). The
    /// default is the identity.
    fn constrain(&self, x: &mut [f64]) {
        let _ = x;
    }
}

impl<T: LinearOperator + ?Sized> LinearOperator for &T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        (**self).apply(x, y)
    }
    fn constrain(&self, x: &mut [f64]) {
        (**self).constrain(x)
    }
}

impl<T: LinearOperator + ?Sized> LinearOperator for &mut T {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        (**self).apply(x, y)
    }
    fn constrain(&self, x: &mut [f64]) {
        (**self).constrain(x)
    }
}

impl<T: LinearOperator + ?Sized> LinearOperator for Box<T> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        (**self).apply(x, y)
    }
    fn constrain(&self, x: &mut [f64]) {
        (**self).constrain(x)
    }
}

/// Errors raised when constructing operators.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OperatorError {
    /// The data length does not match the dimension.
    #[error("expected {expected} entries, got {got}")]
    BadLength {
        /// Expected number of entries.
        expected: usize,
        /// Given number of entries.
        got: usize,
    },
    /// The matrix contains NaN or an infinity.
    #[error("matrix contains a non-finite entry")]
    NonFinite,
    /// The matrix is not symmetric within the tolerance.
    #[error("matrix is not symmetric: |a[{i}][{j}] - a[{j}][{i}]| = {diff:e} exceeds {tol:e}")]
    NotSymmetric {
        /// Row of the worst entry.
        i: usize,
        /// Column of the worst entry.
        j: usize,
        /// Absolute asymmetry.
        diff: f64,
        /// Allowed asymmetry.
        tol: f64,
    },
    /// A basis vector has the wrong length or is non-finite.
    #[error("basis vector {index} has length {len} (expected {dim}) or is non-finite")]
    BadBasisVector {
        /// Index of the offending vector.
        index: usize,
        /// Its length.
        len: usize,
        /// Operator dimension.
        dim: usize,
    },
}

/// A dense symmetric matrix stored row-major (`n * n` entries).
///
/// On construction the matrix is checked to be symmetric up to a relative
/// tolerance and then exactly symmetrized (`(A + A^T) / 2`).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseSymmetric {
    n: usize,
    data: Vec<f64>,
}

impl DenseSymmetric {
    /// Default relative symmetry tolerance used by [`DenseSymmetric::new`].
    pub const DEFAULT_SYMMETRY_TOL: f64 = 1e-10;

    /// Wraps a row-major `n x n` matrix; asymmetry up to
    /// `1e-10 * max |a_ij|` is accepted (and removed).
    pub fn new(data: Vec<f64>, n: usize) -> Result<Self, OperatorError> {
        Self::with_tolerance(data, n, Self::DEFAULT_SYMMETRY_TOL)
    }

    /// Like [`DenseSymmetric::new`] with a custom relative symmetry tolerance.
    pub fn with_tolerance(mut data: Vec<f64>, n: usize, rel_tol: f64) -> Result<Self, OperatorError> {
        if data.len() != n * n {
            return Err(OperatorError::BadLength {
                expected: n * n,
                got: data.len(),
            });
        }
        if data.iter().any(|x| !x.is_finite()) {
            return Err(OperatorError::NonFinite);
        }
        let max_abs = data.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let tol = rel_tol * max_abs;
        let mut worst = (0, 0, 0.0f64);
        for i in 0..n {
            for j in (i + 1)..n {
                let d = (data[i * n + j] - data[j * n + i]).abs();
                if d > worst.2 {
                    worst = (i, j, d);
                }
            }
        }
        if worst.2 > tol {
            return Err(OperatorError::NotSymmetric {
                i: worst.0,
                j: worst.1,
                diff: worst.2,
                tol,
            });
        }
        for i in 0..n {
            for j in (i + 1)..n {
                let s = 0.5 * (data[i * n + j] + data[j * n + i]);
                data[i * n + j] = s;
                data[j * n + i] = s;
            }
        }
        Ok(Self { n, data })
    }

    /// Builds the matrix from a function of `(i, j)`, evaluated for `i <= j`
    /// and mirrored (so the result is exactly symmetric).
    pub fn from_fn(n: usize, mut f: impl FnMut(usize, usize) -> f64) -> Result<Self, OperatorError> {
        let mut data = vec![0.0; n * n];
        for i in 0..n {
            for j in i..n {
                let v = f(i, j);
                data[i * n + j] = v;
                data[j * n + i] = v;
            }
        }
        Self::new(data, n)
    }

    /// Diagonal matrix with the given diagonal.
    pub fn from_diagonal(diag: &[f64]) -> Result<Self, OperatorError> {
        Self::from_fn(diag.len(), |i, j| if i == j { diag[i] } else { 0.0 })
    }

    /// The row-major entries (exactly symmetric).
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j]
    }
}

impl LinearOperator for DenseSymmetric {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        assert_eq!(x.len(), self.n, "x has wrong length");
        assert_eq!(y.len(), self.n, "y has wrong length");
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = dot(&self.data[i * self.n..(i + 1) * self.n], x);
        }
    }
}

/// Orthonormalizes `vectors` (each of length `n`) by classical Gram–Schmidt
/// applied twice, dropping vectors that are (numerically) linearly dependent
/// on the previous ones: a vector is dropped when its norm after
/// orthogonalization is below `rel_tol` times its original norm.
/// Returns the orthonormal vectors stored column-major (`n x rank`) and the rank.
pub fn orthonormalize(vectors: &[Vec<f64>], n: usize, rel_tol: f64) -> Result<(Vec<f64>, usize), OperatorError> {
    let mut q: Vec<f64> = Vec::with_capacity(n * vectors.len());
    let mut rank = 0;
    for (index, v) in vectors.iter().enumerate() {
        if v.len() != n || v.iter().any(|x| !x.is_finite()) {
            return Err(OperatorError::BadBasisVector {
                index,
                len: v.len(),
                dim: n,
            });
        }
        let nv = norm(v);
        if nv == 0.0 {
            continue;
        }
        let mut w: Vec<f64> = v.iter().map(|x| x / nv).collect();
        cgs_pass(&q, n, rank, &mut w, None);
        cgs_pass(&q, n, rank, &mut w, None);
        let nw = norm(&w);
        if nw <= rel_tol {
            continue;
        }
        scale(1.0 / nw, &mut w);
        q.extend_from_slice(&w);
        rank += 1;
    }
    Ok((q, rank))
}

/// The projected operator `P A P` with `P = I - Q Q^T`.
///
/// `Q` is an orthonormal basis of the span of the vectors given to
/// [`Projected::new`] (they are orthonormalized on construction; numerically
/// dependent vectors are dropped, see [`Projected::rank`]). `P A P` is
/// symmetric, has `span(Q)` in its null space and agrees with `A` on the
/// orthogonal complement: restricted to `span(Q)^⊥` it is the compression of
/// `A` onto that subspace (what "steering" needs: `P⊥ H P⊥`). Through
/// [`LinearOperator::constrain`] the solvers work inside `span(Q)^⊥` only, so
/// they return eigenpairs of the compression and never vectors with a
/// component in `span(Q)`.
#[derive(Debug, Clone)]
pub struct Projected<A> {
    op: A,
    n: usize,
    rank: usize,
    /// Column-major `n x rank` orthonormal basis.
    q: Vec<f64>,
}

impl<A: LinearOperator> Projected<A> {
    /// Relative tolerance below which a basis vector counts as dependent.
    pub const RANK_TOL: f64 = 1e-10;

    /// Wraps `op`, projecting out the span of `basis` (any spanning set; it is
    /// orthonormalized here).
    pub fn new(op: A, basis: &[Vec<f64>]) -> Result<Self, OperatorError> {
        let n = op.dim();
        let (q, rank) = orthonormalize(basis, n, Self::RANK_TOL)?;
        Ok(Self { op, n, rank, q })
    }

    /// Numerical rank of the given basis (number of columns of `Q`).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Column `j` of the orthonormal basis `Q`.
    pub fn basis_vector(&self, j: usize) -> &[f64] {
        &self.q[j * self.n..(j + 1) * self.n]
    }

    /// The orthonormal basis vectors `Q` (owned copies).
    pub fn basis(&self) -> Vec<Vec<f64>> {
        (0..self.rank).map(|j| self.basis_vector(j).to_vec()).collect()
    }

    /// Applies `P = I - Q Q^T` in place (twice, for numerical robustness).
    pub fn project(&self, x: &mut [f64]) {
        cgs_pass(&self.q, self.n, self.rank, x, None);
        cgs_pass(&self.q, self.n, self.rank, x, None);
    }

    /// The wrapped operator.
    pub fn inner(&self) -> &A {
        &self.op
    }

    /// Unwraps the operator.
    pub fn into_inner(self) -> A {
        self.op
    }
}

impl<A: LinearOperator> LinearOperator for Projected<A> {
    fn dim(&self) -> usize {
        self.n
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        if self.rank == 0 {
            self.op.apply(x, y);
            return;
        }
        let mut t = x.to_vec();
        self.project(&mut t);
        self.op.apply(&t, y);
        self.project(y);
    }
    fn constrain(&self, x: &mut [f64]) {
        self.op.constrain(x);
        self.project(x);
    }
}

/// The shifted operator `A - sigma I`.
#[derive(Debug, Clone)]
pub struct Shifted<A> {
    /// The wrapped operator.
    pub op: A,
    /// The shift `sigma`.
    pub sigma: f64,
}

impl<A: LinearOperator> LinearOperator for Shifted<A> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.op.apply(x, y);
        axpy(-self.sigma, x, y);
    }
    fn constrain(&self, x: &mut [f64]) {
        self.op.constrain(x)
    }
}

/// The scaled operator `alpha A`.
#[derive(Debug, Clone)]
pub struct Scaled<A> {
    /// The wrapped operator.
    pub op: A,
    /// The factor `alpha`.
    pub alpha: f64,
}

impl<A: LinearOperator> LinearOperator for Scaled<A> {
    fn dim(&self) -> usize {
        self.op.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.op.apply(x, y);
        scale(self.alpha, y);
    }
    fn constrain(&self, x: &mut [f64]) {
        self.op.constrain(x)
    }
}

/// A diagonal operator (cheap; handy for tests and benchmarks).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagonal {
    /// The diagonal entries.
    pub diag: Vec<f64>,
}

impl LinearOperator for Diagonal {
    fn dim(&self) -> usize {
        self.diag.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        for ((yi, xi), di) in y.iter_mut().zip(x).zip(&self.diag) {
            *yi = di * xi;
        }
    }
}
