//! Thick-restart Lanczos with full reorthogonalization.
//!
//! # Algorithm
//!
//! For a symmetric `A` and orthonormal Lanczos vectors `V_m = [v_1 … v_m]`
//! the Krylov relation
//!
//! ```text
//! A V_m = V_m T_m + β_m v_{m+1} e_m^T
//! ```
//!
//! holds, where `T_m = V_m^T A V_m` is tridiagonal (plain Lanczos) or
//! "arrowhead + tridiagonal" after a thick restart. Each new vector is
//! orthogonalized against all previous ones by classical Gram–Schmidt applied
//! twice ("twice is enough"), so no spurious copies of eigenvalues appear.
//!
//! After **every** step the small eigenproblem `T_m = Y Θ Y^T` is solved
//! (dense, cheap compared to a matvec). A Ritz pair `(θ_i, V_m y_i)` has
//! residual `‖A x_i − θ_i x_i‖ = |β_m e_m^T y_i|`; the `k` wanted pairs are
//! accepted when every such residual is `≤ tol · max_j |θ_j|` (the largest
//! `|θ|` of all Ritz values computed so far, so the threshold never shrinks).
//!
//! When the basis is full (`max_basis` vectors), it is **thick-restarted**
//! (Wu & Simon 2000): the `p > k` best Ritz vectors `V_m Y_p` are kept,
//! `T` becomes `diag(θ_1 … θ_p)` bordered by the couplings `β_m e_m^T y_i`,
//! and the old residual direction `v_{m+1}` continues the recurrence.
//!
//! If `β_m ≈ 0` (an invariant subspace was found) all Ritz pairs are exact.
//! They are *locked* (deflated) and Lanczos continues from a fresh random
//! vector orthogonal to everything found so far; a single Krylov sequence can
//! only see one direction of a repeated eigenvalue, and the fresh sequences
//! recover the rest of the eigenspace. If `R^n` is exhausted the solver stops
//! with [`StopReason::InvariantSubspace`] (all returned pairs are exact).
//!
//! A fresh sequence is deflated against the locked vectors `X_L`, so it never
//! sees their couplings `x_l^T A x = r_l^T x` with its own Ritz vectors `x`
//! (`r_l` the locked residuals). When a locked vector of a nearly repeated
//! eigenvalue is still a mixture of the cluster, these couplings are of the
//! size of `‖r_l‖` and would stay in the true residuals of the new pairs. The
//! converged pairs of a fresh sequence are therefore locked together with a
//! Rayleigh–Ritz step on the span of the new and the earlier locked vectors
//! whose residual is not negligible (`> 10^-3` of the threshold), using the
//! stored `A X_L` (no matvecs); the step is kept unless it raises the largest
//! residual of that set. Locked pairs count as converged.
//!
//! The solver keeps `W = A V` (the matvec results), so the final residuals
//! `‖A x − θ x‖ = ‖W y − θ V y‖` are *true* residuals that cost no extra
//! matvecs.

use crate::dense::{sym_eig, DenseError};
use crate::operator::LinearOperator;
use crate::util::{cgs_pass, combine, dot, lanczos_step, norm, scale};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;

/// Which end of the spectrum is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Which {
    /// The `k` algebraically largest eigenvalues.
    #[default]
    LargestAlgebraic,
    /// The `k` algebraically smallest eigenvalues.
    SmallestAlgebraic,
    /// The `k` eigenvalues of largest absolute value.
    LargestMagnitude,
}

impl Which {
    /// Orders `a` before `b` when `a` is more wanted (ties broken towards the
    /// algebraically larger value).
    pub fn compare(self, a: f64, b: f64) -> Ordering {
        match self {
            Which::LargestAlgebraic => b.total_cmp(&a),
            Which::SmallestAlgebraic => a.total_cmp(&b),
            Which::LargestMagnitude => b.abs().total_cmp(&a.abs()).then(b.total_cmp(&a)),
        }
    }
}

