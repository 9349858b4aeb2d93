//! Property-testing kit for [`lanczos()`] (cargo feature `proptest`).
//!
//! Everything needed to property-test the eigensolver against *your own*
//! [`LinearOperator`]: planted spectra, random orthogonal bases, operators
//! with known eigenpairs, [`proptest`] strategies producing them, and a
//! checker that compares [`lanczos()`] with a dense oracle.
//!
//! ```
//! use gensplit_eigen::testkit::{any_which, check_lanczos, fixed_config, planted_strategy, CheckTol, Spectrum};
//! use gensplit_eigen::LanczosParams;
//! use proptest::prelude::*;
//!
//! proptest!(fixed_config(4), |(op in planted_strategy(5..=80, Spectrum::Clustered), which in any_which())| {
//!     let params = LanczosParams { k: 3.min(op.spectrum().len()), which, tol: 1e-10, multiplicity_check: true, ..Default::default() };
//!     check_lanczos(&op, &params, CheckTol::for_params(&params))?;
//! });
//! ```
//!
//! # Planted operators
//!
//! A planted operator is `A = Q diag(λ) Q^T` with `Q` orthogonal: its
//! eigenpairs `(λ_i, q_i)` are known exactly (up to the rounding of forming
//! `A`, about `n ε max|λ|`). [`random_orthogonal`] draws `Q` as the Q factor of
//! a seeded `n × n` standard Gaussian matrix (classical Gram–Schmidt applied
//! twice), which is Haar-distributed, so the eigenvectors point in generic
//! directions and the solver cannot profit from the coordinate axes.
//! [`planted_spectrum`] produces the spectrum families of [`Spectrum`]
//! (clusters, exactly repeated values, a power-law bulk with outliers, small
//! negative values, …). All randomness comes from ChaCha8 seeded by a `u64`,
//! so every operator is reproducible from `(kind, n, seed)`; the strategies
//! draw `n` and the seed, and shrink towards small `n`.
//!
//! # The dense check
//!
//! [`check_lanczos`] works for any operator of dimension `n ≤`
//! [`MAX_CHECK_DIM`]. It materialises `A = [A e_1 … A e_n]` (`n` matvecs),
//! checks that it is symmetric and computes its eigendecomposition with
//! [`sym_eig`](crate::sym_eig). If the operator overrides
//! [`LinearOperator::constrain`] (like [`Projected`](crate::Projected)), the
//! constraint `C = [c(e_1) … c(e_n)]` must be an orthogonal projector; with an
//! orthonormal basis `U` of its range the oracle is the eigendecomposition of
//! the compression `U^T A U`, eigenvectors `U y` (the solver works inside
//! `range(C)`). It then runs [`lanczos()`] and measures, with the spectral
//! scale `s = max |λ|` (1 for the zero operator):
//!
//! * **values**: `|θ_i − λ_(i)| / s`, where `λ_(i)` is the `i`-th most wanted
//!   dense eigenvalue (for [`Which::LargestMagnitude`], the larger of the
//!   magnitude error and the distance of `θ_i` to the spectrum, so ties `±λ`
//!   in either order are fine);
//! * **residuals**: true residuals `‖A v_i − θ_i v_i‖ / s` from fresh matvecs,
//!   and their difference to the residuals the solver reported;
//! * **orthonormality**: `max |V^T V − I|`;
//! * **subspaces**: the dense eigenvalues are grouped into clusters (chains of
//!   consecutive gaps `≤ cluster · s`). Each returned vector joins the cluster
//!   of the dense eigenvalue nearest to its value, and for the returned
//!   vectors `V_c` and the dense eigenvectors `Z_c` of a cluster the sine of
//!   the largest principal angle `sin∠(V_c, Z_c) = ‖(I − Z_c Z_c^T) V_c‖₂` is
//!   measured. Individual eigenvectors of a repeated eigenvalue are not
//!   unique but its eigenspace is, so repeated eigenvalues never cause false
//!   failures. If a cluster lies entirely among the `k` wanted eigenvalues,
//!   its returned vectors must span its whole eigenspace (the sine is 1 if
//!   some direction is missing).
//!
//! The checks are applied in the order of [`CheckReport::verify`]; the first
//! failure is returned as a [`CheckError`] with the numbers.
//!
//! # Default tolerances
//!
//! [`CheckTol::for_tol`] derives the tolerances from the solver tolerance
//! `t`: the solver accepts a pair when its residual is `≤ t · max|θ| ≤ t s`,
//! so `residual = 1.01 t + 10^-12`. For orthonormal `V` with residual matrix
//! `R`, Kahan's theorem puts the `k` Ritz values within `‖R‖₂ ≤ √k · max‖r_i‖`
//! of `k` distinct eigenvalues, hence `value = 10 · residual`. Clusters are
//! separated by more than `cluster · s` with `cluster = √residual`, and the
//! Davis–Kahan `sin Θ` theorem bounds `‖sin Θ(V_c, Z_c)‖ ≤ ‖R_c‖_F / δ` with a
//! gap `δ ≳ cluster · s`, hence `angle = 10 · residual / cluster`.

use crate::dense::{sym_eig, DenseError};
use crate::lanczos::{lanczos, EigenResult, LanczosError, LanczosParams, NoObserver, StopReason, Which};
use crate::operator::{DenseSymmetric, LinearOperator, OperatorError};
use crate::util::{combine, dot, norm};
use proptest::collection::SizeRange;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// The `proptest` crate this kit is built on (use it to avoid version skew).
pub use proptest;

