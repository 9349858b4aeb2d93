//! How independent are two subspaces (e.g. the top Hessian eigenspaces of the
//! digit loss and of the pattern loss)?
//!
//! Let `A ∈ R^{n×ka}` and `B ∈ R^{n×kb}` be orthonormal bases ([`Basis`]) and
//! `M = AᵀB ∈ R^{ka×kb}`.
//!
//! * **Overlap** ([`overlap`]): `‖AᵀB‖²_F / min(ka, kb) = Σ_i cos²θ_i / min(ka, kb)`.
//!   It is 1 when one subspace contains the other, 0 when they are orthogonal,
//!   and `j / k` for two `k`-dimensional subspaces sharing exactly `j`
//!   directions and orthogonal otherwise.
//! * **Principal angles** ([`principal_angles`]): `0 ≤ θ_1 ≤ … ≤ θ_m ≤ π/2`,
//!   `m = min(ka, kb)`, with `cos θ_i = σ_i(AᵀB)`. Let `S` be the basis of smaller
//!   rank and `L` the other. The cosines are the singular values of
//!   `C = LᵀS` (`kl×m`) and the sines those of `W = (I − LLᵀ)S` (`n×m`; since
//!   `SᵀS = I`, `WᵀW = I − CᵀC`, so both share right singular vectors and
//!   `cos²θ_i + sin²θ_i = 1`). Both are computed by one-sided (Hestenes)
//!   Jacobi on the matrices themselves, not from the eigenvalues of `CᵀC`:
//!   a Gram matrix squares the singular values, and its eigenvalues' absolute
//!   error `ε` would leave cosines or sines near 0 with an error of `√ε ≈ 1e-8`.
//!   Each angle is taken from the better-conditioned of the two: `asin(sin θ)`
//!   when `sin²θ < ½`, `acos(cos θ)` otherwise (both clamped to `[0, 1]`), so
//!   angles near 0 and near `π/2` are accurate to about `ε` absolutely.
//! * **Random baseline** ([`expected_random_overlap`], [`random_baseline`]):
//!   for `B` uniformly random and `A` fixed, `E[BBᵀ] = (kb/n) I`, hence
//!   `E‖AᵀB‖²_F = tr(Aᵀ (kb/n) I A) = ka·kb/n` and the expected overlap is
//!   `ka·kb/n / min(ka, kb) = max(ka, kb)/n`.
//! * **Decomposition** ([`decompose`]): for a unit direction `u` (a top
//!   eigenvector of the mixed loss), the shares `‖P_A u‖²`, `‖P_B u‖²` and
//!   `‖P_{A∪B} u‖²` (`P_{A∪B}` the projector onto `span(A) + span(B)`) and a
//!   stacked-bar split of 1 into an "A" part, a "B" part and the rest.
//! * **Cross-curvature** ([`cross_curvature`]): for eigenpairs `(λ_i, u_i)` of
//!   a loss `r` (`H_r u_i = λ_i u_i`, `λ_i > 0`) and another loss `s` with
//!   Hessian `H_s`, `ρ_i = u_iᵀH_s u_i / (u_iᵀu_i · λ_i)`: how much curvature
//!   `s` has along `r`'s sharp directions, relative to `r`'s. `ρ_i = 1` when
//!   `H_s = H_r`; `ρ_i = 0` when `H_s` vanishes on `r`'s eigenspace (e.g.
//!   block-diagonal `H = H_s ⊕ H_r` with `u_i` in the `r` block).
//!
//! ```rust
//! use gensplit_steer::independence::{decompose, expected_random_overlap, overlap, principal_angles};
//! use gensplit_steer::Basis;
//!
//! let e = |i: usize| -> Vec<f64> { (0..4).map(|j| if i == j { 1.0 } else { 0.0 }).collect() };
//! let a = Basis::span(&[e(0), e(1)], 4).unwrap();
//! let b = Basis::span(&[e(1), e(2)], 4).unwrap();
//! // One shared direction out of two.
//! assert!((overlap(&a, &b).unwrap() - 0.5).abs() < 1e-15);
//! let th = principal_angles(&a, &b).unwrap();
//! assert!(th[0].abs() < 1e-15 && (th[1] - std::f64::consts::FRAC_PI_2).abs() < 1e-15);
//! assert_eq!(expected_random_overlap(100, 5, 10), 0.1);
//!
//! // u = (e0 + e2 + e3) / sqrt(3): one third in A, one third in B, the rest outside.
//! let s = 3f64.sqrt().recip();
//! let d = decompose(&[s, 0.0, s, s], &Basis::span(&[e(0)], 4).unwrap(), &Basis::span(&[e(2)], 4).unwrap()).unwrap();
//! assert!((d.bar_a - 1.0 / 3.0).abs() < 1e-15 && (d.bar_rest - 1.0 / 3.0).abs() < 1e-15);
//! ```

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::SteerError;
use crate::subspace::{check_vector, dot, scaled_norm2, Basis};

