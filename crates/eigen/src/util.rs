//! Small dense vector kernels (sequential, deterministic).

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
pub(crate) fn combine(q: &[f64], n: usize, m: usize, y: &[f64], ldy: usize, p: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * p];
    if n == 0 || m == 0 || p == 0 {
        return out;
    }
    let qm = faer::MatRef::from_column_major_slice(&q[..n * m], n, m);
    let ym = faer::MatRef::from_column_major_slice_with_stride(&y[..ldy * (p - 1) + m], m, p, ldy);
    let om = faer::MatMut::from_column_major_slice_mut(&mut out, n, p);
    faer::linalg::matmul::matmul(om, faer::Accum::Replace, qm, ym, 1.0, faer::Par::Seq);
    out
}

/// A Rademacher vector (entries ±1 with equal probability).
pub(crate) fn rademacher(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Vec<f64> {
    use rand::Rng;
    (0..n).map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 }).collect()
}