/// Largest operator dimension [`check_lanczos`] materialises densely.
pub const MAX_CHECK_DIM: usize = 600;

// ---------------------------------------------------------------------------
// Spectra
// ---------------------------------------------------------------------------

/// Families of planted spectra (see [`planted_spectrum`] for the formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Spectrum {
    /// Independent uniform values in `[-10, 10)`.
    Uniform,
    /// Tight clusters (width `10^-3`) at both ends: 3 values near 9, 4 near
    /// 6, 3 near −8, 3 near −5; the rest uniform in `[-4, 4)`.
    Clustered,
    /// Four exactly repeated values 12, −11, 7.5, −6, each `multiplicity`
    /// times (at least once); the rest uniform in `[-5, 5)`.
    Repeated {
        /// How often each repeated value occurs.
        multiplicity: usize,
    },
    /// All values negative, uniform in `(-10, -1]`.
    AllNegative,
    /// Nearly equidistant values `5 − 10^-4 i` (plus `10^-6` jitter):
    /// tiny relative gaps everywhere.
    TinyGaps,
    /// Outliers `30 / (1 + i)` for `i < 4` above a power-law bulk
    /// `3 i^-0.8 − 0.05 u` (`u` uniform in `[0, 1)`), which decays to about 0
    /// and, for large `n`, slightly below.
    PowerLawWithOutliers,
    /// Shaped like a trained network's Hessian: outliers 25, 14, 9, a
    /// positive power-law bulk `4 (1 + i)^-0.6` (5 % jitter) and every tenth
    /// value a small negative one, `−0.5 (1 + i/10)^-0.5` times a factor in
    /// `[0.5, 1)`.
    WithSmallNegatives,
}

impl Spectrum {
    /// One representative of every family (`Repeated` with multiplicity 3).
    pub const ALL: [Spectrum; 7] = [
        Spectrum::Uniform,
        Spectrum::Clustered,
        Spectrum::Repeated { multiplicity: 3 },
        Spectrum::AllNegative,
        Spectrum::TinyGaps,
        Spectrum::PowerLawWithOutliers,
        Spectrum::WithSmallNegatives,
    ];

    /// Whether the family has (nearly) repeated eigenvalues, so that
    /// [`LanczosParams::multiplicity_check`] should be on to get all copies.
    pub fn has_repeats(self) -> bool {
        matches!(self, Spectrum::Clustered | Spectrum::Repeated { .. })
    }
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-300);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `count` seeded standard Gaussian vectors of length `n`.
pub fn gaussian_vectors(n: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| (0..n).map(|_| gaussian(&mut rng)).collect())
        .collect()
}

/// The `n` eigenvalues of the given family, reproducible from `seed`
/// (unsorted; the order does not matter once a random basis is applied).
pub fn planted_spectrum(kind: Spectrum, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA5A5);
    let mut u = || rng.gen::<f64>();
    let with_prefix = |prefix: &[(f64, usize)], u: &mut dyn FnMut() -> f64, jitter: f64, lo: f64, width: f64| {
        let mut s = Vec::with_capacity(n);
        for &(c, m) in prefix {
            for _ in 0..m {
                if s.len() < n {
                    s.push(c + jitter * u());
                }
            }
        }
        while s.len() < n {
            s.push(lo + width * u());
        }
        s
    };
    match kind {
        Spectrum::Uniform => (0..n).map(|_| 20.0 * u() - 10.0).collect(),
        Spectrum::Clustered => with_prefix(&[(9.0, 3), (6.0, 4), (-8.0, 3), (-5.0, 3)], &mut u, 1e-3, -4.0, 8.0),
        Spectrum::Repeated { multiplicity } => {
            let m = multiplicity.max(1);
            with_prefix(&[(12.0, m), (-11.0, m), (7.5, m), (-6.0, m)], &mut u, 0.0, -5.0, 10.0)
        }
        Spectrum::AllNegative => (0..n).map(|_| -1.0 - 9.0 * u()).collect(),
        Spectrum::TinyGaps => (0..n).map(|i| 5.0 - 1e-4 * i as f64 + 1e-6 * u()).collect(),
        Spectrum::PowerLawWithOutliers => (0..n)
            .map(|i| {
                if i < 4 {
                    30.0 / (1.0 + i as f64)
                } else {
                    3.0 * (i as f64).powf(-0.8) - 0.05 * u()
                }
            })
            .collect(),
        Spectrum::WithSmallNegatives => (0..n)
            .map(|i| {
                if i < 3 {
                    [25.0, 14.0, 9.0][i]
                } else if i % 10 == 9 {
                    -0.5 * (1.0 + (i / 10) as f64).powf(-0.5) * (0.5 + 0.5 * u())
                } else {
                    4.0 * (1.0 + i as f64).powf(-0.6) * (1.0 + 0.05 * u())
                }
            })
            .collect(),
    }
}

/// Column-major random orthogonal `n × n` matrix: the Q factor of a seeded
/// standard Gaussian matrix (classical Gram–Schmidt, twice), Haar-distributed.
/// Column `j` is `q[j * n..(j + 1) * n]`.
pub fn random_orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q = vec![0.0; n * n];
    for j in 0..n {
        let mut v: Vec<f64> = (0..n).map(|_| gaussian(&mut rng)).collect();
        for _ in 0..2 {
            for i in 0..j {
                let qi = &q[i * n..(i + 1) * n];
                let d: f64 = qi.iter().zip(&v).map(|(a, b)| a * b).sum();
                for (vv, qq) in v.iter_mut().zip(qi) {
                    *vv -= d * qq;
                }
            }
        }
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (t, vv) in q[j * n..(j + 1) * n].iter_mut().zip(&v) {
            *t = vv / nv;
        }
    }
    q
}

