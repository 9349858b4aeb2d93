//! Orthonormal bases of subspaces of `R^n` and their projectors.
//!
//! A [`Basis`] stores `Q ∈ R^{n×k}` (column-major) with `QᵀQ = I_k`; it
//! represents the subspace `S = span(Q)`. The orthogonal projector onto `S` is
//! `P = Q Qᵀ` and the projector onto its complement is `P⊥ = I − Q Qᵀ`; both are
//! symmetric and idempotent and `P + P⊥ = I`.
//!
//! * [`Basis::span`] turns any spanning set `v_1, …, v_m` into such a `Q` by
//!   classical Gram–Schmidt applied twice ("twice is enough": the second pass
//!   removes the rounding left by the first, so `QᵀQ = I` to machine
//!   precision). A vector whose norm, relative to its original norm, falls to
//!   `1e-10` or below after orthogonalization is numerically dependent on the
//!   previous ones and is dropped, so `rank() = dim span{v_i}` for well-separated
//!   spectra of the Gram matrix.
//! * [`Basis::random`] draws a uniformly (Haar) distributed orthonormal
//!   `k`-frame: the Gram–Schmidt factor `Q` of an `n×k` matrix with i.i.d.
//!   standard Gaussian entries is Haar distributed on the Stiefel manifold, so
//!   `span(Q)` is a uniformly random `k`-dimensional subspace.
//! * [`Basis::project_onto`] / [`Basis::project_out`] apply `P` / `P⊥` with two
//!   Gram–Schmidt passes: `c₁ = Qᵀx`, `r₁ = x − Q c₁`, `c₂ = Qᵀr₁`,
//!   `r = r₁ − Q c₂`; then `P x = Q (c₁ + c₂)` and `P⊥ x = r`. In exact
//!   arithmetic `c₂ = 0`; in floating point it keeps `Qᵀ(P⊥x)` at rounding level
//!   even when `x` lies almost entirely inside `S`.
//! * [`Basis::share`] is `‖Qᵀx‖² / ‖x‖² = ‖P x‖² / ‖x‖² ∈ [0, 1]`, the fraction
//!   of `x`'s squared norm inside `S` (cosine² of the angle between `x` and `S`).
//!
//! ```rust
//! use gensplit_steer::Basis;
//!
//! // span{e1, e1 + e2, 2 e1} in R^3 is the (x, y) plane: rank 2.
//! let b = Basis::span(&[vec![1.0, 0.0, 0.0], vec![1.0, 1.0, 0.0], vec![2.0, 0.0, 0.0]], 3).unwrap();
//! assert_eq!((b.dim(), b.rank()), (3, 2));
//!
//! let mut x = vec![3.0, 4.0, 12.0];
//! assert!((b.share(&x).unwrap() - 25.0 / 169.0).abs() < 1e-15);
//! b.project_out(&mut x).unwrap();
//! assert!(x[0].abs() < 1e-15 && x[1].abs() < 1e-15 && (x[2] - 12.0).abs() < 1e-15);
//!
//! let r = Basis::random(10, 4, 7).unwrap();
//! assert_eq!(r.rank(), 4);
//! let c = r.coords(&r.combine(&[1.0, 2.0, 3.0, 4.0]).unwrap()).unwrap();
//! assert!((c[3] - 4.0).abs() < 1e-12);
//! ```

use gensplit_eigen::operator::orthonormalize;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::SteerError;

/// Relative norm at or below which a vector counts as dependent on the previous ones.
pub const RANK_TOL: f64 = 1e-10;

/// An orthonormal basis Q (n x k, column-major) of a subspace of R^n.
#[derive(Clone, Debug, PartialEq)]
pub struct Basis {
    n: usize,
    k: usize,
    /// Column-major `n x k`; column `j` is `q[j * n..(j + 1) * n]`.
    q: Vec<f64>,
}