fn check_same_dim(a: &Basis, b: &Basis) -> Result<(), SteerError> {
    if a.dim() != b.dim() {
        return Err(SteerError::Length {
            what: "second basis' ambient dimension".into(),
            expected: a.dim(),
            got: b.dim(),
        });
    }
    Ok(())
}

fn check_nonempty(b: &Basis, field: &'static str) -> Result<(), SteerError> {
    if b.rank() == 0 {
        return Err(SteerError::Invalid {
            field,
            reason: "the subspace has rank 0".into(),
        });
    }
    Ok(())
}

/// `AᵀB`, row-major `ka x kb`.
fn cross_gram(a: &Basis, b: &Basis) -> Vec<f64> {
    let bv: Vec<&[f64]> = b.columns().collect();
    a.columns()
        .flat_map(|qa| bv.iter().map(move |qb| dot(qa, qb)))
        .collect()
}

/// ‖AᵀB‖²_F / min(ka, kb): 1 when one subspace contains the other, 0 when orthogonal.
///
/// Errors when the ambient dimensions differ or a rank is 0. Clamped to
/// `[0, 1]` against rounding.
pub fn overlap(a: &Basis, b: &Basis) -> Result<f64, SteerError> {
    check_same_dim(a, b)?;
    check_nonempty(a, "a")?;
    check_nonempty(b, "b")?;
    let m = cross_gram(a, b);
    let f2: f64 = m.iter().map(|x| x * x).sum();
    Ok((f2 / a.rank().min(b.rank()) as f64).clamp(0.0, 1.0))
}

/// Principal angles between span(A) and span(B), radians, ascending, min(ka,kb) of them: θ_i = acos(σ_i) with σ_i the singular values of AᵀB (clamped to `[0, 1]`).
///
/// Computed from the singular values of `AᵀB` (cosines) and of the part of
/// the smaller basis orthogonal to the larger (sines) by one-sided Jacobi
/// rather than from a Gram matrix's eigenvalues (see the module docs), so
/// angles near 0 and near `π/2` keep an absolute accuracy near machine
/// precision. Errors when the ambient dimensions differ or a rank is 0.
pub fn principal_angles(a: &Basis, b: &Basis) -> Result<Vec<f64>, SteerError> {
    check_same_dim(a, b)?;
    check_nonempty(a, "a")?;
    check_nonempty(b, "b")?;
    // S: the smaller basis (m columns), L: the larger one.
    let (s, l) = if a.rank() <= b.rank() { (a, b) } else { (b, a) };
    let m = s.rank();
    // C = LᵀS (kl x m): its singular values are the cosines.
    let mut c_cols: Vec<Vec<f64>> = s.columns().map(|col| l.coords(col)).collect::<Result<_, _>>()?;
    let mut cosines = jacobi_singular_values(&mut c_cols);
    // Descending: smallest angle first.
    cosines.sort_by(|x, y| y.total_cmp(x));
    // W = (I − LLᵀ) S: its singular values are the sines.
    let mut w: Vec<Vec<f64>> = s
        .columns()
        .map(|col| {
            let mut x = col.to_vec();
            l.project_out(&mut x).map(|()| x)
        })
        .collect::<Result<_, _>>()?;
    let mut sines = jacobi_singular_values(&mut w);
    // Ascending: smallest angle first.
    sines.sort_by(f64::total_cmp);
    Ok((0..m)
        .map(|i| {
            let c = cosines[i].clamp(0.0, 1.0);
            let s = sines[i].clamp(0.0, 1.0);
            if s * s < 0.5 {
                s.asin()
            } else {
                c.acos()
            }
        })
        .collect())
}

