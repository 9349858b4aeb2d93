//! Dense symmetric eigendecomposition: Householder reduction to a
//! tridiagonal matrix, then the implicit QL iteration with Wilkinson shifts.
//!
//! This solves the small projected problems inside [`crate::lanczos()`] and
//! [`crate::slq()`] (order tens to a few hundred) and serves as the dense
//! oracle of the test kit. The math, for a symmetric `A` (`n x n`):
//!
//! 1. **Reduction.** For `k = 0..n-2`, a Householder reflector
//!    `H_k = I − β v vᵀ` (with `β = 2 / vᵀv`) zeroes column `k` below the
//!    subdiagonal: `A ← H_k A H_k`. The trailing block is updated as a rank-2
//!    change, `A₂₂ ← A₂₂ − v wᵀ − w vᵀ` with `p = β A₂₂ v` and
//!    `w = p − (β/2)(vᵀp) v`. Then `Qᵀ A Q = T` is tridiagonal, with
//!    `Q = H₀ H₁ ⋯ H_{n−3}` accumulated explicitly.
//! 2. **QL iteration.** On `T` (diagonal `d`, subdiagonal `e`), each sweep
//!    takes the leading unreduced block `l..=m` (an off-diagonal `e_i` counts
//!    as zero once `|e_i| ≤ ε (|d_i| + |d_{i+1}|)` or `|e_i| ≤ ε ‖T‖`),
//!    shifts by the
//!    eigenvalue of the leading 2 x 2 block closer to `d_l` (Wilkinson), and
//!    chases the bulge from the bottom with Givens rotations, each applied to
//!    the columns of `Q` too. Convergence is cubic in practice; more than 60
//!    sweeps on one eigenvalue is reported as [`DenseError::NoConvergence`].
//! 3. The eigenvalues are sorted ascending with their vectors.
//!
//! Backward stable: the computed pairs are exact for a matrix within a few
//! `ε ‖A‖` of `A`, and the vectors are orthonormal to a few `n ε`. All work
//! is sequential, in a fixed order, so results are reproducible on one
//! machine. Cost `O(n³)`: about 2 ms for `n = 100`.

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
    /// The QL iteration did not converge (should not happen for finite input).
    #[error("dense symmetric eigensolver did not converge")]
    NoConvergence,
}

/// Most QL sweeps spent on one eigenvalue before giving up.
const MAX_SWEEPS: usize = 60;

/// Eigendecomposition of the symmetric `n x n` matrix `a`.
///
/// `a` may be stored row-major or column-major (it is symmetric; only the
/// lower triangle in column-major order, i.e. the upper triangle in row-major
/// order, is read). Returns `(values, vectors)` with the eigenvalues in
/// ascending order and the eigenvectors stored **column-major**: eigenvector
/// `j` is `vectors[j * n..(j + 1) * n]`. The eigenvectors are orthonormal;
/// the sign of each is arbitrary.
///
/// ```
/// let a = [2.0, 1.0, 1.0, 2.0];
/// let (w, v) = gensplit_eigen::dense::sym_eig(&a, 2).unwrap();
/// assert!((w[0] - 1.0).abs() < 1e-14 && (w[1] - 3.0).abs() < 1e-14);
/// assert!((v[2].abs() - 0.5f64.sqrt()).abs() < 1e-14);
/// ```
pub fn sym_eig(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>), DenseError> {
    let expected = n.saturating_mul(n);
    if a.len() != expected {
        return Err(DenseError::BadLength { len: a.len(), expected });
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(DenseError::NonFinite);
    }
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    // Work on a full symmetric copy, column-major, built from the lower
    // triangle (column j, rows i >= j).
    let mut w = vec![0.0; n * n];
    for j in 0..n {
        for i in j..n {
            let x = a[j * n + i];
            w[j * n + i] = x;
            w[i * n + j] = x;
        }
    }
    let (mut d, mut e, mut q) = tridiagonalize(w, n);
    ql_implicit(&mut d, &mut e, &mut q, n)?;
    sort_ascending(&mut d, &mut q, n);
    Ok((d, q))
}

/// Eigenvalues only (ascending) of the symmetric `n x n` matrix `a`.
pub fn sym_eigvals(a: &[f64], n: usize) -> Result<Vec<f64>, DenseError> {
    sym_eig(a, n).map(|(w, _)| w)
}