/// Checks that `x` has length `n` and finite entries.
pub(crate) fn check_vector(x: &[f64], n: usize, what: impl Fn() -> String) -> Result<(), SteerError> {
    if x.len() != n {
        return Err(SteerError::Length {
            what: what(),
            expected: n,
            got: x.len(),
        });
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(SteerError::NonFinite { what: what() });
    }
    Ok(())
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `‖x‖²` computed on `x / max|x_i|` (then rescaled) so that it neither
/// overflows nor underflows; returns `(‖x/s‖², s)` with `s = max|x_i|`.
pub(crate) fn scaled_norm2(x: &[f64]) -> (f64, f64) {
    let s = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if s == 0.0 {
        return (0.0, 0.0);
    }
    (x.iter().map(|v| (v / s) * (v / s)).sum(), s)
}

fn check_dim(n: usize) -> Result<(), SteerError> {
    if n == 0 {
        return Err(SteerError::Invalid {
            field: "n",
            reason: "the ambient dimension must be positive".into(),
        });
    }
    Ok(())
}

/// One standard Gaussian draw (Box–Muller; portable given the ChaCha stream).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // u1 in (0, 1] so that ln(u1) is finite.
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Basis {
    /// Orthonormalizes any spanning set (Gram–Schmidt twice; numerically dependent vectors, relative norm < 1e-10 after orthogonalization, are dropped). All vectors must have length n and be finite; n must be > 0.
    ///
    /// Zero vectors are dropped too; an empty (or all-zero) set gives a basis
    /// of rank 0 (the zero subspace).
    pub fn span(vectors: &[Vec<f64>], n: usize) -> Result<Basis, SteerError> {
        check_dim(n)?;
        for (j, v) in vectors.iter().enumerate() {
            check_vector(v, n, || format!("basis vector {j}"))?;
        }
        // Vectors are normalized before Gram-Schmidt; rescale huge/tiny ones
        // first so that their norm is representable.
        let scaled: Vec<Vec<f64>> = vectors
            .iter()
            .map(|v| {
                let (_, s) = scaled_norm2(v);
                if s == 0.0 {
                    v.clone()
                } else {
                    v.iter().map(|x| x / s).collect()
                }
            })
            .collect();
        let (q, k) = orthonormalize(&scaled, n, RANK_TOL)?;
        Ok(Basis { n, k, q })
    }

    /// Same from f32 vectors (eigenvectors are stored as f32 in artifacts).
    pub fn span_f32(vectors: &[Vec<f32>], n: usize) -> Result<Basis, SteerError> {
        let wide: Vec<Vec<f64>> = vectors
            .iter()
            .map(|v| v.iter().map(|&x| f64::from(x)).collect())
            .collect();
        Basis::span(&wide, n)
    }

    /// The first `k` vectors of an already-computed eigenvector list (e.g. top-k); errors with NotEnoughEigenpairs{what,...} when fewer than k are given.
    ///
    /// The vectors are orthonormalized like [`Basis::span`] (f32 storage
    /// leaves them orthonormal only to ~1e-7); the rank is `k` unless some of
    /// them are numerically dependent.
    pub fn top(vectors: &[Vec<f32>], k: usize, n: usize, what: &str) -> Result<Basis, SteerError> {
        if vectors.len() < k {
            return Err(SteerError::NotEnoughEigenpairs {
                what: what.to_string(),
                requested: k,
                available: vectors.len(),
            });
        }
        check_dim(n)?;
        for (j, v) in vectors[..k].iter().enumerate() {
            if v.len() != n {
                return Err(SteerError::Length {
                    what: format!("{what} eigenvector {j}"),
                    expected: n,
                    got: v.len(),
                });
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(SteerError::NonFinite {
                    what: format!("{what} eigenvector {j}"),
                });
            }
        }
        Basis::span_f32(&vectors[..k], n)
    }

    /// A uniformly random orthonormal k-frame (seeded ChaCha8 Gaussian vectors, orthonormalized).
    ///
    /// Requires `n > 0` and `k <= n`; `k = 0` gives the zero subspace. The
    /// result always has rank exactly `k` (in the probability-zero event of a
    /// dependent draw, further Gaussian vectors are drawn from the same stream).
    pub fn random(n: usize, k: usize, seed: u64) -> Result<Basis, SteerError> {
        check_dim(n)?;
        if k > n {
            return Err(SteerError::Invalid {
                field: "k",
                reason: format!("a random frame of {k} vectors does not fit in R^{n}"),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vectors: Vec<Vec<f64>> = Vec::with_capacity(k);
        let mut basis = Basis { n, k: 0, q: Vec::new() };
        // Bounded retries: the first pass succeeds with probability one.
        for _ in 0..16 {
            if basis.k == k {
                break;
            }
            while vectors.len() < k {
                vectors.push((0..n).map(|_| gaussian(&mut rng)).collect());
            }
            let (q, rank) = orthonormalize(&vectors, n, RANK_TOL)?;
            basis = Basis { n, k: rank, q };
            vectors = basis.vectors();
        }
        if basis.k != k {
            return Err(SteerError::Invalid {
                field: "k",
                reason: format!("could not draw {k} independent vectors in R^{n}"),
            });
        }
        Ok(basis)
    }

    /// The span of self and other together (orthonormalized).
    ///
    /// `self`'s vectors come first (they are kept up to rounding); `other`'s
    /// are orthogonalized against them. Errors when the ambient dimensions differ.
    pub fn union(&self, other: &Basis) -> Result<Basis, SteerError> {
        if other.n != self.n {
            return Err(SteerError::Length {
                what: "other basis' ambient dimension".into(),
                expected: self.n,
                got: other.n,
            });
        }
        let mut all = self.vectors();
        all.extend(other.vectors());
        let (q, k) = orthonormalize(&all, self.n, RANK_TOL)?;
        Ok(Basis { n: self.n, k, q })
    }

    /// The ambient dimension `n`.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// The number `k` of orthonormal vectors (the subspace's dimension).
    pub fn rank(&self) -> usize {
        self.k
    }

    /// Basis vector `j` (length `n`). Panics if `j >= rank()` (like slice indexing).
    pub fn vector(&self, j: usize) -> &[f64] {
        assert!(j < self.k, "basis vector {j} requested but the rank is {}", self.k);
        &self.q[j * self.n..(j + 1) * self.n]
    }

    /// All basis vectors, as owned vectors.
    pub fn vectors(&self) -> Vec<Vec<f64>> {
        self.columns().map(<[f64]>::to_vec).collect()
    }

    /// Iterator over the columns of `Q`.
    pub(crate) fn columns(&self) -> impl Iterator<Item = &[f64]> {
        // `chunks_exact(0)` panics; n > 0 is an invariant of every constructor.
        self.q.chunks_exact(self.n.max(1))
    }

    fn check_x(&self, x: &[f64], what: &str) -> Result<(), SteerError> {
        check_vector(x, self.n, || what.to_string())
    }

    /// `Qᵀx` without checks.
    fn qt(&self, x: &[f64]) -> Vec<f64> {
        self.columns().map(|q| dot(q, x)).collect()
    }

    /// `x ← x − Q c` without checks.
    fn sub_q(&self, c: &[f64], x: &mut [f64]) {
        for (q, &cj) in self.columns().zip(c) {
            for (xi, qi) in x.iter_mut().zip(q) {
                *xi -= cj * qi;
            }
        }
    }

    /// Two Gram–Schmidt passes: leaves `P⊥x` in `x` and returns `c₁ + c₂`.
    fn two_pass(&self, x: &mut [f64]) -> Vec<f64> {
        let mut c = self.qt(x);
        self.sub_q(&c, x);
        let c2 = self.qt(x);
        self.sub_q(&c2, x);
        for (a, b) in c.iter_mut().zip(&c2) {
            *a += b;
        }
        c
    }

    /// Coordinates Qᵀx (length k). Errors on wrong length.
    pub fn coords(&self, x: &[f64]) -> Result<Vec<f64>, SteerError> {
        self.check_x(x, "vector to project")?;
        Ok(self.qt(x))
    }

    /// Q c (length n) from coordinates.
    pub fn combine(&self, c: &[f64]) -> Result<Vec<f64>, SteerError> {
        check_vector(c, self.k, || "coordinates".to_string())?;
        let mut y = vec![0.0; self.n];
        for (q, &cj) in self.columns().zip(c) {
            for (yi, qi) in y.iter_mut().zip(q) {
                *yi += cj * qi;
            }
        }
        Ok(y)
    }

    /// x ← Q Qᵀ x, in place (two Gram–Schmidt passes for accuracy).
    pub fn project_onto(&self, x: &mut [f64]) -> Result<(), SteerError> {
        self.check_x(x, "vector to project")?;
        let c = self.two_pass(x);
        x.fill(0.0);
        for (q, &cj) in self.columns().zip(&c) {
            for (xi, qi) in x.iter_mut().zip(q) {
                *xi += cj * qi;
            }
        }
        Ok(())
    }

    /// x ← (I − Q Qᵀ) x, in place (two passes). Name this P⊥.
    pub fn project_out(&self, x: &mut [f64]) -> Result<(), SteerError> {
        self.check_x(x, "vector to project")?;
        self.two_pass(x);
        Ok(())
    }

    /// ‖Qᵀx‖² / ‖x‖² (share of x's squared norm inside the subspace; 0 for x = 0).
    ///
    /// Computed on `x / max|x_i|` (no overflow for huge `x`) and clamped to
    /// `[0, 1]` against rounding.
    pub fn share(&self, x: &[f64]) -> Result<f64, SteerError> {
        self.check_x(x, "vector")?;
        let (nx2, s) = scaled_norm2(x);
        if s == 0.0 || self.k == 0 {
            return Ok(0.0);
        }
        let y: Vec<f64> = x.iter().map(|v| v / s).collect();
        let c = self.qt(&y);
        Ok((dot(&c, &c) / nx2).clamp(0.0, 1.0))
    }
}