/// Parameters of [`lanczos()`].
#[derive(Debug, Clone, PartialEq)]
pub struct LanczosParams {
    /// Number of wanted eigenpairs (`1 ≤ k ≤ n`).
    pub k: usize,
    /// Which end of the spectrum.
    pub which: Which,
    /// Relative residual tolerance: a pair is converged when
    /// `‖A v − λ v‖ ≤ tol · max|θ|` (max over all Ritz values computed so
    /// far, a lower bound of `‖A‖`). `> 0`.
    pub tol: f64,
    /// Budget of operator applications (every `apply` call counts).
    pub max_matvecs: usize,
    /// Maximum number of Lanczos vectors before a thick restart.
    /// `None`: `max(2k + 1, k + 20)`, capped by `n`. Must exceed `k` unless it
    /// equals `n`.
    pub max_basis: Option<usize>,
    /// Seed of the ChaCha8 generator for the start vector (and the fresh
    /// vectors after a breakdown). Same seed ⇒ bit-identical results.
    pub seed: u64,
    /// Optional start vector (length `n`, nonzero, finite). `None`: random.
    pub start: Option<Vec<f64>>,
    /// Verify multiplicities (default `false`). A single Krylov sequence sees
    /// only one direction of each eigenspace, so an exactly repeated
    /// eigenvalue is normally found once (unless the Krylov space becomes
    /// invariant, which is always handled). With this flag, after convergence
    /// the converged pairs are deflated and a fresh random sequence is run
    /// until its own extreme Ritz value converges; this repeats while it finds
    /// new wanted pairs. Costs extra matvecs (roughly one more convergence of
    /// the next eigenvalue), but the returned vectors of a repeated eigenvalue
    /// then span its eigenspace (as far as `k` allows).
    pub multiplicity_check: bool,
}

impl Default for LanczosParams {
    fn default() -> Self {
        Self {
            k: 6,
            which: Which::LargestAlgebraic,
            tol: 1e-6,
            max_matvecs: 10_000,
            max_basis: None,
            seed: 0,
            start: None,
            multiplicity_check: false,
        }
    }
}

impl LanczosParams {
    /// Default parameters for `k` eigenpairs at the given end.
    pub fn new(k: usize, which: Which) -> Self {
        Self {
            k,
            which,
            ..Self::default()
        }
    }

    /// Default basis size for `k` wanted pairs: `max(2k + 1, k + 20)`.
    pub fn default_basis(k: usize) -> usize {
        (2 * k + 1).max(k + 20)
    }
}

/// Why the solver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// All `k` wanted pairs met the tolerance.
    Converged,
    /// The matvec budget ran out; see [`EigenResult::residuals`] for which
    /// pairs are accurate.
    MaxMatvecs,
    /// The Krylov spaces exhausted `R^n`: all returned pairs are exact (up to
    /// rounding).
    InvariantSubspace,
}

/// Result of [`lanczos()`].
#[derive(Debug, Clone, PartialEq)]
pub struct EigenResult {
    /// Eigenvalues, most wanted first (descending for
    /// [`Which::LargestAlgebraic`], ascending for [`Which::SmallestAlgebraic`],
    /// by descending magnitude for [`Which::LargestMagnitude`]). Normally `k`
    /// of them; fewer only if the budget ran out before `k` Ritz values existed.
    pub values: Vec<f64>,
    /// Eigenvectors (each of length `n`, orthonormal), matching `values`.
    pub vectors: Vec<Vec<f64>>,
    /// True residual norms `‖A v − λ v‖` (computed from stored matvecs, no
    /// extra operator applications).
    pub residuals: Vec<f64>,
    /// Number of operator applications.
    pub matvecs: usize,
    /// Number of restarts (thick restarts plus restarts after a breakdown).
    pub restarts: usize,
    /// Why the solver stopped.
    pub stop: StopReason,
    /// Whether every returned pair met the tolerance: `false` exactly when
    /// the solver stopped on its matvec budget ([`StopReason::MaxMatvecs`]);
    /// the pairs are then the best found so far and their
    /// [`EigenResult::residuals`] say how accurate each is.
    pub converged: bool,
}

/// Progress information passed to an [`Observer`] after every Lanczos step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo<'a> {
    /// Operator applications so far.
    pub matvecs: usize,
    /// Restarts so far.
    pub restarts: usize,
    /// How many of the wanted Ritz pairs meet the tolerance.
    pub converged: usize,
    /// Number of wanted pairs `k`.
    pub wanted: usize,
    /// Current wanted Ritz values, most wanted first.
    pub ritz_values: &'a [f64],
    /// Residual estimates of `ritz_values`.
    pub residuals: &'a [f64],
    /// Largest residual estimate among the wanted pairs.
    pub max_residual: f64,
    /// Absolute convergence threshold `tol · max|θ|`.
    pub threshold: f64,
}