/// Singular values of the matrix whose columns are `cols`, by one-sided
/// (Hestenes) Jacobi: rotate pairs of columns until all are mutually
/// orthogonal; the singular values are then the column norms. Unlike the
/// eigenvalues of the Gram matrix, small singular values keep an absolute
/// accuracy of about `ε‖W‖` (a Gram matrix's eigenvalues give `√ε‖W‖`).
fn jacobi_singular_values(cols: &mut [Vec<f64>]) -> Vec<f64> {
    let m = cols.len();
    for _sweep in 0..64 {
        let mut rotated = false;
        for p in 0..m {
            for q in p + 1..m {
                let alpha = dot(&cols[p], &cols[p]);
                let beta = dot(&cols[q], &cols[q]);
                let gamma = dot(&cols[p], &cols[q]);
                if alpha == 0.0 || beta == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (left, right) = cols.split_at_mut(q);
                for (xp, xq) in left[p].iter_mut().zip(right[0].iter_mut()) {
                    let (a, b) = (*xp, *xq);
                    *xp = c * a - s * b;
                    *xq = s * a + c * b;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    cols.iter().map(|x| dot(x, x).sqrt()).collect()
}

/// Expected overlap of two independent uniformly random subspaces of dims ka, kb in R^n: ka·kb/n / min(ka,kb) = max(ka,kb)/n.
///
/// Returns NaN when `n = 0` or `min(ka, kb) = 0` (undefined), and is only
/// meaningful for `ka, kb <= n`.
pub fn expected_random_overlap(n: usize, ka: usize, kb: usize) -> f64 {
    if n == 0 || ka.min(kb) == 0 {
        return f64::NAN;
    }
    ka.max(kb) as f64 / n as f64
}

/// Empirical baseline: `trials` pairs of random frames (seeded), mean and standard deviation of the overlap and the mean of the smallest principal angle.
///
/// `overlap_std` is the sample standard deviation (divisor `trials − 1`; 0
/// for a single trial). The frames' seeds are drawn from a ChaCha8 stream
/// keyed by `seed`, so the result is deterministic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomBaseline {
    /// Number of random pairs.
    pub trials: usize,
    /// Mean overlap over the pairs.
    pub overlap_mean: f64,
    /// Sample standard deviation of the overlap.
    pub overlap_std: f64,
    /// Mean of the smallest principal angle (radians).
    pub min_angle_mean: f64,
}

/// Computes a [`RandomBaseline`]: requires `n > 0`, `1 <= ka, kb <= n` and `trials >= 1`.
pub fn random_baseline(n: usize, ka: usize, kb: usize, trials: usize, seed: u64) -> Result<RandomBaseline, SteerError> {
    if trials == 0 {
        return Err(SteerError::Invalid {
            field: "trials",
            reason: "at least one trial is needed".into(),
        });
    }
    if ka == 0 || kb == 0 {
        return Err(SteerError::Invalid {
            field: if ka == 0 { "ka" } else { "kb" },
            reason: "the subspace dimensions must be positive".into(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut overlaps = Vec::with_capacity(trials);
    let mut angle_sum = 0.0;
    for _ in 0..trials {
        let a = Basis::random(n, ka, rng.next_u64())?;
        let b = Basis::random(n, kb, rng.next_u64())?;
        overlaps.push(overlap(&a, &b)?);
        angle_sum += principal_angles(&a, &b)?[0];
    }
    let t = trials as f64;
    let mean = overlaps.iter().sum::<f64>() / t;
    let std = if trials > 1 {
        (overlaps.iter().map(|o| (o - mean) * (o - mean)).sum::<f64>() / (t - 1.0)).sqrt()
    } else {
        0.0
    };
    Ok(RandomBaseline {
        trials,
        overlap_mean: mean,
        overlap_std: std,
        min_angle_mean: angle_sum / t,
    })
}

/// Decomposition of a vector u (a top eigenvector of the mixed loss) against two subspaces A (digits) and B (patterns): in_a = ‖P_A u‖²/‖u‖², in_b = ‖P_B u‖²/‖u‖², joint = ‖P_{A∪B} u‖²/‖u‖², rest = 1 − joint. For stacked bars: bar_a = joint·in_a/(in_a+in_b), bar_b = joint·in_b/(in_a+in_b) (both 0 when in_a+in_b = 0), bar_rest = rest; the three sum to 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    /// `‖P_A u‖² / ‖u‖²`.
    pub in_a: f64,
    /// `‖P_B u‖² / ‖u‖²`.
    pub in_b: f64,
    /// `‖P_{A∪B} u‖² / ‖u‖²`.
    pub joint: f64,
    /// `1 − joint`.
    pub rest: f64,
    /// Stacked-bar part attributed to A: `joint · in_a / (in_a + in_b)`.
    pub bar_a: f64,
    /// Stacked-bar part attributed to B: `joint · in_b / (in_a + in_b)`.
    pub bar_b: f64,
    /// Stacked-bar rest: `rest`.
    pub bar_rest: f64,
}

/// Computes the [`Decomposition`] of `u` against `a` and `b`.
///
/// Errors when the lengths/dimensions differ, `u` is not finite or `u = 0`.
/// Ranks may be 0 (the share in the zero subspace is 0). For many vectors
/// against the same pair, [`decompose_all`] builds the union basis once.
pub fn decompose(u: &[f64], a: &Basis, b: &Basis) -> Result<Decomposition, SteerError> {
    check_same_dim(a, b)?;
    let ab = a.union(b)?;
    decompose_with_union(u, a, b, &ab)
}

/// [`decompose`] for each of `us`, computing the union basis of `a` and `b` once.
pub fn decompose_all(us: &[Vec<f64>], a: &Basis, b: &Basis) -> Result<Vec<Decomposition>, SteerError> {
    check_same_dim(a, b)?;
    let ab = a.union(b)?;
    us.iter().map(|u| decompose_with_union(u, a, b, &ab)).collect()
}

fn decompose_with_union(u: &[f64], a: &Basis, b: &Basis, ab: &Basis) -> Result<Decomposition, SteerError> {
    check_vector(u, a.dim(), || "u".to_string())?;
    if scaled_norm2(u).1 == 0.0 {
        return Err(SteerError::Invalid {
            field: "u",
            reason: "the zero vector has no direction to decompose".into(),
        });
    }
    let in_a = a.share(u)?;
    let in_b = b.share(u)?;
    let joint = ab.share(u)?;
    let rest = 1.0 - joint;
    let sum = in_a + in_b;
    let (bar_a, bar_b) = if sum > 0.0 {
        (joint * in_a / sum, joint * in_b / sum)
    } else {
        (0.0, 0.0)
    };
    Ok(Decomposition {
        in_a,
        in_b,
        joint,
        rest,
        bar_a,
        bar_b,
        bar_rest: rest,
    })
}

/// Cross-curvature: for eigenvectors u_i of loss r with eigenvalues λ_i (λ_i > 0 required, else Invalid error) and the products h_i = H_s u_i (computed by the caller with any operator), ρ_i = u_iᵀ h_i / λ_i. Returns the mean of ρ_i and the per-vector values. Length checks on everything.
///
/// `u_iᵀh_i` is taken as the Rayleigh quotient `u_iᵀh_i / u_iᵀu_i` ([`rayleigh`]),
/// which is the same for unit `u_i` and removes the f32 storage's norm error
/// otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrossCurvature {
    /// Mean of `per_vector`.
    pub mean: f64,
    /// `ρ_i` for each eigenvector, in the given order.
    pub per_vector: Vec<f64>,
}

/// Computes the [`CrossCurvature`] of eigenpairs `(values[i], vectors[i])` of
/// loss r under the products `products[i] = H_s vectors[i]`.
///
/// Errors: empty input, count mismatches, vector length mismatches (all
/// lengths must equal `vectors[0].len()`), non-finite entries, zero vectors,
/// `λ_i ≤ 0` or non-finite.
pub fn cross_curvature(
    vectors: &[Vec<f64>],
    values: &[f64],
    products: &[Vec<f64>],
) -> Result<CrossCurvature, SteerError> {
    if vectors.is_empty() {
        return Err(SteerError::Invalid {
            field: "vectors",
            reason: "at least one eigenvector is needed".into(),
        });
    }
    let count = vectors.len();
    for (what, got) in [("eigenvalues", values.len()), ("products", products.len())] {
        if got != count {
            return Err(SteerError::Length {
                what: format!("the list of {what}"),
                expected: count,
                got,
            });
        }
    }
    let n = vectors[0].len();
    let mut per_vector = Vec::with_capacity(count);
    for (i, ((u, &lambda), h)) in vectors.iter().zip(values).zip(products).enumerate() {
        if !lambda.is_finite() {
            return Err(SteerError::NonFinite {
                what: format!("eigenvalue {i}"),
            });
        }
        if lambda <= 0.0 {
            return Err(SteerError::Invalid {
                field: "values",
                reason: format!("eigenvalue {i} is {lambda}; the normalization needs λ > 0"),
            });
        }
        check_vector(u, n, || format!("eigenvector {i}"))?;
        check_vector(h, n, || format!("product {i}"))?;
        per_vector.push(rayleigh(u, h)? / lambda);
    }
    let mean = per_vector.iter().sum::<f64>() / count as f64;
    Ok(CrossCurvature { mean, per_vector })
}

/// The Rayleigh quotient `uᵀhu / uᵀu` of a direction `u` and its product
/// `hu = H u` (the cross-curvature statistic for arbitrary, e.g. random unit,
/// directions; see also [`scaled_rayleigh`]).
///
/// Errors when the lengths differ, a value is not finite, or `u` is empty or
/// zero. Computed on `u / max|u_i|` (no overflow).
pub fn rayleigh(u: &[f64], hu: &[f64]) -> Result<f64, SteerError> {
    check_vector(u, u.len(), || "u".to_string())?;
    check_vector(hu, u.len(), || "H u".to_string())?;
    let (_, s) = scaled_norm2(u);
    if s == 0.0 {
        return Err(SteerError::Invalid {
            field: "u",
            reason: "the Rayleigh quotient of the zero (or empty) vector is undefined".into(),
        });
    }
    // (u/s)ᵀ hu / ((u/s)ᵀ(u/s)) = s · uᵀhu / uᵀu: scaled against overflow.
    let us: Vec<f64> = u.iter().map(|x| x / s).collect();
    Ok(dot(&us, hu) / dot(&us, &us) / s)
}

/// The baseline statistic for arbitrary (e.g. random) directions: `ρ_i =
/// rayleigh(vectors[i], products[i]) / scale`, with `products[i] = H vectors[i]`
/// and one common `scale > 0` (e.g. the mean top eigenvalue of the reference
/// loss). Same checks as [`cross_curvature`].
pub fn scaled_rayleigh(vectors: &[Vec<f64>], products: &[Vec<f64>], scale: f64) -> Result<CrossCurvature, SteerError> {
    if !scale.is_finite() {
        return Err(SteerError::NonFinite { what: "scale".into() });
    }
    let values = vec![scale; vectors.len()];
    cross_curvature(vectors, &values, products).map_err(|e| match e {
        SteerError::Invalid { field: "values", .. } => SteerError::Invalid {
            field: "scale",
            reason: format!("{scale} is not positive"),
        },
        e => e,
    })
}
