//! Steering directions: unit vectors in θ-space along which one rule's loss
//! rises while the other's stays put.
//!
//! Notation: `H_a` is the Hessian of the loss to *ablate* (break), `H_k` of
//! the loss to *keep*; `U_a`, `U_k` hold their top eigenvectors (columns,
//! orthonormal), `Λ_a`, `Λ_k` the eigenvalues; `P⊥_k = I − U_k U_kᵀ`.
//! Every direction is returned with unit Euclidean norm, in the model's flat
//! parameter coordinates; a step `θ* + α d` changes the loss `L` by about
//! `α ∇L·d + ½ α² dᵀ H d` nats (`α` in units of θ).
//!
//! * [`unprojected`]: `d = u_a,1`, the top eigenvector of `H_a`.
//! * [`seed`]: `d ∝ P⊥_k u_a,1` (the authors' method, with `k = 50`).
//! * [`projected_gradient`]: `d ∝ P⊥_k ∇L_a`.
//! * [`random_in_complement`]: `d ∝ P⊥_k g`, `g` a seeded Gaussian vector.
//! * [`generalized`]: the maximiser of the generalized Rayleigh quotient
//!   `ρ(d) = dᵀ H_a d / dᵀ (H_k + μ I) d` over `d ∈ span(S)` for a spanning
//!   set `S` (for example `[U_a, U_k]`). Among all directions of the span it
//!   buys the most ablate-curvature per unit of keep-curvature, instead of
//!   merely removing the top-k keep directions as [`seed`] does (which
//!   leaves `d` free to have large keep curvature just below the cut). The
//!   caller supplies `H_a s` and `H_k s` for every `s ∈ S` (matrix-free; for
//!   `S = [U_a, U_k]` half of them are `U Λ` and need no product), and the
//!   problem is solved densely in the span:
//!   with `G = SᵀS = V D Vᵀ` and `W = V D^{-1/2}` (an orthonormal
//!   basis `B = S W` of the span), `A = Wᵀ Sᵀ H_a S W`,
//!   `K = Wᵀ Sᵀ H_k S W + μ I = Q E Qᵀ` (`E > 0` is required: a negative
//!   eigenvalue of `H_k` in the span must be outweighed by `μ`), the top
//!   eigenvector `y` of `E^{-1/2} Qᵀ A Q E^{-1/2}` gives `d = B Q E^{-1/2} y`.

use crate::subspace::Basis;
use crate::SteerError;
use gensplit_eigen::sym_eig;
use rand::SeedableRng;
use rayon::prelude::*;