// ---------------------------------------------------------------------------
// Planted operators
// ---------------------------------------------------------------------------

/// Errors of [`PlantedOperator`] construction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlantedError {
    /// The basis does not have `n * n` entries for a spectrum of length `n`.
    #[error("basis has {got} entries, expected n*n = {expected}")]
    BadLength {
        /// Expected number of entries.
        expected: usize,
        /// Given number of entries.
        got: usize,
    },
    /// The spectrum or the basis contains NaN or an infinity.
    #[error("spectrum or basis contains a non-finite entry")]
    NonFinite,
    /// The basis is not orthogonal.
    #[error("basis is not orthogonal: max |Q^T Q - I| = {error:e} exceeds {tol:e}")]
    NotOrthogonal {
        /// `max |Q^T Q − I|`.
        error: f64,
        /// Allowed deviation.
        tol: f64,
    },
}

/// The dense symmetric operator `A = Q diag(λ) Q^T` with known eigenpairs
/// `(λ_i, q_i)` (`q_i` = column `i` of the orthogonal `Q`).
#[derive(Clone, PartialEq)]
pub struct PlantedOperator {
    spectrum: Vec<f64>,
    basis: Vec<f64>,
    matrix: DenseSymmetric,
    seed: Option<u64>,
}

impl PlantedOperator {
    /// Largest `max |Q^T Q − I|` accepted by [`PlantedOperator::with_basis`].
    pub const ORTHOGONALITY_TOL: f64 = 1e-10;

    /// `Q diag(spectrum) Q^T` with `Q = random_orthogonal(n, seed)`.
    pub fn new(spectrum: Vec<f64>, seed: u64) -> Result<Self, PlantedError> {
        let basis = random_orthogonal(spectrum.len(), seed);
        let mut op = Self::build(spectrum, basis)?;
        op.seed = Some(seed);
        Ok(op)
    }

    /// A planted operator of the given family: `new(planted_spectrum(kind, n, seed), seed)`.
    pub fn planted(kind: Spectrum, n: usize, seed: u64) -> Self {
        Self::new(planted_spectrum(kind, n, seed), seed).expect("planted spectra are finite")
    }

    /// `Q diag(spectrum) Q^T` with a given column-major orthogonal `Q`.
    pub fn with_basis(spectrum: Vec<f64>, basis: Vec<f64>) -> Result<Self, PlantedError> {
        let n = spectrum.len();
        if basis.len() != n * n {
            return Err(PlantedError::BadLength {
                expected: n * n,
                got: basis.len(),
            });
        }
        if basis.iter().any(|x| !x.is_finite()) {
            return Err(PlantedError::NonFinite);
        }
        let cols: Vec<Vec<f64>> = basis.chunks(n.max(1)).map(<[f64]>::to_vec).collect();
        let error = orthonormality_error(&cols);
        if error > Self::ORTHOGONALITY_TOL {
            return Err(PlantedError::NotOrthogonal {
                error,
                tol: Self::ORTHOGONALITY_TOL,
            });
        }
        Self::build(spectrum, basis)
    }

    fn build(spectrum: Vec<f64>, basis: Vec<f64>) -> Result<Self, PlantedError> {
        if spectrum.iter().any(|x| !x.is_finite()) {
            return Err(PlantedError::NonFinite);
        }
        let n = spectrum.len();
        // B = Q diag(λ) accumulated row by row into A = B Q^T (row-major).
        let mut a = vec![0.0; n * n];
        for (l, &s) in spectrum.iter().enumerate() {
            let ql = &basis[l * n..(l + 1) * n];
            for i in 0..n {
                let f = s * ql[i];
                if f == 0.0 {
                    continue;
                }
                let row = &mut a[i * n..(i + 1) * n];
                for (r, qj) in row.iter_mut().zip(ql) {
                    *r += f * qj;
                }
            }
        }
        let matrix = DenseSymmetric::from_fn(n, |i, j| if i <= j { a[i * n + j] } else { a[j * n + i] })
            .map_err(|_| PlantedError::NonFinite)?;
        Ok(Self {
            spectrum,
            basis,
            matrix,
            seed: None,
        })
    }

    /// The planted eigenvalues `λ_i` (in the order of the basis columns).
    pub fn spectrum(&self) -> &[f64] {
        &self.spectrum
    }

    /// The orthogonal `Q`, column-major.
    pub fn basis(&self) -> &[f64] {
        &self.basis
    }

    /// The eigenvector `q_i` of `λ_i`.
    pub fn eigenvector(&self, i: usize) -> &[f64] {
        let n = self.spectrum.len();
        &self.basis[i * n..(i + 1) * n]
    }

    /// The seed of the random basis (`None` for [`PlantedOperator::with_basis`]).
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The dense matrix `Q diag(λ) Q^T` (exactly symmetric).
    pub fn matrix(&self) -> &DenseSymmetric {
        &self.matrix
    }

    /// Consumes the operator, returning the dense matrix.
    pub fn into_matrix(self) -> DenseSymmetric {
        self.matrix
    }

