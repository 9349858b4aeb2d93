//! The GEMM kernel: `dst[m×n] (+)= a[m×k] · b[k×n]`, i.e.
//! `dst[i, j] (+)= Σ_l a[i·a_rs + l·a_cs] · b[l·b_rs + j·b_cs]` with explicit
//! row and column strides (so transposes are free), on the `gemm` crate's
//! runtime-dispatched SIMD kernels, single-threaded (the callers parallelize
//! over chunks of samples).

use crate::Float;

/// `dst[m×n] (+)= a[m×k] · b[k×n]` with explicit (row, col) strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<E: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [E],
    accumulate: bool,
    a: &[E],
    a_rs: usize,
    a_cs: usize,
    b: &[E],
    b_rs: usize,
    b_cs: usize,
) {
    // Largest index gemm reads, `(rows − 1)·rs + (cols − 1)·cs`, in checked
    // arithmetic: an overflow fails the assert instead of wrapping to a
    // small bound that would let gemm read out of bounds.
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)
    };
    assert!(
        m.checked_mul(n).is_some_and(|mn| dst.len() >= mn),
        "matmul: dst too short"
    );
    assert!(
        m == 0 || k == 0 || last(m, k, a_rs, a_cs).is_some_and(|i| a.len() > i),
        "matmul: a too short"
    );
    assert!(
        k == 0 || n == 0 || last(k, n, b_rs, b_cs).is_some_and(|i| b.len() > i),
        "matmul: b too short"
    );
    assert!(
        [m, n, k, a_rs, a_cs, b_rs, b_cs]
            .iter()
            .all(|&x| isize::try_from(x).is_ok()),
        "matmul: a size or stride exceeds isize"
    );
    // SAFETY: the asserts above keep every index gemm touches inside the
    // slices (bounds computed without overflow, strides representable as
    // isize); `dst` is an exclusive borrow, E is f32 or f64.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { E::one() } else { E::zero() },
            E::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::matmul;

    /// The bound arithmetic is checked: strides whose products overflow
    /// `usize` fail the bounds assert instead of wrapping to a small bound
    /// that would let gemm read out of bounds.
    #[test]
    #[should_panic(expected = "matmul: a too short")]
    fn overflowing_strides_fail_the_bounds_check() {
        let (a, b) = ([1.0f64; 4], [1.0f64; 4]);
        let mut dst = [0.0f64; 6];
        // (m − 1)·a_rs = 2·(usize::MAX/2 + 1) overflows: wrapping would give
        // a bound of 0 + 1 < a.len() and let gemm read far out of bounds.
        matmul(3, 2, 2, &mut dst, false, &a, usize::MAX / 2 + 1, 1, &b, 2, 1);
    }

    /// In range, the kernel computes the product.
    #[test]
    fn small_product() {
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let b = [5.0f64, 6.0, 7.0, 8.0];
        let mut dst = [0.0f64; 4];
        matmul(2, 2, 2, &mut dst, false, &a, 2, 1, &b, 2, 1);
        assert_eq!(dst, [19.0, 22.0, 43.0, 50.0]);
        // Transposed a through its strides.
        matmul(2, 2, 2, &mut dst, false, &a, 1, 2, &b, 2, 1);
        assert_eq!(dst, [26.0, 30.0, 38.0, 44.0]);
    }
}