/// Householder reduction of the full symmetric column-major `a` to
/// tridiagonal form. Returns the diagonal `d`, the subdiagonal `e`
/// (`e[i]` couples `i` and `i + 1`; `e[n-1] = 0`) and `Q` (column-major)
/// with `Qᵀ A Q = T`.
fn tridiagonalize(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    // Reflector k acts on rows k+1..n; its vector (length n-k-1) and β.
    let mut reflectors: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n.saturating_sub(2));
    let mut p = vec![0.0; n];
    for k in 0..n.saturating_sub(2) {
        let lo = k + 1;
        let m = n - lo;
        // x = A[lo.., k] (column k, contiguous).
        let x = &a[k * n + lo..(k + 1) * n];
        let scale: f64 = x.iter().map(|v| v.abs()).sum();
        d[k] = a[k * n + k];
        if scale == 0.0 {
            e[k] = 0.0;
            reflectors.push((Vec::new(), 0.0));
            continue;
        }
        // Scaled to avoid overflow in the sum of squares.
        let mut v: Vec<f64> = x.iter().map(|xi| xi / scale).collect();
        let sigma = v.iter().map(|t| t * t).sum::<f64>().sqrt();
        let alpha = if v[0] >= 0.0 { -sigma } else { sigma };
        e[k] = alpha * scale;
        v[0] -= alpha;
        let vtv: f64 = v.iter().map(|t| t * t).sum();
        if vtv == 0.0 {
            reflectors.push((Vec::new(), 0.0));
            continue;
        }
        let beta = 2.0 / vtv;
        // p = β A₂₂ v (A₂₂ symmetric; column-major columns lo..n).
        let p = &mut p[..m];
        p.iter_mut().for_each(|t| *t = 0.0);
        for (c, &vc) in v.iter().enumerate() {
            let col = &a[(lo + c) * n + lo..(lo + c + 1) * n];
            let s = beta * vc;
            for (pi, &aic) in p.iter_mut().zip(col) {
                *pi += aic * s;
            }
        }
        let kk = 0.5 * beta * v.iter().zip(p.iter()).map(|(a, b)| a * b).sum::<f64>();
        // w = p − K v, stored in p.
        for (pi, &vi) in p.iter_mut().zip(&v) {
            *pi -= kk * vi;
        }
        // A₂₂ −= v wᵀ + w vᵀ.
        for c in 0..m {
            let (vc, wc) = (v[c], p[c]);
            let col = &mut a[(lo + c) * n + lo..(lo + c + 1) * n];
            for ((aic, &vi), &wi) in col.iter_mut().zip(&v).zip(p.iter()) {
                *aic -= vi * wc + wi * vc;
            }
        }
        reflectors.push((v, beta));
    }
    if n >= 2 {
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 2) * n + n - 1];
    }
    d[n - 1] = a[(n - 1) * n + n - 1];
    // Q = H₀ H₁ ⋯ H_{n−3} I, applied from the last reflector back.
    let mut q = vec![0.0; n * n];
    for i in 0..n {
        q[i * n + i] = 1.0;
    }
    for (k, (v, beta)) in reflectors.iter().enumerate().rev() {
        if v.is_empty() {
            continue;
        }
        let lo = k + 1;
        // Columns lo..n of Q are the only ones H_k changes (the earlier
        // columns are still unit vectors e_j with j < lo).
        for c in lo..n {
            let col = &mut q[c * n + lo..(c + 1) * n];
            let s = beta * v.iter().zip(col.iter()).map(|(a, b)| a * b).sum::<f64>();
            for (qi, &vi) in col.iter_mut().zip(v) {
                *qi -= s * vi;
            }
        }
    }
    (d, e, q)
}

/// Implicit QL with Wilkinson shifts on the tridiagonal `(d, e)`, rotating
/// the columns of the column-major `z` along. On return `d` holds the
/// eigenvalues (unsorted) and column `j` of `z` the eigenvector of `d[j]`.
fn ql_implicit(d: &mut [f64], e: &mut [f64], z: &mut [f64], n: usize) -> Result<(), DenseError> {
    // Couplings below ε ‖T‖ are negligible whatever the diagonal next to
    // them: a purely relative test never deflates noise-level couplings
    // between noise-level diagonal entries (the zero eigenvalues of a
    // rank-deficient matrix) and the sweeps stall there.
    let tnorm = (0..n).fold(0.0f64, |m, i| {
        m.max(d[i].abs() + e[i].abs() + if i > 0 { e[i - 1].abs() } else { 0.0 })
    });
    let floor = f64::EPSILON * tnorm;
    for l in 0..n {
        let mut sweeps = 0;
        loop {
            // The first negligible subdiagonal entry at or after l.
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd || e[m].abs() <= floor {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            sweeps += 1;
            if sweeps > MAX_SWEEPS {
                return Err(DenseError::NoConvergence);
            }
            // Wilkinson shift from the leading 2 x 2 block.
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    // Split: recover and restart with the smaller block.
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                // Rotate columns i and i+1 of z.
                let (left, right) = z.split_at_mut((i + 1) * n);
                let zi = &mut left[i * n..];
                let zi1 = &mut right[..n];
                for (a, b) in zi.iter_mut().zip(zi1.iter_mut()) {
                    let t = *b;
                    *b = s * *a + c * t;
                    *a = c * *a - s * t;
                }
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(())
}

/// Sorts the eigenvalues ascending, moving the columns of `z` with them
/// (selection sort: `n` column swaps at most).
fn sort_ascending(d: &mut [f64], z: &mut [f64], n: usize) {
    for i in 0..n {
        let mut k = i;
        for j in i + 1..n {
            if d[j] < d[k] {
                k = j;
            }
        }
        if k != i {
            d.swap(i, k);
            let (left, right) = z.split_at_mut(k * n);
            left[i * n..(i + 1) * n].swap_with_slice(&mut right[..n]);
        }
    }
}