    /// The `k` most wanted planted eigenvalues, most wanted first.
    pub fn wanted_values(&self, k: usize, which: Which) -> Vec<f64> {
        let mut w = self.spectrum.clone();
        w.sort_by(|a, b| which.compare(*a, *b));
        w.truncate(k);
        w
    }
}

impl fmt::Debug for PlantedOperator {
    // The matrix is reproducible from the seed; printing it would drown
    // proptest's failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlantedOperator")
            .field("n", &self.spectrum.len())
            .field("seed", &self.seed)
            .field("spectrum", &self.spectrum)
            .finish_non_exhaustive()
    }
}

impl LinearOperator for PlantedOperator {
    fn dim(&self) -> usize {
        self.matrix.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.matrix.apply(x, y)
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// A proptest configuration with a fixed RNG seed and no failure-persistence
/// files: the same cases on every run.
pub fn fixed_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x5eed),
        ..ProptestConfig::default()
    }
}

fn size_bounds(n: impl Into<SizeRange>) -> std::ops::RangeInclusive<usize> {
    let (lo, hi) = n.into().start_end_incl();
    lo..=hi
}

/// Every [`Which`].
pub fn any_which() -> impl Strategy<Value = Which> {
    prop_oneof![
        Just(Which::LargestAlgebraic),
        Just(Which::SmallestAlgebraic),
        Just(Which::LargestMagnitude),
    ]
}

/// Every [`Spectrum`] family, `Repeated` with multiplicities 2 to 5.
pub fn any_spectrum() -> impl Strategy<Value = Spectrum> {
    prop_oneof![
        Just(Spectrum::Uniform),
        Just(Spectrum::Clustered),
        (2usize..=5).prop_map(|multiplicity| Spectrum::Repeated { multiplicity }),
        Just(Spectrum::AllNegative),
        Just(Spectrum::TinyGaps),
        Just(Spectrum::PowerLawWithOutliers),
        Just(Spectrum::WithSmallNegatives),
    ]
}

/// Planted spectra of the given family with a length in `n` (e.g. `2..=120`).
pub fn spectrum_strategy(kind: Spectrum, n: impl Into<SizeRange>) -> impl Strategy<Value = Vec<f64>> {
    (size_bounds(n), any::<u64>()).prop_map(move |(n, seed)| planted_spectrum(kind, n, seed))
}

/// Random orthogonal `n × n` matrices (column-major) with `n` in the range.
pub fn orthogonal_strategy(n: impl Into<SizeRange>) -> impl Strategy<Value = Vec<f64>> {
    (size_bounds(n), any::<u64>()).prop_map(|(n, seed)| random_orthogonal(n, seed))
}

/// Planted operators `Q diag(λ) Q^T` of the given family, dimension in `n`.
pub fn planted_strategy(n: impl Into<SizeRange>, kind: Spectrum) -> impl Strategy<Value = PlantedOperator> {
    (size_bounds(n), any::<u64>()).prop_map(move |(n, seed)| PlantedOperator::planted(kind, n, seed))
}

