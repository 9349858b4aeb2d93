//! Example: property-testing the eigensolver on *your own* operator with the
//! kit that `gensplit-eigen` exports under its `proptest` feature
//! (`gensplit_eigen::testkit`). In your crate:
//!
//! ```toml
//! [dev-dependencies]
//! gensplit-eigen = { version = "…", features = ["proptest"] }
//! proptest = "1"
//! ```

use gensplit_eigen::testkit::{
    any_which, assert_lanczos_matches_dense, check_lanczos, fixed_config, planted_strategy, CheckTol, PlantedOperator,
    Spectrum,
};
use gensplit_eigen::{LanczosParams, LinearOperator, Which};
use proptest::prelude::*;
use std::cell::Cell;

/// A user's matrix-free operator: the path-graph Laplacian plus a diagonal
/// potential (tridiagonal, `y_i = (2 + V_i) x_i − x_{i−1} − x_{i+1}`).
struct Chain {
    potential: Vec<f64>,
}

impl LinearOperator for Chain {
    fn dim(&self) -> usize {
        self.potential.len()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let n = x.len();
        for i in 0..n {
            let left = if i > 0 { x[i - 1] } else { 0.0 };
            let right = if i + 1 < n { x[i + 1] } else { 0.0 };
            y[i] = (2.0 + self.potential[i]) * x[i] - left - right;
        }
    }
}

// The five lines: wrap the operator, pick the solver parameters, check.
proptest! {
    #![proptest_config(fixed_config(24))]
    #[test]
    fn chain_matches_dense(potential in prop::collection::vec(-1.0..1.0f64, 2..150), k in 1usize..=4, which in any_which()) {
        let op = Chain { potential };
        // Random potentials localise eigenvectors, which can make extreme
        // eigenvalues nearly equal: let the solver verify multiplicities.
        let params = LanczosParams { k: k.min(op.dim()), which, tol: 1e-10, multiplicity_check: true, ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
}

/// The 5-point Laplacian on an `m × m` grid (Dirichlet boundary). Its
/// eigenvalues `4 − 2 cos(iπ/(m+1)) − 2 cos(jπ/(m+1))` are exactly double for
/// `i ≠ j`: the checker compares eigenspaces, not individual vectors, so the
/// arbitrary basis the solver returns inside each eigenspace is fine.
struct Grid {
    m: usize,
}

impl LinearOperator for Grid {
    fn dim(&self) -> usize {
        self.m * self.m
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        let m = self.m;
        for r in 0..m {
            for c in 0..m {
                let at = |rr: usize, cc: usize| x[rr * m + cc];
                let mut s = 4.0 * at(r, c);
                if r > 0 {
                    s -= at(r - 1, c);
                }
                if r + 1 < m {
                    s -= at(r + 1, c);
                }
                if c > 0 {
                    s -= at(r, c - 1);
                }
                if c + 1 < m {
                    s -= at(r, c + 1);
                }
                y[r * m + c] = s;
            }
        }
    }
}

proptest! {
    #![proptest_config(fixed_config(12))]
    #[test]
    fn grid_laplacian_repeated_eigenvalues(m in 2usize..=12, k in 1usize..=6, which in any_which()) {
        let op = Grid { m };
        let params = LanczosParams { k: k.min(m * m), which, tol: 1e-10, multiplicity_check: true, ..Default::default() };
        check_lanczos(&op, &params, CheckTol::for_params(&params))?;
    }
}

#[test]
fn grid_laplacian_top_eigenspace_is_double() {
    // λ(m, m−1) = λ(m−1, m): the 2nd and 3rd largest eigenvalues coincide.
    let m = 10;
    let params = LanczosParams {
        k: 3,
        which: Which::LargestAlgebraic,
        tol: 1e-10,
        multiplicity_check: true,
        ..Default::default()
    };
    let report = assert_lanczos_matches_dense(&Grid { m }, &params);
    let lam = |i: f64, j: f64| {
        let h = std::f64::consts::PI / (m as f64 + 1.0);
        4.0 - 2.0 * (i * h).cos() - 2.0 * (j * h).cos()
    };
    let exact = [lam(10.0, 10.0), lam(10.0, 9.0), lam(9.0, 10.0)];
    for (got, want) in report.values.iter().zip(exact) {
        assert!((got - want).abs() < 1e-9, "{:?} vs {exact:?}", report.values);
    }
    let double = report
        .clusters
        .iter()
        .find(|c| c.multiplicity == 2)
        .expect("a double cluster");
    assert_eq!(double.returned, 2);
    assert!(double.fully_wanted && double.sin_angle < 1e-6, "{double:?}");
}

/// A user's adaptor around someone else's operator (here one that counts its
/// applications, like a wrapper around an expensive Hessian-vector product).
/// Planted operators with known eigenpairs test that the wrapper is
/// transparent to the solver.
struct Counting<A> {
    inner: A,
    calls: Cell<usize>,
}

impl<A: LinearOperator> LinearOperator for Counting<A> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        self.calls.set(self.calls.get() + 1);
        self.inner.apply(x, y)
    }
}

proptest! {
    #![proptest_config(fixed_config(12))]
    #[test]
    fn wrapped_planted_operator(inner in planted_strategy(5..=120, Spectrum::WithSmallNegatives), which in any_which()) {
        let n = inner.dim();
        let op = Counting { inner, calls: Cell::new(0) };
        let params = LanczosParams { k: 3.min(n), which, tol: 1e-10, ..Default::default() };
        let report = check_lanczos(&op, &params, CheckTol::for_params(&params))?;
        // The checker materialises the operator with n applications, the
        // solver used `matvecs`, and the true residuals took k more.
        prop_assert_eq!(op.calls.get(), n + report.matvecs + params.k);
    }
}

#[test]
fn planted_eigenpairs_are_exact() {
    let op = PlantedOperator::planted(Spectrum::Repeated { multiplicity: 2 }, 30, 7);
    let params = LanczosParams {
        k: 4,
        which: Which::LargestMagnitude,
        tol: 1e-10,
        multiplicity_check: true,
        ..Default::default()
    };
    let report = assert_lanczos_matches_dense(&op, &params);
    // 12 and −11 (twice each) have the largest magnitudes.
    assert_eq!(
        op.wanted_values(4, Which::LargestMagnitude),
        vec![12.0, 12.0, -11.0, -11.0]
    );
    for (got, want) in report.values.iter().zip(op.wanted_values(4, Which::LargestMagnitude)) {
        assert!((got - want).abs() < 1e-9);
    }
}