/// Receives progress reports (e.g. to draw a progress bar).
pub trait Observer {
    /// Called after every Lanczos step.
    fn on_step(&mut self, info: &StepInfo<'_>) {
        let _ = info;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}

impl<F: FnMut(&StepInfo<'_>)> Observer for F {
    fn on_step(&mut self, info: &StepInfo<'_>) {
        self(info)
    }
}

/// Errors of [`lanczos()`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LanczosError {
    /// The operator has dimension 0.
    #[error("operator has dimension 0")]
    EmptyOperator,
    /// `k == 0` or `k > n`.
    #[error("k = {k} must satisfy 1 <= k <= n = {n}")]
    InvalidK {
        /// Requested number of pairs.
        k: usize,
        /// Operator dimension.
        n: usize,
    },
    /// `tol` is not a positive finite number.
    #[error("tolerance must be positive and finite, got {0}")]
    InvalidTolerance(f64),
    /// `max_matvecs == 0`.
    #[error("max_matvecs must be positive")]
    InvalidMaxMatvecs,
    /// `max_basis` too small.
    #[error("max_basis = {max_basis} must exceed k = {k} (or equal n = {n})")]
    InvalidBasis {
        /// The given basis size.
        max_basis: usize,
        /// Requested number of pairs.
        k: usize,
        /// Operator dimension.
        n: usize,
    },
    /// The start vector has the wrong length, is zero or non-finite.
    #[error("start vector must have length {n}, be finite and nonzero")]
    InvalidStart {
        /// Operator dimension.
        n: usize,
    },
    /// The operator returned NaN or an infinity.
    #[error("operator returned a non-finite value at matvec {matvec}")]
    NonFinite {
        /// 1-based index of the offending operator application.
        matvec: usize,
    },
    /// The small dense eigenproblem failed.
    #[error(transparent)]
    Dense(#[from] DenseError),
}

/// Computes `k` extreme eigenpairs of the symmetric operator `op`.
///
/// See the [module documentation](self) for the algorithm. Every call of
/// `op.apply` is counted in [`EigenResult::matvecs`]; the solver checks
/// convergence after every step and stops as early as possible.
///
/// ```
/// use gensplit_eigen::{lanczos, DenseSymmetric, LanczosParams, NoObserver, Which};
/// let a = DenseSymmetric::from_diagonal(&[1.0, 5.0, 3.0, -7.0]).unwrap();
/// let p = LanczosParams { k: 2, which: Which::LargestMagnitude, tol: 1e-10, ..Default::default() };
/// let r = lanczos(&a, &p, &mut NoObserver).unwrap();
/// assert!((r.values[0] + 7.0).abs() < 1e-9 && (r.values[1] - 5.0).abs() < 1e-9);
/// ```
pub fn lanczos<A: LinearOperator + ?Sized>(
    op: &A,
    params: &LanczosParams,
    observer: &mut dyn Observer,
) -> Result<EigenResult, LanczosError> {
    // One compiled solver for every operator type: the matvec is called
    // through a vtable (nothing next to the matvec's own cost), and crates
    // that call `lanczos` with their operators link to this crate's code
    // instead of compiling the solver again for each type.
    lanczos_dyn(&op, params, observer)
}

fn lanczos_dyn(
    op: &dyn LinearOperator,
    params: &LanczosParams,
    observer: &mut dyn Observer,
) -> Result<EigenResult, LanczosError> {
    let n = op.dim();
    if n == 0 {
        return Err(LanczosError::EmptyOperator);
    }
    let k = params.k;
    if k == 0 || k > n {
        return Err(LanczosError::InvalidK { k, n });
    }
    if !(params.tol > 0.0 && params.tol.is_finite()) {
        return Err(LanczosError::InvalidTolerance(params.tol));
    }
    if params.max_matvecs == 0 {
        return Err(LanczosError::InvalidMaxMatvecs);
    }
    let requested = params.max_basis.unwrap_or_else(|| LanczosParams::default_basis(k));
    let m_max = requested.min(n);
    if m_max < n && m_max <= k {
        return Err(LanczosError::InvalidBasis {
            max_basis: requested,
            k,
            n,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let start = match &params.start {
        Some(s) => {
            let ns = norm(s);
            if s.len() != n || !ns.is_finite() || ns == 0.0 {
                return Err(LanczosError::InvalidStart { n });
            }
            s.iter().map(|x| x / ns).collect()
        }
        None => {
            let mut s = random_vector(&mut rng, n);
            let ns = norm(&s);
            scale(1.0 / ns, &mut s);
            s
        }
    };
    let mut start = start;
    op.constrain(&mut start);
    let ns = norm(&start);
    if ns.is_nan() || ns <= 1e-8 {
        // The start vector lies (numerically) outside the operator's domain.
        return Err(LanczosError::InvalidStart { n });
    }
    scale(1.0 / ns, &mut start);
    let mut solver = Solver::new(op, n, k, m_max, params, start);
    solver.run(&mut rng, observer)
}

/// Uniform entries in `[-1, 1)`.
fn random_vector(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen::<f64>() * 2.0 - 1.0).collect()
}

/// Where a candidate Ritz pair lives.
#[derive(Debug, Clone, Copy)]
enum Src {
    Current(usize),
    Locked(usize),
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    value: f64,
    resid: f64,
    src: Src,
}

struct Solver<'a> {
    op: &'a dyn LinearOperator,
    n: usize,
    k: usize,
    m_max: usize,
    which: Which,
    tol: f64,
    max_matvecs: usize,
    /// Lanczos vectors, column-major, `m_max + 1` columns.
    v: Vec<f64>,
    /// `A v_j`, column-major, `m_max` columns.
    w: Vec<f64>,
    /// Projected matrix, column-major `(m_max + 1)^2`, leading dimension `ld`.
    t: Vec<f64>,
    ld: usize,
    /// Number of basis vectors whose images are known.
    m: usize,
    locked_vals: Vec<f64>,
    locked_vecs: Vec<f64>,
    /// `A x` of the locked vectors, column-major (for the refinement).
    locked_ax: Vec<f64>,
    locked_res: Vec<f64>,
    /// Current sequence was started after a breakdown or for verification.
    post_breakdown: bool,
    multiplicity_check: bool,
    anorm: f64,
    /// Largest `|θ|` of all Ritz values so far (the convergence scale).
    theta_max: f64,
    matvecs: usize,
    restarts: usize,
}

/// Relative size of `β` below which the Krylov space counts as invariant.
const BREAKDOWN_EPS: f64 = 1e3 * f64::EPSILON;

impl<'a> Solver<'a> {
    fn new(
        op: &'a dyn LinearOperator,
        n: usize,
        k: usize,
        m_max: usize,
        params: &LanczosParams,
        start: Vec<f64>,
    ) -> Self {
        let ld = m_max + 1;
        let mut v = vec![0.0; n * (m_max + 1)];
        v[..n].copy_from_slice(&start);
        Self {
            op,
            n,
            k,
            m_max,
            which: params.which,
            tol: params.tol,
            max_matvecs: params.max_matvecs,
            v,
            w: vec![0.0; n * m_max],
            t: vec![0.0; ld * ld],
            ld,
            m: 0,
            locked_vals: Vec::new(),
            locked_vecs: Vec::new(),
            locked_ax: Vec::new(),
            locked_res: Vec::new(),
            post_breakdown: false,
            multiplicity_check: params.multiplicity_check,
            anorm: 0.0,
            theta_max: 0.0,
            matvecs: 0,
            restarts: 0,
        }
    }

    fn nlocked(&self) -> usize {
        self.locked_vals.len()
    }

    /// Eigen-decomposition of the leading `m x m` block of `T`.
    fn ritz(&self) -> Result<(Vec<f64>, Vec<f64>), LanczosError> {
        let m = self.m;
        let mut tm = vec![0.0; m * m];
        for j in 0..m {
            tm[j * m..(j + 1) * m].copy_from_slice(&self.t[j * self.ld..j * self.ld + m]);
        }
        Ok(sym_eig(&tm, m)?)
    }

    fn set_t(&mut self, i: usize, j: usize, x: f64) {
        self.t[j * self.ld + i] = x;
        self.t[i * self.ld + j] = x;
    }

    fn run(&mut self, rng: &mut ChaCha8Rng, observer: &mut dyn Observer) -> Result<EigenResult, LanczosError> {
        let n = self.n;
        let mut r = vec![0.0; n];
        loop {
            // ---- one Lanczos step on column j = m ----
            let j = self.m;
            let nlocked = self.nlocked();
            let h = lanczos_step(
                self.op,
                &self.v,
                n,
                j,
                &self.locked_vecs,
                nlocked,
                &mut self.w[j * n..(j + 1) * n],
                &mut r,
                &mut self.matvecs,
            )
            .map_err(|matvec| LanczosError::NonFinite { matvec })?;
            self.set_t(j, j, h[j]);
            self.m = j + 1;
            let m = self.m;
            let beta = norm(&r);
            self.anorm = self.anorm.max(h[j].abs()).max(beta);

            let (theta, y) = self.ritz()?;
            let scale_now = theta
                .iter()
                .chain(&self.locked_vals)
                .fold(0.0f64, |a, x| a.max(x.abs()));
            self.anorm = self.anorm.max(scale_now);
            // Monotone: a pair accepted (and perhaps locked) once stays
            // accepted, even when a later sequence or a thick restart sees a
            // smaller part of the spectrum.
            self.theta_max = self.theta_max.max(scale_now);
            let thresh = self.tol * self.theta_max;
            let break_tol = BREAKDOWN_EPS.min(0.1 * self.tol) * self.anorm;

            if beta <= break_tol || m + self.nlocked() >= n {
                // Invariant subspace: lock every (exact) Ritz pair.
                let news = self.contributes(&theta, thresh);
                let all: Vec<usize> = (0..m).collect();
                self.lock(&theta, &y, &all, None)?;
                if self.post_breakdown && !news {
                    // A fresh random sequence found nothing better than what
                    // is already locked: the wanted pairs are complete.
                    return Ok(self.finish(&[], &[], StopReason::Converged));
                }
                if self.nlocked() >= n {
                    return Ok(self.finish(&[], &[], StopReason::InvariantSubspace));
                }
                if self.matvecs >= self.max_matvecs {
                    return Ok(self.finish(&[], &[], StopReason::MaxMatvecs));
                }
                if self.start_fresh(rng) {
                    continue;
                }
                return Ok(self.finish(&[], &[], StopReason::InvariantSubspace));
            }

            let resid: Vec<f64> = (0..m).map(|i| (beta * y[i * m + m - 1]).abs()).collect();
            let cands = self.candidates(&theta, &resid);
            let nw = cands.len().min(self.k);
            let wanted = &cands[..nw];
            // Locked pairs were accepted when they were locked (and cannot
            // improve any more): they count as converged.
            let converged = wanted
                .iter()
                .filter(|c| matches!(c.src, Src::Locked(_)) || c.resid <= thresh)
                .count();
            let sentinel_ok = !self.post_breakdown || self.sentinel_converged(&theta, &resid, thresh);
            {
                let vals: Vec<f64> = wanted.iter().map(|c| c.value).collect();
                let res: Vec<f64> = wanted.iter().map(|c| c.resid).collect();
                let info = StepInfo {
                    matvecs: self.matvecs,
                    restarts: self.restarts,
                    converged,
                    wanted: self.k,
                    ritz_values: &vals,
                    residuals: &res,
                    max_residual: res.iter().fold(0.0f64, |a, &x| a.max(x)),
                    threshold: thresh,
                };
                observer.on_step(&info);
            }
            if nw == self.k && converged == self.k && sentinel_ok {
                let done = if self.post_breakdown {
                    // A fresh sequence that adds nothing new to the wanted
                    // set confirms the locked pairs.
                    !self.contributes(&theta, thresh)
                } else {
                    !self.multiplicity_check
                };
                if done && self.nlocked() == 0 {
                    return Ok(self.finish(&theta, &y, StopReason::Converged));
                }
                // Lock the converged wanted pairs of this sequence (refined
                // together with the earlier locked ones, see `lock`).
                let fresh: Vec<usize> = wanted
                    .iter()
                    .filter_map(|c| match c.src {
                        Src::Current(i) => Some(i),
                        Src::Locked(_) => None,
                    })
                    .collect();
                self.lock(&theta, &y, &fresh, Some(thresh))?;
                if done {
                    return Ok(self.finish(&[], &[], StopReason::Converged));
                }
                // Verification round: with the converged wanted pairs
                // deflated, look for hidden copies with a fresh Krylov sequence.
                if self.matvecs >= self.max_matvecs {
                    return Ok(self.finish(&[], &[], StopReason::MaxMatvecs));
                }
                if !self.start_fresh(rng) {
                    return Ok(self.finish(&[], &[], StopReason::Converged));
                }
                continue;
            }
            if self.matvecs >= self.max_matvecs {
                return Ok(self.finish(&theta, &y, StopReason::MaxMatvecs));
            }

            // ---- next Lanczos vector ----
            scale(1.0 / beta, &mut r);
            if m == self.m_max {
                self.thick_restart(&theta, &y, beta);
            } else {
                self.set_t(m - 1, m, beta);
            }
            let mm = self.m;
            self.v[mm * n..(mm + 1) * n].copy_from_slice(&r);
        }
    }

    /// All current and locked pairs, most wanted first.
    fn candidates(&self, theta: &[f64], resid: &[f64]) -> Vec<Candidate> {
        let mut c: Vec<Candidate> = theta
            .iter()
            .zip(resid)
            .enumerate()
            .map(|(i, (&value, &resid))| Candidate {
                value,
                resid,
                src: Src::Current(i),
            })
            .chain(
                self.locked_vals
                    .iter()
                    .zip(&self.locked_res)
                    .enumerate()
                    .map(|(i, (&value, &resid))| Candidate {
                        value,
                        resid,
                        src: Src::Locked(i),
                    }),
            )
            .collect();
        let which = self.which;
        c.sort_by(|a, b| which.compare(a.value, b.value));
        c
    }

    /// Whether one of the current Ritz values `theta` is more wanted than the
    /// `k`-th best locked value by more than `thresh` (always true while fewer
    /// than `k` pairs are locked).
    fn contributes(&self, theta: &[f64], thresh: f64) -> bool {
        if theta.is_empty() {
            return false;
        }
        if self.nlocked() < self.k {
            return true;
        }
        let mut l = self.locked_vals.clone();
        let which = self.which;
        l.sort_by(|a, b| which.compare(*a, *b));
        let kth = l[self.k - 1];
        theta.iter().any(|&t| match which {
            Which::LargestAlgebraic => t > kth + thresh,
            Which::SmallestAlgebraic => t < kth - thresh,
            Which::LargestMagnitude => t.abs() > kth.abs() + thresh,
        })
    }

    /// After a breakdown the fresh sequence must have converged its own most
    /// extreme Ritz value(s) before we trust that nothing is hidden there.
    ///
    /// For [`Which::LargestMagnitude`] that is the end of larger magnitude,
    /// and the other end too while it may still compete (`|θ| + residual`
    /// reaches the larger magnitude). Requiring both ends unconditionally
    /// never finished on one-sided spectra: thick restarts keep the wanted
    /// end only, so the other end (often a dense bulk near 0) never converged.
    fn sentinel_converged(&self, theta: &[f64], resid: &[f64], thresh: f64) -> bool {
        let m = theta.len();
        // theta is ascending.
        match self.which {
            Which::LargestAlgebraic => resid[m - 1] <= thresh,
            Which::SmallestAlgebraic => resid[0] <= thresh,
            Which::LargestMagnitude => {
                let (dom, other) = if theta[m - 1].abs() >= theta[0].abs() {
                    (m - 1, 0)
                } else {
                    (0, m - 1)
                };
                resid[dom] <= thresh && (resid[other] <= thresh || theta[other].abs() + resid[other] < theta[dom].abs())
            }
        }
    }

    /// Moves the current Ritz pairs `idx` into the locked (deflated) set and
    /// empties the current basis.
    ///
    /// With `refine = Some(thresh)` (converged pairs of a sequence that ran
    /// after earlier locks), the new pairs and the earlier locked pairs whose
    /// residual exceeds `thresh / 1000` are refined together by a
    /// Rayleigh–Ritz step on their span. A sequence deflated against locked
    /// vectors never sees their couplings `x_l^T A x = r_l^T x`; for a nearly
    /// repeated eigenvalue whose first locked vector is a mixture of the
    /// cluster these couplings are of the size of the locked residuals, and
    /// without the refinement they would stay in the true residuals for good.
    fn lock(&mut self, theta: &[f64], y: &[f64], idx: &[usize], refine: Option<f64>) -> Result<(), LanczosError> {
        let (n, m) = (self.n, self.m);
        let before = self.nlocked();
        let mut ysel = vec![0.0; m * idx.len()];
        for (c, &i) in idx.iter().enumerate() {
            ysel[c * m..(c + 1) * m].copy_from_slice(&y[i * m..(i + 1) * m]);
        }
        let p = idx.len();
        let x = combine(&self.v, n, m, &ysel, m, p);
        let ax = combine(&self.w, n, m, &ysel, m, p);
        for (c, &i) in idx.iter().enumerate() {
            let xi = &x[c * n..(c + 1) * n];
            let axi = &ax[c * n..(c + 1) * n];
            let res = true_residual(axi, xi, theta[i]);
            self.locked_vals.push(theta[i]);
            self.locked_res.push(res);
            self.locked_vecs.extend_from_slice(xi);
            self.locked_ax.extend_from_slice(axi);
        }
        self.m = 0;
        if let Some(thresh) = refine {
            let mut sel: Vec<usize> = (0..before).filter(|&l| self.locked_res[l] > 1e-3 * thresh).collect();
            if !sel.is_empty() && p > 0 {
                sel.extend(before..self.nlocked());
                self.rayleigh_ritz_locked(&sel)?;
            }
        }
        Ok(())
    }

    /// Rayleigh–Ritz of `A` on the span of the locked vectors `sel`
    /// (orthonormal, with stored images): `G = X^T A X = Z M Z^T`, then
    /// `X ← X Z`, `A X ← (A X) Z` and true residuals; no matvecs. Kept only
    /// if it does not raise the largest residual of the set (inside an
    /// exactly repeated eigenvalue `Z` is an arbitrary rotation that may
    /// merely reshuffle the residuals).
    fn rayleigh_ritz_locked(&mut self, sel: &[usize]) -> Result<(), LanczosError> {
        let (n, p) = (self.n, sel.len());
        let gather = |src: &[f64]| -> Vec<f64> {
            sel.iter()
                .flat_map(|&l| src[l * n..(l + 1) * n].iter().copied())
                .collect()
        };
        let xs = gather(&self.locked_vecs);
        let axs = gather(&self.locked_ax);
        let mut g = vec![0.0; p * p];
        for j in 0..p {
            for i in 0..=j {
                let gij = 0.5
                    * (dot(&xs[i * n..(i + 1) * n], &axs[j * n..(j + 1) * n])
                        + dot(&xs[j * n..(j + 1) * n], &axs[i * n..(i + 1) * n]));
                g[j * p + i] = gij;
                g[i * p + j] = gij;
            }
        }
        let (mu, z) = sym_eig(&g, p)?;
        let nx = combine(&xs, n, p, &z, p, p);
        let nax = combine(&axs, n, p, &z, p, p);
        let res: Vec<f64> = (0..p)
            .map(|c| true_residual(&nax[c * n..(c + 1) * n], &nx[c * n..(c + 1) * n], mu[c]))
            .collect();
        let worst = |r: &mut dyn Iterator<Item = f64>| r.fold(0.0f64, f64::max);
        if worst(&mut res.iter().copied()) > worst(&mut sel.iter().map(|&l| self.locked_res[l])) {
            return Ok(());
        }
        for (c, &l) in sel.iter().enumerate() {
            self.locked_vals[l] = mu[c];
            self.locked_res[l] = res[c];
            self.locked_vecs[l * n..(l + 1) * n].copy_from_slice(&nx[c * n..(c + 1) * n]);
            self.locked_ax[l * n..(l + 1) * n].copy_from_slice(&nax[c * n..(c + 1) * n]);
        }
        Ok(())
    }

    /// Starts a new Krylov sequence from a random vector orthogonal to the
    /// locked vectors. Returns `false` if they span `R^n`.
    fn start_fresh(&mut self, rng: &mut ChaCha8Rng) -> bool {
        let n = self.n;
        match self.fresh_vector(rng) {
            Some(z) => {
                self.v[..n].copy_from_slice(&z);
                self.m = 0;
                self.t.iter_mut().for_each(|x| *x = 0.0);
                self.post_breakdown = true;
                self.restarts += 1;
                true
            }
            None => false,
        }
    }

    /// A random unit vector orthogonal to the locked vectors, or `None` if
    /// they span `R^n` numerically.
    fn fresh_vector(&mut self, rng: &mut ChaCha8Rng) -> Option<Vec<f64>> {
        let n = self.n;
        for _ in 0..3 {
            let mut z = random_vector(rng, n);
            self.op.constrain(&mut z);
            let nz = norm(&z);
            if nz.is_nan() || nz <= 0.0 {
                continue;
            }
            scale(1.0 / nz, &mut z);
            for _ in 0..2 {
                cgs_pass(&self.locked_vecs, n, self.nlocked(), &mut z, None);
            }
            let nz = norm(&z);
            if nz > 1e-8 {
                scale(1.0 / nz, &mut z);
                // one more pass for good measure
                cgs_pass(&self.locked_vecs, n, self.nlocked(), &mut z, None);
                let nz = norm(&z);
                scale(1.0 / nz, &mut z);
                return Some(z);
            }
        }
        None
    }

    /// Wu–Simon thick restart keeping the `p` most wanted Ritz vectors.
    fn thick_restart(&mut self, theta: &[f64], y: &[f64], beta: f64) {
        let (n, m, k) = (self.n, self.m, self.k);
        let mut idx: Vec<usize> = (0..m).collect();
        let which = self.which;
        idx.sort_by(|&a, &b| which.compare(theta[a], theta[b]));
        let p = keep_count(k, m);
        let mut ysel = vec![0.0; m * p];
        for (c, &i) in idx[..p].iter().enumerate() {
            ysel[c * m..(c + 1) * m].copy_from_slice(&y[i * m..(i + 1) * m]);
        }
        let nv = combine(&self.v, n, m, &ysel, m, p);
        let nw = combine(&self.w, n, m, &ysel, m, p);
        self.v[..n * p].copy_from_slice(&nv);
        self.w[..n * p].copy_from_slice(&nw);
        self.t.iter_mut().for_each(|x| *x = 0.0);
        for (c, &i) in idx[..p].iter().enumerate() {
            self.set_t(c, c, theta[i]);
            self.set_t(c, p, beta * y[i * m + m - 1]);
        }
        self.m = p;
        self.restarts += 1;
    }

    /// Assembles the result from the current Ritz pairs (`theta`, `y` of the
    /// leading `m x m` block) and the locked pairs.
    fn finish(&self, theta: &[f64], y: &[f64], stop: StopReason) -> EigenResult {
        let n = self.n;
        let m = theta.len();
        let dummy = vec![0.0; theta.len()];
        let cands = self.candidates(theta, &dummy);
        let nw = cands.len().min(self.k);
        let mut values = Vec::with_capacity(nw);
        let mut vectors = Vec::with_capacity(nw);
        let mut residuals = Vec::with_capacity(nw);
        for c in &cands[..nw] {
            match c.src {
                Src::Current(i) => {
                    let yi = &y[i * m..(i + 1) * m];
                    let x = combine(&self.v, n, m, yi, m, 1);
                    let ax = combine(&self.w, n, m, yi, m, 1);
                    residuals.push(true_residual(&ax, &x, c.value));
                    vectors.push(x);
                }
                Src::Locked(i) => {
                    residuals.push(self.locked_res[i]);
                    vectors.push(self.locked_vecs[i * n..(i + 1) * n].to_vec());
                }
            }
            values.push(c.value);
        }
        EigenResult {
            values,
            vectors,
            residuals,
            matvecs: self.matvecs,
            restarts: self.restarts,
            stop,
            converged: stop != StopReason::MaxMatvecs,
        }
    }
}

/// Number of Ritz vectors kept at a thick restart of an `m`-vector basis.
fn keep_count(k: usize, m: usize) -> usize {
    // Keep the wanted pairs plus half of the remaining room: the extra Ritz
    // vectors next to the wanted ones speed up convergence (measured to be
    // insensitive between 0.2 and 0.8 on NN-like spectra).
    let extra = (m - k) / 2;
    (k + extra).clamp(k, m - 1)
}

fn true_residual(ax: &[f64], x: &[f64], theta: f64) -> f64 {
    ax.iter()
        .zip(x)
        .map(|(a, b)| {
            let d = a - theta * b;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}
