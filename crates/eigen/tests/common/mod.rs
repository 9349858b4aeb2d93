//! Shared test helpers: random orthogonal matrices and prescribed spectra.
#![allow(dead_code)]

use gensplit_eigen::{DenseSymmetric, LinearOperator, Which};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.gen::<f64>().max(1e-300);
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Column-major random orthogonal `n x n` matrix (Gram–Schmidt twice of a
/// seeded Gaussian matrix, i.e. the Q factor of its QR decomposition).
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

/// `A = Q diag(spectrum) Q^T` with a seeded random orthogonal `Q`.
pub fn sym_from_spectrum(spectrum: &[f64], seed: u64) -> DenseSymmetric {
    let n = spectrum.len();
    let q = random_orthogonal(n, seed);
    // B = Q diag(s) (column-major) then A = B Q^T.
    let mut a = vec![0.0; n * n];
    for (l, &s) in spectrum.iter().enumerate() {
        let ql = &q[l * n..(l + 1) * n];
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
    DenseSymmetric::from_fn(n, |i, j| if i <= j { a[i * n + j] } else { a[j * n + i] }).unwrap()
}

pub fn which_from(i: u8) -> Which {
    match i % 3 {
        0 => Which::LargestAlgebraic,
        1 => Which::SmallestAlgebraic,
        _ => Which::LargestMagnitude,
    }
}

/// Spectrum families used by the property tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Random,
    Clustered,
    Repeated,
    Negative,
    TinyGaps,
    Decaying,
}

pub const KINDS: [Kind; 6] = [
    Kind::Random,
    Kind::Clustered,
    Kind::Repeated,
    Kind::Negative,
    Kind::TinyGaps,
    Kind::Decaying,
];

pub fn spectrum(kind: Kind, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA5A5);
    let mut u = || rng.gen::<f64>();
    match kind {
        Kind::Random => (0..n).map(|_| 20.0 * u() - 10.0).collect(),
        Kind::Clustered => {
            // Small tight clusters at both ends, uniform bulk in between.
            let centers = [(9.0, 3usize), (6.0, 4), (-8.0, 3), (-5.0, 3)];
            let mut s = Vec::with_capacity(n);
            for &(c, m) in &centers {
                for _ in 0..m {
                    if s.len() < n {
                        s.push(c + 1e-3 * u());
                    }
                }
            }
            while s.len() < n {
                s.push(8.0 * u() - 4.0);
            }
            s
        }
        Kind::Repeated => {
            // A few repeated values at both ends (multiplicities 2-4), the rest random.
            let mut s = Vec::with_capacity(n);
            let reps = [(12.0, 3usize), (-11.0, 2), (7.5, 4), (-6.0, 2)];
            for &(v, m) in &reps {
                for _ in 0..m {
                    if s.len() < n {
                        s.push(v);
                    }
                }
            }
            while s.len() < n {
                s.push(10.0 * u() - 5.0);
            }
            s
        }
        Kind::Negative => (0..n).map(|_| -1.0 - 9.0 * u()).collect(),
        Kind::TinyGaps => (0..n).map(|i| 5.0 - 1e-4 * i as f64 + 1e-6 * u()).collect(),
        Kind::Decaying => (0..n)
            .map(|i| {
                if i < 4 {
                    30.0 / (1.0 + i as f64)
                } else {
                    3.0 * (i as f64).powf(-0.8) - 0.05 * u()
                }
            })
            .collect(),
    }
}

pub fn explicit_residual<A: LinearOperator + ?Sized>(op: &A, v: &[f64], lambda: f64) -> f64 {
    let mut y = vec![0.0; v.len()];
    op.apply(v, &mut y);
    y.iter()
        .zip(v)
        .map(|(a, b)| (a - lambda * b).powi(2))
        .sum::<f64>()
        .sqrt()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// max |X^T X - I|.
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