/// Planted operators of any family (see [`any_spectrum`]), dimension in `n`.
pub fn any_planted(n: impl Into<SizeRange>) -> impl Strategy<Value = PlantedOperator> {
    (any_spectrum(), size_bounds(n), any::<u64>()).prop_map(|(kind, n, seed)| PlantedOperator::planted(kind, n, seed))
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// The true residual `‖A v − λ v‖` (one matvec).
pub fn true_residual<A: LinearOperator + ?Sized>(op: &A, v: &[f64], lambda: f64) -> f64 {
    let mut y = vec![0.0; v.len()];
    op.apply(v, &mut y);
    y.iter()
        .zip(v)
        .map(|(a, b)| (a - lambda * b).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// `max |V^T V − I|` for the vectors `vs`.
pub fn orthonormality_error(vs: &[Vec<f64>]) -> f64 {
    let mut e = 0.0f64;
    for i in 0..vs.len() {
        for j in 0..=i {
            let d = dot(&vs[i], &vs[j]) - if i == j { 1.0 } else { 0.0 };
            e = e.max(d.abs());
        }
    }
    e
}

// ---------------------------------------------------------------------------
// Dense oracle
// ---------------------------------------------------------------------------

/// The dense eigendecomposition of an operator (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseOracle {
    n: usize,
    matrix: DenseSymmetric,
    values: Vec<f64>,
    vectors: Vec<f64>,
}

/// Largest deviation of the eigenvalues of the constraint from 0 or 1.
const PROJECTOR_TOL: f64 = 1e-8;

impl DenseOracle {
    /// Materialises `op` (and its constraint) with `2 n` operator calls.
    pub fn new<A: LinearOperator + ?Sized>(op: &A) -> Result<Self, CheckError> {
        let n = op.dim();
        if n > MAX_CHECK_DIM {
            return Err(CheckError::TooLarge { n, max: MAX_CHECK_DIM });
        }
        let (a, c) = materialise(op, n);
        let matrix = DenseSymmetric::new(a, n).map_err(CheckError::InvalidOperator)?;
        let identity = c
            .iter()
            .enumerate()
            .all(|(idx, &x)| x == if idx % (n + 1) == 0 { 1.0 } else { 0.0 });
        let (values, vectors) = if identity {
            sym_eig(matrix.as_slice(), n)?
        } else {
            let proj = DenseSymmetric::with_tolerance(c, n, PROJECTOR_TOL).map_err(|e| match e {
                OperatorError::NotSymmetric { diff, .. } => CheckError::InvalidConstraint { deviation: diff },
                _ => CheckError::InvalidConstraint { deviation: f64::NAN },
            })?;
            let (mu, y) = sym_eig(proj.as_slice(), n)?;
            let deviation = mu.iter().fold(0.0f64, |m, x| m.max(x.abs().min((x - 1.0).abs())));
            if deviation > PROJECTOR_TOL {
                return Err(CheckError::InvalidConstraint { deviation });
            }
            // Orthonormal basis U of range(C): eigenvectors of eigenvalue 1.
            let first = mu.iter().position(|&x| x > 0.5).unwrap_or(n);
            let r = n - first;
            let u = &y[first * n..];
            // B = U^T A U (A is exactly symmetric, so row- = column-major).
            let au = combine(matrix.as_slice(), n, n, u, n, r);
            let mut b = vec![0.0; r * r];
            for j in 0..r {
                for i in 0..r {
                    b[j * r + i] = dot(&u[i * n..(i + 1) * n], &au[j * n..(j + 1) * n]);
                }
            }
            for j in 0..r {
                for i in 0..j {
                    let s = 0.5 * (b[j * r + i] + b[i * r + j]);
                    b[j * r + i] = s;
                    b[i * r + j] = s;
                }
            }
            let (w, yb) = sym_eig(&b, r)?;
            (w, combine(u, n, r, &yb, r, r))
        };
        Ok(Self {
            n,
            matrix,
            values,
            vectors,
        })
    }

    /// Dimension `n` of the operator.
    pub fn dim(&self) -> usize {
        self.n
    }

    /// Dimension of the domain the solver works in (`n` unless constrained).
    pub fn domain_dim(&self) -> usize {
        self.values.len()
    }

    /// The materialised (symmetrised) matrix.
    pub fn matrix(&self) -> &DenseSymmetric {
        &self.matrix
    }

    /// Eigenvalues, ascending.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Eigenvector `j` (orthonormal, length `n`), matching `values()[j]`.
    pub fn vector(&self, j: usize) -> &[f64] {
        &self.vectors[j * self.n..(j + 1) * self.n]
    }

    /// Spectral scale `max |λ|` (1 if all eigenvalues are 0 or there are none).
    pub fn scale(&self) -> f64 {
        let s = self.values.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if s > 0.0 {
            s
        } else {
            1.0
        }
    }

    /// Indices into `values()` of the `k` most wanted eigenvalues, most wanted first.
    pub fn wanted(&self, k: usize, which: Which) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.values.len()).collect();
        idx.sort_by(|&i, &j| which.compare(self.values[i], self.values[j]));
        idx.truncate(k);
        idx
    }

    /// Index of the eigenvalue nearest to `x`.
    fn nearest(&self, x: f64) -> usize {
        let w = &self.values;
        let p = w.partition_point(|&v| v < x);
        match (p.checked_sub(1), (p < w.len()).then_some(p)) {
            (Some(a), Some(b)) => {
                if (x - w[a]).abs() <= (w[b] - x).abs() {
                    a
                } else {
                    b
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => 0,
        }
    }
}

/// `(A, C)` column by column, both column-major.
fn materialise<A: LinearOperator + ?Sized>(op: &A, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = vec![0.0; n * n];
    let mut c = vec![0.0; n * n];
    let mut e = vec![0.0; n];
    for j in 0..n {
        e.iter_mut().for_each(|x| *x = 0.0);
        e[j] = 1.0;
        op.apply(&e, &mut a[j * n..(j + 1) * n]);
        op.constrain(&mut e);
        c[j * n..(j + 1) * n].copy_from_slice(&e);
    }
    (a, c)
}

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

/// Tolerances of [`check_lanczos`]; all but `orthonormality` and `angle` are
/// relative to the spectral scale `s = max |λ|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckTol {
    /// Largest eigenvalue error `|θ_i − λ_(i)| / s`.
    pub value: f64,
    /// Largest true residual `‖A v − θ v‖ / s`.
    pub residual: f64,
    /// Largest difference between reported and true residual, `/ s`.
    pub reported_residual: f64,
    /// Largest `max |V^T V − I|`.
    pub orthonormality: f64,
    /// Eigenvalues closer than `cluster · s` are treated as repeated.
    pub cluster: f64,
    /// Largest sine of a principal angle between the returned vectors of a
    /// cluster and its dense eigenspace.
    pub angle: f64,
}

impl CheckTol {
    /// Tolerances for a solver tolerance `tol` (derivation in the module docs).
    pub fn for_tol(tol: f64) -> Self {
        let residual = 1.01 * tol + 1e-12;
        let cluster = residual.sqrt();
        Self {
            value: 10.0 * residual,
            residual,
            reported_residual: 1e-10,
            orthonormality: 1e-10,
            cluster,
            angle: 10.0 * residual / cluster,
        }
    }

    /// Tolerances for `params.tol`.
    pub fn for_params(params: &LanczosParams) -> Self {
        Self::for_tol(params.tol)
    }
}

impl Default for CheckTol {
    /// Tolerances for the default solver tolerance.
    fn default() -> Self {
        Self::for_params(&LanczosParams::default())
    }
}

/// One cluster of (nearly) repeated dense eigenvalues that received returned vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterReport {
    /// Smallest eigenvalue of the cluster.
    pub low: f64,
    /// Largest eigenvalue of the cluster.
    pub high: f64,
    /// Number of dense eigenvalues in the cluster.
    pub multiplicity: usize,
    /// Number of returned vectors assigned to it.
    pub returned: usize,
    /// Whether the whole cluster is among the `k` wanted eigenvalues.
    pub fully_wanted: bool,
    /// `sin∠(V_c, Z_c)`; 1 if the cluster is fully wanted but not spanned.
    pub sin_angle: f64,
}

