//! The dense symmetric eigensolver (`sym_eig`: Householder + implicit QL)
//! against two oracles that share no code with it: planted spectra
//! (`Q diag(λ) Qᵀ` with a known λ) and a naive cyclic Jacobi iteration
//! written here. Every pair is also checked by its own residual
//! `‖A v − λ v‖` and the vectors' orthonormality.

use crate::common::*;
use gensplit_eigen::dense::{sym_eig, sym_eigvals, DenseError};
use gensplit_eigen::LinearOperator;
use proptest::prelude::*;

/// Naive cyclic Jacobi: rotate away every off-diagonal entry in turn until
/// the off-diagonal mass is below `1e-15 ‖A‖_F` (row-major full copy).
/// Returns the eigenvalues ascending. `O(n³)` per sweep, for tests only.
fn jacobi_eigvals(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let fro = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j] * m[i * n + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * fro {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Choose the rotation angle θ with tan(2θ) = 2 a_pq / (a_qq − a_pp).
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J on rows and columns p, q.
                for k in 0..n {
                    let (akp, akq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * akp - s * akq;
                    m[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * apk - s * aqk;
                    m[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut w: Vec<f64> = (0..n).map(|i| m[i * n + i]).collect();
    w.sort_by(f64::total_cmp);
    w
}

/// Checks `sym_eig(a)`: ascending values, residuals and orthonormality
/// within `tol · max(‖A‖_F, tiny)`, and returns the values.
fn check_pairs(a: &[f64], n: usize, tol: f64) -> Vec<f64> {
    let (w, v) = sym_eig(a, n).unwrap();
    assert_eq!((w.len(), v.len()), (n, n * n));
    assert!(w.windows(2).all(|p| p[0] <= p[1]), "not ascending: {w:?}");
    let fro = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    let mut av = vec![0.0; n];
    for j in 0..n {
        let vj = &v[j * n..(j + 1) * n];
        for (i, out) in av.iter_mut().enumerate() {
            *out = (0..n).map(|c| a[c * n + i] * vj[c]).sum();
        }
        let res = av
            .iter()
            .zip(vj)
            .map(|(x, y)| (x - w[j] * y).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(res <= tol * fro, "pair {j}: residual {res:e} vs ‖A‖ {fro:e}");
    }
    let cols: Vec<Vec<f64>> = (0..n).map(|j| v[j * n..(j + 1) * n].to_vec()).collect();
    let orth = orthonormality_error(&cols);
    assert!(orth <= tol, "orthonormality error {orth:e}");
    w
}

/// A random symmetric matrix (column-major full storage) with entries
/// uniform in `[-1, 1) · scale`.
fn random_symmetric(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let g = gaussian_vectors(n * n, 1, seed).remove(0);
    let mut a = vec![0.0; n * n];
    for j in 0..n {
        for i in j..n {
            let x = g[j * n + i] * scale;
            a[j * n + i] = x;
            a[i * n + j] = x;
        }
    }
    a
}

fn assert_values_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * scale, "{what}: value {i}: {g} vs {w}");
    }
}

proptest! {
    #![proptest_config(fixed_config(64))]

    /// Every spectrum family of the test kit (clusters, exact repeats, tiny
    /// gaps, power laws), dimension 1 to 60.
    #[test]
    fn recovers_planted_spectra(op in any_planted(1..=60)) {
        let n = op.dim();
        let w = check_pairs(op.matrix().as_slice(), n, 1e-12);
        let mut want = op.spectrum().to_vec();
        want.sort_by(f64::total_cmp);
        assert_values_close(&w, &want, 1e-12, "planted");
    }

    /// Gaussian symmetric matrices from 1e-150 to 1e150 in scale (the
    /// reflectors are scaled, so neither overflow nor underflow).
    #[test]
    fn matches_jacobi_on_random_matrices(n in 0usize..=30, seed in any::<u64>(), exp in -150i32..=150) {
        let a = random_symmetric(n, seed, 10f64.powi(exp));
        let w = check_pairs(&a, n, 1e-12);
        assert_values_close(&w, &jacobi_eigvals(&a, n), 1e-12, "jacobi");
        prop_assert_eq!(sym_eigvals(&a, n).unwrap(), w);
    }
}

#[test]
fn structured_matrices() {
    // Zero, identity times a constant (one eigenvalue, n times), diagonal in
    // any order, a tridiagonal matrix that splits in two (a zero coupling),
    // a graded diagonal-dominant matrix from 1e-8 to 1e8.
    let n = 7;
    let zero = vec![0.0; n * n];
    assert_eq!(check_pairs(&zero, n, 1e-14), vec![0.0; n]);
    let mut ident = vec![0.0; n * n];
    for i in 0..n {
        ident[i * n + i] = -2.5;
    }
    assert_values_close(&check_pairs(&ident, n, 1e-14), &[-2.5; 7], 1e-15, "identity");
    let diag = [3.0, -1.0, 7.0, 0.5, -9.0, 2.0, 2.0];
    let mut d = vec![0.0; n * n];
    for (i, &x) in diag.iter().enumerate() {
        d[i * n + i] = x;
    }
    let mut want = diag.to_vec();
    want.sort_by(f64::total_cmp);
    assert_eq!(check_pairs(&d, n, 1e-14), want);
    let mut t = vec![0.0; n * n];
    for i in 0..n {
        t[i * n + i] = i as f64;
        if i + 1 < n && i != 3 {
            t[i * n + i + 1] = 1.0;
            t[(i + 1) * n + i] = 1.0;
        }
    }
    assert_values_close(&check_pairs(&t, n, 1e-13), &jacobi_eigvals(&t, n), 1e-13, "split");
    let mut g = random_symmetric(n, 3, 1e-3);
    for i in 0..n {
        g[i * n + i] = 10f64.powi(2 * i as i32 - 8);
    }
    assert_values_close(&check_pairs(&g, n, 1e-13), &jacobi_eigvals(&g, n), 1e-13, "graded");
}

#[test]
fn only_the_lower_triangle_is_read() {
    // Column-major lower triangle = row-major upper triangle: garbage in the
    // other half changes nothing.
    let n = 9;
    let a = random_symmetric(n, 11, 1.0);
    let mut b = a.clone();
    for j in 0..n {
        for i in 0..j {
            b[j * n + i] = 1e3 * (i + j) as f64;
        }
    }
    assert_eq!(sym_eig(&a, n).unwrap(), sym_eig(&b, n).unwrap());
}

#[test]
fn bad_input_is_a_typed_error() {
    assert_eq!(
        sym_eig(&[1.0, 2.0, 3.0], 2),
        Err(DenseError::BadLength { len: 3, expected: 4 })
    );
    assert_eq!(sym_eig(&[1.0, f64::NAN, f64::NAN, 1.0], 2), Err(DenseError::NonFinite));
    assert_eq!(sym_eig(&[f64::INFINITY], 1), Err(DenseError::NonFinite));
    assert_eq!(sym_eig(&[], 0), Ok((vec![], vec![])));
    assert!(matches!(sym_eig(&[], usize::MAX), Err(DenseError::BadLength { .. })));
}

#[test]
fn rank_deficient_gram_matrices() {
    // WᵀW for a wide W (rows < cols): cols − rows eigenvalues are zero up
    // to rounding, so the QL iteration must deflate noise-level couplings
    // between noise-level diagonal entries (a block Gram matrix of the
    // sphere search, 144 x 144 of rank 16, did not converge with a purely
    // relative deflation test).
    for (rows, cols, seed) in [(16usize, 144usize, 1u64), (3, 40, 2), (1, 25, 3), (40, 60, 4)] {
        let w = gaussian_vectors(rows * cols, 1, seed).remove(0);
        let mut g = vec![0.0; cols * cols];
        for r in 0..rows {
            let row = &w[r * cols..(r + 1) * cols];
            for i in 0..cols {
                for j in 0..cols {
                    g[i * cols + j] += row[i] * row[j];
                }
            }
        }
        let vals = check_pairs(&g, cols, 1e-12);
        assert_values_close(&vals, &jacobi_eigvals(&g, cols), 1e-12, "gram");
        let zeros = vals.iter().filter(|v| v.abs() < 1e-10 * vals[cols - 1]).count();
        assert_eq!(zeros, cols - rows.min(cols), "{rows} x {cols}");
    }
}