fn check(what: &str, v: &[f64], n: usize) -> Result<(), SteerError> {
    if v.len() != n {
        return Err(SteerError::Length {
            what: what.to_string(),
            expected: n,
            got: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(SteerError::NonFinite { what: what.to_string() });
    }
    Ok(())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Normalizes `v` to unit length; errors when it is (numerically) zero.
pub fn unit(v: Vec<f64>, what: &str) -> Result<Vec<f64>, SteerError> {
    unit_rel(v, 0.0, what)
}

/// Normalizes `v`, the projection of a vector of norm `reference`; errors
/// when nothing of it is left (`‖v‖ ≤ 1e-10 · reference`).
fn unit_rel(mut v: Vec<f64>, reference: f64, what: &str) -> Result<Vec<f64>, SteerError> {
    let n = dot(&v, &v).sqrt();
    if !n.is_finite() {
        return Err(SteerError::NonFinite { what: what.to_string() });
    }
    if n <= 1e-300 || n <= 1e-10 * reference {
        return Err(SteerError::Invalid {
            field: "direction",
            reason: format!("{what} is zero (it lies inside the projected-out subspace)"),
        });
    }
    v.iter_mut().for_each(|x| *x /= n);
    Ok(v)
}

/// `u / ‖u‖`: the top eigenvector of the loss to break, unprojected.
pub fn unprojected(u_ablate: &[f64]) -> Result<Vec<f64>, SteerError> {
    check("ablate eigenvector", u_ablate, u_ablate.len())?;
    unit(u_ablate.to_vec(), "ablate eigenvector")
}

/// The authors' direction `P⊥_k u_a / ‖P⊥_k u_a‖`.
pub fn seed(u_ablate: &[f64], keep: &Basis) -> Result<Vec<f64>, SteerError> {
    check("ablate eigenvector", u_ablate, keep.dim())?;
    let mut d = u_ablate.to_vec();
    keep.project_out(&mut d)?;
    unit_rel(d, dot(u_ablate, u_ablate).sqrt(), "projected ablate eigenvector")
}

/// `P⊥_k ∇L_a / ‖·‖`: the ablate loss's steepest ascent outside the keep
/// eigenspace.
pub fn projected_gradient(grad_ablate: &[f64], keep: &Basis) -> Result<Vec<f64>, SteerError> {
    check("ablate gradient", grad_ablate, keep.dim())?;
    let mut d = grad_ablate.to_vec();
    keep.project_out(&mut d)?;
    unit_rel(d, dot(grad_ablate, grad_ablate).sqrt(), "projected ablate gradient")
}

/// A seeded random unit direction in `span(U_k)^⊥` (the baseline that any
/// curvature-based direction must beat).
pub fn random_in_complement(keep: &Basis, seed: u64) -> Result<Vec<f64>, SteerError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut d: Vec<f64> = (0..keep.dim()).map(|_| gaussian(&mut rng)).collect();
    keep.project_out(&mut d)?;
    unit(d, "random direction")
}

/// A standard normal draw (Box–Muller).
pub fn gaussian(rng: &mut impl rand::Rng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-300);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Result of [`generalized`].
#[derive(Clone, Debug, PartialEq)]
pub struct Generalized {
    /// The unit direction `d`.
    pub direction: Vec<f64>,
    /// `ρ = dᵀH_a d / dᵀ(H_k + μI)d` at the optimum.
    pub ratio: f64,
    /// `dᵀ H_a d` (nats per unit θ²).
    pub ablate_curvature: f64,
    /// `dᵀ H_k d`.
    pub keep_curvature: f64,
    /// Dimension of the span actually used (after dropping dependent vectors).
    pub span_rank: usize,
    /// The ridge μ actually used (see [`generalized_auto`]).
    pub mu: f64,
}

/// The top generalized eigenvector of `(H_a, H_k + μI)` restricted to
/// `span(S)`, from the products `ha[i] = H_a s_i`, `hk[i] = H_k s_i` (see the
/// module docs for the math).
pub fn generalized(span: &[Vec<f64>], ha: &[Vec<f64>], hk: &[Vec<f64>], mu: f64) -> Result<Generalized, SteerError> {
    solve(span, ha, hk, mu, false)
}

/// Like [`generalized`], but when `H_k + μI` is not positive definite on the
/// span (a keep loss away from its minimum, e.g. a model that never trained
/// on the keep rule's pure data), the ridge is raised to `μ − λ_min(H_k|span)`
/// so that the smallest eigenvalue of `H_k + μI` on the span is the
/// original μ; whenever [`generalized`] succeeds, both agree. The ridge
/// used is returned in [`Generalized::mu`].
pub fn generalized_auto(
    span: &[Vec<f64>],
    ha: &[Vec<f64>],
    hk: &[Vec<f64>],
    mu: f64,
) -> Result<Generalized, SteerError> {
    solve(span, ha, hk, mu, true)
}

fn solve(span: &[Vec<f64>], ha: &[Vec<f64>], hk: &[Vec<f64>], mu: f64, auto: bool) -> Result<Generalized, SteerError> {
    let m = span.len();
    if m == 0 {
        return Err(SteerError::Invalid {
            field: "span",
            reason: "the spanning set is empty".into(),
        });
    }
    if !(mu.is_finite() && mu >= 0.0) {
        return Err(SteerError::Invalid {
            field: "mu",
            reason: format!("must be finite and ≥ 0, got {mu}"),
        });
    }
    if ha.len() != m || hk.len() != m {
        return Err(SteerError::Invalid {
            field: "products",
            reason: format!(
                "{m} spanning vectors but {} H_a and {} H_k products",
                ha.len(),
                hk.len()
            ),
        });
    }
    let n = span[0].len();
    for i in 0..m {
        check(&format!("spanning vector {i}"), &span[i], n)?;
        check(&format!("H_a product {i}"), &ha[i], n)?;
        check(&format!("H_k product {i}"), &hk[i], n)?;
    }
    let sym = |f: &dyn Fn(usize, usize) -> f64| {
        let mut a = vec![0.0; m * m];
        for i in 0..m {
            for j in i..m {
                let v = f(i, j);
                a[i * m + j] = v;
                a[j * m + i] = v;
            }
        }
        a
    };
    let g = sym(&|i, j| dot(&span[i], &span[j]));
    let a = sym(&|i, j| 0.5 * (dot(&span[i], &ha[j]) + dot(&span[j], &ha[i])));
    let k = sym(&|i, j| 0.5 * (dot(&span[i], &hk[j]) + dot(&span[j], &hk[i])));
    // Orthonormal coordinates of the span: W = V D^{-1/2} over D > 1e-10 max D.
    let (dv, vv) = sym_eig(&g, m)?;
    let dmax = dv.iter().cloned().fold(0.0f64, f64::max);
    let keep_idx: Vec<usize> = (0..m).filter(|&j| dv[j] > 1e-10 * dmax).collect();
    let r = keep_idx.len();
    if r == 0 {
        return Err(SteerError::Invalid {
            field: "span",
            reason: "the spanning vectors are all zero".into(),
        });
    }
    // w: m x r, column-major.
    let mut w = vec![0.0; m * r];
    for (c, &j) in keep_idx.iter().enumerate() {
        let s = 1.0 / dv[j].sqrt();
        for i in 0..m {
            w[c * m + i] = vv[j * m + i] * s;
        }
    }
    let congruence = |x: &[f64]| {
        // Wᵀ X W (r x r), X m x m symmetric.
        let mut xw = vec![0.0; m * r];
        for c in 0..r {
            for i in 0..m {
                xw[c * m + i] = (0..m).map(|l| x[i * m + l] * w[c * m + l]).sum();
            }
        }
        let mut out = vec![0.0; r * r];
        for c1 in 0..r {
            for c2 in c1..r {
                let v: f64 = (0..m).map(|i| w[c1 * m + i] * xw[c2 * m + i]).sum();
                out[c1 * r + c2] = v;
                out[c2 * r + c1] = v;
            }
        }
        out
    };
    let ab = congruence(&a);
    let mut kb = congruence(&k);
    let mut mu = mu;
    if auto {
        let (e0, _) = sym_eig(&kb, r)?;
        if e0[0] + mu <= 0.0 {
            mu -= e0[0];
        }
    }
    for i in 0..r {
        kb[i * r + i] += mu;
    }
    let (e, q) = sym_eig(&kb, r)?;
    if e[0] <= 0.0 {
        return Err(SteerError::Invalid {
            field: "mu",
            reason: format!(
                "H_keep + μI is not positive definite on the span (smallest eigenvalue {:.3e} at μ = {mu}); raise μ",
                e[0]
            ),
        });
    }
    // M = E^{-1/2} Qᵀ A Q E^{-1/2}; z = Q E^{-1/2} (r x r, column-major).
    let mut z = vec![0.0; r * r];
    for c in 0..r {
        let s = 1.0 / e[c].sqrt();
        for i in 0..r {
            z[c * r + i] = q[c * r + i] * s;
        }
    }
    let mut mm = vec![0.0; r * r];
    for c1 in 0..r {
        for c2 in c1..r {
            let v: f64 = (0..r)
                .map(|i| z[c1 * r + i] * (0..r).map(|l| ab[i * r + l] * z[c2 * r + l]).sum::<f64>())
                .sum();
            mm[c1 * r + c2] = v;
            mm[c2 * r + c1] = v;
        }
    }
    let (rho, y) = sym_eig(&mm, r)?;
    let top = &y[(r - 1) * r..r * r];
    // coefficients in B coordinates, then in S coordinates.
    let cb: Vec<f64> = (0..r).map(|i| (0..r).map(|c| z[c * r + i] * top[c]).sum()).collect();
    let cs: Vec<f64> = (0..m).map(|i| (0..r).map(|c| w[c * m + i] * cb[c]).sum()).collect();
    let mut d = vec![0.0; n];
    let (mut hd_a, mut hd_k) = (vec![0.0; n], vec![0.0; n]);
    for i in 0..m {
        for t in 0..n {
            d[t] += cs[i] * span[i][t];
            hd_a[t] += cs[i] * ha[i][t];
            hd_k[t] += cs[i] * hk[i][t];
        }
    }
    let nd2 = dot(&d, &d);
    let ablate_curvature = dot(&d, &hd_a) / nd2;
    let keep_curvature = dot(&d, &hd_k) / nd2;
    Ok(Generalized {
        direction: unit(d, "generalized eigenvector")?,
        ratio: rho[r - 1],
        ablate_curvature,
        keep_curvature,
        span_rank: r,
        mu,
    })
}

/// Products `H x` for a list of vectors through any
/// [`gensplit_eigen::LinearOperator`] (e.g. a `gensplit_hvp::HessianOperator`),
/// computed in parallel (rayon) and returned in input order.
pub fn products<A: gensplit_eigen::LinearOperator + Sync + ?Sized>(
    op: &A,
    xs: &[Vec<f64>],
) -> Result<Vec<Vec<f64>>, SteerError> {
    // the products are independent: computed in parallel, in input order
    xs.par_iter()
        .enumerate()
        .map(|(i, x)| {
            check(&format!("vector {i}"), x, op.dim())?;
            let mut y = vec![0.0; op.dim()];
            op.apply(x, &mut y);
            if y.iter().any(|v| !v.is_finite()) {
                return Err(SteerError::NonFinite {
                    what: format!("curvature product {i}"),
                });
            }
            Ok(y)
        })
        .collect()
}
