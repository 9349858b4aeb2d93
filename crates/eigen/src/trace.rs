//! Hutchinson trace estimation.
//!
//! For a Rademacher vector `z` (independent ±1 entries), `E[z^T A z] = tr(A)`.
//! Averaging `s` probes gives an unbiased estimate with variance
//! `2 (‖A‖_F^2 − Σ_i a_ii^2) / s`; the reported standard error is the sample
//! standard deviation of the `z^T A z` divided by `√s`.

use crate::operator::LinearOperator;
use crate::util::{dot, rademacher};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Result of [`hutchinson`].
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEstimate {
    /// Mean of the probe values: the trace estimate.
    pub estimate: f64,
    /// Standard error of the mean (NaN for a single probe).
    pub std_error: f64,
    /// Number of operator applications (one per probe).
    pub matvecs: usize,
    /// The individual probe values `z^T A z`.
    pub samples: Vec<f64>,
}

/// Errors of [`hutchinson`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// The operator has dimension 0.
    #[error("operator has dimension 0")]
    EmptyOperator,
    /// `n_probes == 0`.
    #[error("at least one probe is needed")]
    NoProbes,
    /// The operator returned NaN or an infinity.
    #[error("operator returned a non-finite value at matvec {matvec}")]
    NonFinite {
        /// 1-based index of the offending operator application.
        matvec: usize,
    },
}

/// Hutchinson estimate of `tr(A)` from `n_probes` Rademacher probes drawn
/// from a ChaCha8 generator seeded with `seed` (deterministic).
///
/// ```
/// use gensplit_eigen::{trace::hutchinson, Diagonal};
/// let a = Diagonal { diag: vec![1.0, 2.0, 3.0] };
/// let t = hutchinson(&a, 10, 0).unwrap();
/// assert!((t.estimate - 6.0).abs() < 1e-12); // exact for diagonal matrices
/// ```
pub fn hutchinson<A: LinearOperator + ?Sized>(op: &A, n_probes: usize, seed: u64) -> Result<TraceEstimate, TraceError> {
    let n = op.dim();
    if n == 0 {
        return Err(TraceError::EmptyOperator);
    }
    if n_probes == 0 {
        return Err(TraceError::NoProbes);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut y = vec![0.0; n];
    let mut samples = Vec::with_capacity(n_probes);
    for p in 0..n_probes {
        let z = rademacher(&mut rng, n);
        op.apply(&z, &mut y);
        let s = dot(&z, &y);
        if !s.is_finite() {
            return Err(TraceError::NonFinite { matvec: p + 1 });
        }
        samples.push(s);
    }
    let (estimate, std_error) = mean_and_stderr(&samples);
    Ok(TraceEstimate {
        estimate,
        std_error,
        matvecs: n_probes,
        samples,
    })
}

/// Sample mean and standard error of the mean (NaN for fewer than 2 samples).
pub(crate) fn mean_and_stderr(x: &[f64]) -> (f64, f64) {
    let s = x.len() as f64;
    let mean = x.iter().sum::<f64>() / s;
    if x.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (s - 1.0);
    (mean, (var / s).sqrt())
}
