//! Small dense vector kernels (sequential, deterministic) and the Lanczos
//! step they make up.

use crate::operator::LinearOperator;

/// Dot product, 4-way unrolled (deterministic order).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Euclidean norm.
#[inline]
pub(crate) fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `y += alpha * x`.
#[inline]
pub(crate) fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `x *= alpha`.
#[inline]
pub(crate) fn scale(alpha: f64, x: &mut [f64]) {
    for xi in x {
        *xi *= alpha;
    }
}

/// One classical Gram–Schmidt pass of `w` against the `m` columns of the
/// column-major block `q` (`n x m`): `h = Q^T w`, `w -= Q h`. Adds `h` into
/// `acc` (if given).
pub(crate) fn cgs_pass(q: &[f64], n: usize, m: usize, w: &mut [f64], acc: Option<&mut [f64]>) {
    if m == 0 {
        return;
    }
    let mut h = vec![0.0; m];
    for (j, hj) in h.iter_mut().enumerate() {
        *hj = dot(&q[j * n..(j + 1) * n], w);
    }
    for (j, hj) in h.iter().enumerate() {
        axpy(-hj, &q[j * n..(j + 1) * n], w);
    }
    if let Some(acc) = acc {
        for (a, hj) in acc.iter_mut().zip(&h) {
            *a += hj;
        }
    }
}

/// `out[:, j] = sum_i q[:, i] * y[i, j]` for the `n x m` column-major block `q`
/// and the `m x p` column-major matrix `y` (leading dimension `ldy`).
///
/// Rows go in blocks of [`COMBINE_ROWS`] (a block of `q` stays in cache
/// while every output column takes it in); within a block, each output
/// entry sums over `i` in order, so the result does not depend on `n`'s
/// blocking.
pub(crate) fn combine(q: &[f64], n: usize, m: usize, y: &[f64], ldy: usize, p: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * p];
    if n == 0 || m == 0 || p == 0 {
        return out;
    }
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + COMBINE_ROWS).min(n);
        for j in 0..p {
            let yj = &y[j * ldy..j * ldy + m];
            let o = &mut out[j * n + r0..j * n + r1];
            for (i, &yij) in yj.iter().enumerate() {
                axpy(yij, &q[i * n + r0..i * n + r1], o);
            }
        }
        r0 = r1;
    }
    out
}

/// Rows per block of [`combine`].
const COMBINE_ROWS: usize = 512;

/// A Rademacher vector (entries ±1 with equal probability).
pub(crate) fn rademacher(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f64> {
    use rand::Rng;
    (0..n).map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 }).collect()
}

/// One step of the Lanczos recurrence with full reorthogonalization, shared
/// by [`crate::lanczos()`] and [`crate::slq()`]: `av = A v_j` (column `j` of
/// the column-major basis `v`, `n` rows), then `r = av` orthogonalized by
/// classical Gram–Schmidt, twice, against the `nlocked` columns of `locked`
/// and the basis columns `0..=j`, and mapped into the operator's domain
/// ([`LinearOperator::constrain`]). Returns `h = V^T A v_j` (so `h[j]` is the
/// new diagonal entry `α_j` and `‖r‖` the next `β_j`), or
/// `Err(matvec)` (1-based) when `A v_j` is not finite. Counts the product in
/// `matvecs`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lanczos_step<A: LinearOperator + ?Sized>(
    op: &A,
    v: &[f64],
    n: usize,
    j: usize,
    locked: &[f64],
    nlocked: usize,
    av: &mut [f64],
    r: &mut [f64],
    matvecs: &mut usize,
) -> Result<Vec<f64>, usize> {
    op.apply(&v[j * n..(j + 1) * n], av);
    *matvecs += 1;
    if av.iter().any(|x| !x.is_finite()) {
        return Err(*matvecs);
    }
    r.copy_from_slice(av);
    let mut h = vec![0.0; j + 1];
    for _ in 0..2 {
        cgs_pass(locked, n, nlocked, r, None);
        cgs_pass(v, n, j + 1, r, Some(&mut h));
    }
    // Keep rounding noise from leaking out of the operator's domain (a
    // no-op for ordinary operators).
    op.constrain(r);
    Ok(h)
}