/// What [`measure_lanczos`] measured. Errors named `max_*` are relative to `scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Operator dimension.
    pub n: usize,
    /// Dimension of the domain the solver works in (`n` unless constrained).
    pub domain_dim: usize,
    /// Requested number of pairs.
    pub k: usize,
    /// Requested end of the spectrum.
    pub which: Which,
    /// Spectral scale `s = max |λ|` (1 for the zero operator).
    pub scale: f64,
    /// The `k` most wanted dense eigenvalues, most wanted first.
    pub expected: Vec<f64>,
    /// The eigenvalues returned by the solver.
    pub values: Vec<f64>,
    /// Number of returned vectors.
    pub vectors: usize,
    /// Number of returned residuals.
    pub residuals: usize,
    /// Solver matvecs.
    pub matvecs: usize,
    /// Solver restarts.
    pub restarts: usize,
    /// Why the solver stopped.
    pub stop: StopReason,
    /// Absolute eigenvalue errors, per returned value.
    pub value_errors: Vec<f64>,
    /// True residuals `‖A v_i − θ_i v_i‖` (absolute).
    pub true_residuals: Vec<f64>,
    /// Residuals reported by the solver (absolute).
    pub reported_residuals: Vec<f64>,
    /// `max_i |θ_i − λ_(i)| / s`.
    pub max_value_error: f64,
    /// `max_i ‖A v_i − θ_i v_i‖ / s`.
    pub max_residual: f64,
    /// `max_i |reported_i − true_i| / s`.
    pub max_residual_discrepancy: f64,
    /// `max |V^T V − I|`.
    pub orthonormality_error: f64,
    /// Largest `sin_angle` over `clusters`.
    pub max_sin_angle: f64,
    /// The clusters that received returned vectors, ascending.
    pub clusters: Vec<ClusterReport>,
}

