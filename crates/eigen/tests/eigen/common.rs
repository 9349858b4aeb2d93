//! Shared test helpers: the exported property-testing kit
//! (`gensplit_eigen::testkit`, feature `proptest`) plus two one-liners.
#![allow(dead_code, unused_imports)] // each test module uses a part

pub use gensplit_eigen::testkit::*;
use gensplit_eigen::DenseSymmetric;

/// `A = Q diag(spectrum) Q^T` (`Q = random_orthogonal(n, seed)`) as a plain
/// dense matrix.
pub fn sym_from_spectrum(spectrum: &[f64], seed: u64) -> DenseSymmetric {
    PlantedOperator::new(spectrum.to_vec(), seed)
        .expect("finite spectrum")
        .into_matrix()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