/// Why [`check_lanczos`] failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// The operator is too large to materialise.
    #[error("operator dimension {n} exceeds the dense-check limit {max}")]
    TooLarge {
        /// Operator dimension.
        n: usize,
        /// [`MAX_CHECK_DIM`].
        max: usize,
    },
    /// The materialised operator is non-finite or not symmetric.
    #[error("operator is not a finite symmetric matrix: {0}")]
    InvalidOperator(OperatorError),
    /// `constrain` is not an orthogonal projector.
    #[error("constrain() is not an orthogonal projector: deviation {deviation:e} (asymmetry or eigenvalue away from 0 and 1)")]
    InvalidConstraint {
        /// Largest asymmetry or distance of an eigenvalue from `{0, 1}`.
        deviation: f64,
    },
    /// The dense oracle failed.
    #[error("dense oracle failed: {0}")]
    Dense(#[from] DenseError),
    /// The solver returned an error.
    #[error("lanczos failed: {0}")]
    Lanczos(#[from] LanczosError),
    /// The solver returned the wrong number of pairs.
    #[error("lanczos returned {values} values, {vectors} vectors and {residuals} residuals; expected {expected} (domain dimension {domain_dim})")]
    WrongCount {
        /// `k`.
        expected: usize,
        /// Returned values.
        values: usize,
        /// Returned vectors.
        vectors: usize,
        /// Returned residuals.
        residuals: usize,
        /// Dimension of the solver's domain.
        domain_dim: usize,
    },
    /// The solver ran out of matvecs.
    #[error("lanczos did not converge: {stop:?} after {matvecs} matvecs")]
    NotConverged {
        /// Why it stopped.
        stop: StopReason,
        /// Matvecs used.
        matvecs: usize,
    },
    /// The returned vectors are not orthonormal.
    #[error("returned vectors are not orthonormal: max |V^T V - I| = {error:e} > {tol:e}")]
    Orthonormality {
        /// `max |V^T V − I|`.
        error: f64,
        /// Allowed.
        tol: f64,
    },
    /// An eigenvalue is wrong.
    #[error("eigenvalue {index}: lanczos {got}, dense {expected}: |error| = {error:e} > {tol:e} * scale {scale:e} (all returned: {values:?})")]
    Value {
        /// Position (most wanted first).
        index: usize,
        /// Returned value.
        got: f64,
        /// Dense value.
        expected: f64,
        /// Absolute error.
        error: f64,
        /// Relative tolerance.
        tol: f64,
        /// Spectral scale.
        scale: f64,
        /// All returned values.
        values: Vec<f64>,
    },
    /// A true residual is too large.
    #[error("pair {index} (value {value}): true residual |A v - value v| = {residual:e} > {tol:e} * scale {scale:e}")]
    Residual {
        /// Position.
        index: usize,
        /// Returned value.
        value: f64,
        /// True residual.
        residual: f64,
        /// Relative tolerance.
        tol: f64,
        /// Spectral scale.
        scale: f64,
    },
    /// A reported residual differs from the true one.
    #[error("pair {index}: reported residual {reported:e} vs true residual {actual:e}: difference exceeds {tol:e} * scale {scale:e}")]
    ReportedResidual {
        /// Position.
        index: usize,
        /// Reported residual.
        reported: f64,
        /// True residual.
        actual: f64,
        /// Relative tolerance.
        tol: f64,
        /// Spectral scale.
        scale: f64,
    },
    /// The returned vectors of a cluster are not in (or do not span) its eigenspace.
    #[error("eigenspace of [{low}, {high}] (multiplicity {multiplicity}, {returned} returned vectors, fully wanted: {fully_wanted}): sin of the largest principal angle {sin_angle:e} > {tol:e}")]
    Angle {
        /// Smallest eigenvalue of the cluster.
        low: f64,
        /// Largest eigenvalue of the cluster.
        high: f64,
        /// Cluster size.
        multiplicity: usize,
        /// Returned vectors in it.
        returned: usize,
        /// Whether the whole cluster was wanted.
        fully_wanted: bool,
        /// Measured sine.
        sin_angle: f64,
        /// Allowed.
        tol: f64,
    },
}

/// Runs [`lanczos()`] on `op` and measures it against the dense oracle
/// (`tol.cluster` defines the clusters); no pass/fail decision except for
/// setup errors. See [`check_lanczos`].
pub fn measure_lanczos<A: LinearOperator + ?Sized>(
    op: &A,
    params: &LanczosParams,
    tol: &CheckTol,
) -> Result<CheckReport, CheckError> {
    let n = op.dim();
    if n > MAX_CHECK_DIM {
        return Err(CheckError::TooLarge { n, max: MAX_CHECK_DIM });
    }
    let res = lanczos(op, params, &mut NoObserver)?;
    let oracle = DenseOracle::new(op)?;
    Ok(compare(op, &oracle, params, tol, &res))
}

/// Runs [`lanczos()`] on `op` with `params` and checks it against the dense
/// eigendecomposition of `op` (see the [module docs](self)): values,
/// residuals, orthonormality and eigenspaces of clusters. `op` must have
/// dimension at most [`MAX_CHECK_DIM`].
///
/// Returns the measurements, or the first failed check. Inside `proptest!`
/// use `?`: like every error type, a [`CheckError`] converts into a failing
/// [`TestCaseError`](proptest::test_runner::TestCaseError) that carries its
/// message.
pub fn check_lanczos<A: LinearOperator + ?Sized>(
    op: &A,
    params: &LanczosParams,
    tol: CheckTol,
) -> Result<CheckReport, CheckError> {
    let report = measure_lanczos(op, params, &tol)?;
    report.verify(&tol)?;
    Ok(report)
}

/// [`check_lanczos`] with [`CheckTol::for_params`]; panics with the error and
/// the full report on failure.
pub fn assert_lanczos_matches_dense<A: LinearOperator + ?Sized>(op: &A, params: &LanczosParams) -> CheckReport {
    let tol = CheckTol::for_params(params);
    let report = match measure_lanczos(op, params, &tol) {
        Ok(r) => r,
        Err(e) => panic!("lanczos check could not run: {e}"),
    };
    if let Err(e) = report.verify(&tol) {
        panic!("lanczos does not match the dense oracle: {e}\n{report:#?}");
    }
    report
}

fn compare<A: LinearOperator + ?Sized>(
    op: &A,
    oracle: &DenseOracle,
    params: &LanczosParams,
    tol: &CheckTol,
    res: &EigenResult,
) -> CheckReport {
    let n = oracle.dim();
    let which = params.which;
    let scale = oracle.scale();
    let w = oracle.values();
    let wanted = oracle.wanted(params.k, which);
    let expected: Vec<f64> = wanted.iter().map(|&i| w[i]).collect();

    let value_errors: Vec<f64> = res
        .values
        .iter()
        .zip(&expected)
        .map(|(&got, &exp)| {
            if which == Which::LargestMagnitude {
                let to_spectrum = w.get(oracle.nearest(got)).map_or(f64::INFINITY, |x| (got - x).abs());
                (got.abs() - exp.abs()).abs().max(to_spectrum)
            } else {
                (got - exp).abs()
            }
        })
        .collect();
    let true_residuals: Vec<f64> = res
        .vectors
        .iter()
        .zip(&res.values)
        .map(|(v, &lam)| {
            if v.len() == n {
                true_residual(op, v, lam)
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let discrepancy = res
        .residuals
        .iter()
        .zip(&true_residuals)
        .fold(0.0f64, |m, (r, t)| m.max((r - t).abs()));

    // Clusters: chains of consecutive gaps <= cluster * scale.
    let mut cluster_of = vec![0usize; w.len()];
    let mut bounds: Vec<(usize, usize)> = Vec::new();
    for i in 0..w.len() {
        if i > 0 && w[i] - w[i - 1] <= tol.cluster * scale {
            bounds.last_mut().expect("a cluster is open").1 = i + 1;
        } else {
            bounds.push((i, i + 1));
        }
        cluster_of[i] = bounds.len() - 1;
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); bounds.len()];
    for (i, v) in res.vectors.iter().enumerate() {
        if let (Some(&val), true, false) = (res.values.get(i), v.len() == n, w.is_empty()) {
            members[cluster_of[oracle.nearest(val)]].push(i);
        }
    }
    let mut in_wanted = vec![false; w.len()];
    for &i in &wanted {
        in_wanted[i] = true;
    }
    let mut clusters = Vec::new();
    for (c, &(lo, hi)) in bounds.iter().enumerate() {
        let vs = &members[c];
        if vs.is_empty() {
            continue;
        }
        let fully_wanted = in_wanted[lo..hi].iter().all(|&b| b);
        let multiplicity = hi - lo;
        let sin_angle = if fully_wanted && vs.len() < multiplicity {
            1.0
        } else {
            let vcols: Vec<f64> = vs.iter().flat_map(|&i| res.vectors[i].iter().copied()).collect();
            sin_largest_angle(oracle, lo, hi, &vcols, vs.len())
        };
        clusters.push(ClusterReport {
            low: w[lo],
            high: w[hi - 1],
            multiplicity,
            returned: vs.len(),
            fully_wanted,
            sin_angle,
        });
    }

    CheckReport {
        n,
        domain_dim: oracle.domain_dim(),
        k: params.k,
        which,
        scale,
        values: res.values.clone(),
        vectors: res.vectors.len(),
        residuals: res.residuals.len(),
        matvecs: res.matvecs,
        restarts: res.restarts,
        stop: res.stop,
        max_value_error: value_errors.iter().fold(0.0f64, |m, &x| m.max(x)) / scale,
        max_residual: true_residuals.iter().fold(0.0f64, |m, &x| m.max(x)) / scale,
        max_residual_discrepancy: discrepancy / scale,
        orthonormality_error: orthonormality_error(&res.vectors),
        max_sin_angle: clusters.iter().fold(0.0f64, |m, c| m.max(c.sin_angle)),
        expected,
        value_errors,
        true_residuals,
        reported_residuals: res.residuals.clone(),
        clusters,
    }
}

/// `‖(I − Z Z^T) V‖₂` for the dense eigenvectors `Z = [z_lo … z_{hi−1}]` and
/// the `p` column-major vectors `v`.
fn sin_largest_angle(oracle: &DenseOracle, lo: usize, hi: usize, v: &[f64], p: usize) -> f64 {
    let n = oracle.dim();
    let z = &oracle.vectors[lo * n..hi * n];
    let m = hi - lo;
    // M = Z^T V (m x p), R = V − Z M.
    let mut zm = vec![0.0; m * p];
    for j in 0..p {
        for i in 0..m {
            zm[j * m + i] = dot(&z[i * n..(i + 1) * n], &v[j * n..(j + 1) * n]);
        }
    }
    let proj = combine(z, n, m, &zm, m, p);
    let r: Vec<f64> = v.iter().zip(&proj).map(|(a, b)| a - b).collect();
    if p == 1 {
        return norm(&r);
    }
    let mut g = vec![0.0; p * p];
    for j in 0..p {
        for i in 0..=j {
            let d = dot(&r[i * n..(i + 1) * n], &r[j * n..(j + 1) * n]);
            g[j * p + i] = d;
            g[i * p + j] = d;
        }
    }
    match sym_eig(&g, p) {
        Ok((mu, _)) => mu.last().copied().unwrap_or(0.0).max(0.0).sqrt(),
        Err(_) => f64::NAN,
    }
}

/// `x <= tol`, false for NaN (so a NaN measurement fails its check).
fn within(x: f64, tol: f64) -> bool {
    x <= tol
}

impl CheckReport {
    /// Applies the tolerances in this order: number of pairs, convergence,
    /// orthonormality, values, true residuals, reported residuals, angles.
    /// Returns the first failure.
    pub fn verify(&self, tol: &CheckTol) -> Result<(), CheckError> {
        let k = self.k;
        if self.values.len() != k || self.vectors != k || self.residuals != k || self.expected.len() != k {
            return Err(CheckError::WrongCount {
                expected: k,
                values: self.values.len(),
                vectors: self.vectors,
                residuals: self.residuals,
                domain_dim: self.domain_dim,
            });
        }
        if self.stop == StopReason::MaxMatvecs {
            return Err(CheckError::NotConverged {
                stop: self.stop,
                matvecs: self.matvecs,
            });
        }
        if !within(self.orthonormality_error, tol.orthonormality) {
            return Err(CheckError::Orthonormality {
                error: self.orthonormality_error,
                tol: tol.orthonormality,
            });
        }
        let s = self.scale;
        for (index, &error) in self.value_errors.iter().enumerate() {
            if !within(error, tol.value * s) {
                return Err(CheckError::Value {
                    index,
                    got: self.values[index],
                    expected: self.expected[index],
                    error,
                    tol: tol.value,
                    scale: s,
                    values: self.values.clone(),
                });
            }
        }
        for (index, &residual) in self.true_residuals.iter().enumerate() {
            if !within(residual, tol.residual * s) {
                return Err(CheckError::Residual {
                    index,
                    value: self.values[index],
                    residual,
                    tol: tol.residual,
                    scale: s,
                });
            }
        }
        for (index, (&reported, &actual)) in self.reported_residuals.iter().zip(&self.true_residuals).enumerate() {
            if !within((reported - actual).abs(), tol.reported_residual * s) {
                return Err(CheckError::ReportedResidual {
                    index,
                    reported,
                    actual,
                    tol: tol.reported_residual,
                    scale: s,
                });
            }
        }
        for c in &self.clusters {
            if !within(c.sin_angle, tol.angle) {
                return Err(CheckError::Angle {
                    low: c.low,
                    high: c.high,
                    multiplicity: c.multiplicity,
                    returned: c.returned,
                    fully_wanted: c.fully_wanted,
                    sin_angle: c.sin_angle,
                    tol: tol.angle,
                });
            }
        }
        Ok(())
    }
}
