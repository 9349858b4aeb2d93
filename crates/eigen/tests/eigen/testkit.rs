//! The property-testing kit itself (`gensplit_eigen::testkit`): planted
//! operators, strategies and the checker catch what they should.

use gensplit_eigen::testkit::*;
use gensplit_eigen::{Diagonal, Projected, Shifted};
use gensplit_eigen::{LanczosError, LanczosParams, LinearOperator, OperatorError, StopReason, Which};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn params(k: usize, which: Which) -> LanczosParams {
    LanczosParams {
        k,
        which,
        tol: 1e-10,
        seed: 3,
        multiplicity_check: true,
        ..Default::default()
    }
}

#[test]
fn random_orthogonal_is_orthogonal_and_deterministic() {
    for n in [1usize, 2, 7, 60] {
        let q = random_orthogonal(n, 9);
        let cols: Vec<Vec<f64>> = q.chunks(n).map(<[f64]>::to_vec).collect();
        assert!(orthonormality_error(&cols) < 1e-13, "n = {n}");
        assert_eq!(q, random_orthogonal(n, 9));
        if n > 1 {
            assert_ne!(q, random_orthogonal(n, 10));
        }
    }
}

#[test]
fn planted_operator_has_its_eigenpairs() {
    for kind in Spectrum::ALL {
        let op = PlantedOperator::planted(kind, 40, 5);
        assert_eq!(op.dim(), 40);
        let s = op.spectrum().iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for i in 0..40 {
            let r = true_residual(&op, op.eigenvector(i), op.spectrum()[i]);
            assert!(r < 1e-13 * s, "{kind:?}: residual {r:e}");
        }
        assert!(format!("{op:?}").len() < 2000);
    }
    let rep = planted_spectrum(Spectrum::Repeated { multiplicity: 4 }, 30, 1);
    assert_eq!(rep.iter().filter(|&&x| x == 12.0).count(), 4);
    let neg = planted_spectrum(Spectrum::WithSmallNegatives, 100, 1);
    assert_eq!(neg.iter().filter(|&&x| x < 0.0).count(), 10);
    assert!(neg.iter().all(|&x| x > -0.5));
}

#[test]
fn with_basis_validates() {
    let q = random_orthogonal(4, 1);
    assert!(PlantedOperator::with_basis(vec![1.0, 2.0, 3.0, 4.0], q.clone()).is_ok());
    assert!(matches!(
        PlantedOperator::with_basis(vec![1.0; 3], q.clone()),
        Err(PlantedError::BadLength { expected: 9, got: 16 })
    ));
    let mut bad = q;
    bad[0] += 1e-3;
    assert!(matches!(
        PlantedOperator::with_basis(vec![1.0; 4], bad),
        Err(PlantedError::NotOrthogonal { .. })
    ));
    assert_eq!(PlantedOperator::new(vec![f64::NAN], 0), Err(PlantedError::NonFinite));
}

#[test]
fn check_passes_on_planted_repeated_and_projected() {
    let op = PlantedOperator::planted(Spectrum::Repeated { multiplicity: 3 }, 50, 2);
    for which in [
        Which::LargestAlgebraic,
        Which::SmallestAlgebraic,
        Which::LargestMagnitude,
    ] {
        let r = assert_lanczos_matches_dense(&op, &params(7, which));
        assert!(r.clusters.iter().any(|c| c.multiplicity == 3 && c.fully_wanted));
    }
    let p = Projected::new(&op, &gaussian_vectors(50, 3, 4)).unwrap();
    let r = check_lanczos(&p, &params(4, Which::SmallestAlgebraic), CheckTol::for_tol(1e-10)).unwrap();
    assert_eq!(r.domain_dim, 47);
    let shifted = Shifted { op: &op, sigma: 2.0 };
    check_lanczos(&shifted, &params(3, Which::LargestMagnitude), CheckTol::default()).unwrap();
}

#[test]
fn check_reports_failures_with_numbers() {
    let op = Diagonal {
        diag: vec![3.0, 2.0, 1.0, 0.5],
    };
    let p = params(2, Which::LargestAlgebraic);
    let tol = CheckTol::for_params(&p);
    let good = measure_lanczos(&op, &p, &tol).unwrap();
    good.verify(&tol).unwrap();
    assert_eq!(good.expected, vec![3.0, 2.0]);

    let mut bad = good.clone();
    bad.values[1] = 1.0;
    bad.value_errors[1] = 1.0;
    assert!(matches!(bad.verify(&tol), Err(CheckError::Value { index: 1, .. })));
    let mut bad = good.clone();
    bad.true_residuals[0] = 1e-3;
    assert!(matches!(bad.verify(&tol), Err(CheckError::Residual { index: 0, .. })));
    let mut bad = good.clone();
    bad.clusters[0].sin_angle = 0.5;
    let e = bad.verify(&tol).unwrap_err();
    assert!(e.to_string().contains("5e-1"), "{e}");
    let mut bad = good.clone();
    bad.stop = StopReason::MaxMatvecs;
    assert!(matches!(bad.verify(&tol), Err(CheckError::NotConverged { .. })));
    let mut bad = good;
    bad.vectors = 1;
    assert!(matches!(bad.verify(&tol), Err(CheckError::WrongCount { .. })));

    // A solver that misses a copy of a repeated eigenvalue fails on the values.
    let rep = Diagonal {
        diag: vec![5.0, 5.0, 1.0, 0.0, -1.0],
    };
    let mut no_mult = params(2, Which::LargestAlgebraic);
    no_mult.multiplicity_check = false;
    match check_lanczos(&rep, &no_mult, CheckTol::for_params(&no_mult)) {
        Ok(r) => assert_eq!(r.values, vec![5.0, 5.0]),
        Err(e) => assert!(matches!(e, CheckError::Value { .. }), "{e}"),
    }
    // Budget exhausted.
    let big = PlantedOperator::planted(Spectrum::TinyGaps, 100, 1);
    let short = LanczosParams {
        max_matvecs: 25,
        ..params(3, Which::LargestAlgebraic)
    };
    assert!(matches!(
        check_lanczos(&big, &short, CheckTol::for_params(&short)),
        Err(CheckError::NotConverged { .. })
    ));
}

struct Skew;
impl LinearOperator for Skew {
    fn dim(&self) -> usize {
        2
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        y[0] = x[1];
        y[1] = -x[0];
    }
}

struct Big;
impl LinearOperator for Big {
    fn dim(&self) -> usize {
        MAX_CHECK_DIM + 1
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        y.copy_from_slice(x);
    }
}

struct HalfProjector;
impl LinearOperator for HalfProjector {
    fn dim(&self) -> usize {
        3
    }
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        y.copy_from_slice(x);
    }
    fn constrain(&self, x: &mut [f64]) {
        x[0] *= 0.5;
    }
}

#[test]
fn setup_errors_are_typed() {
    let p = params(1, Which::LargestAlgebraic);
    assert!(matches!(
        DenseOracle::new(&Skew),
        Err(CheckError::InvalidOperator(OperatorError::NotSymmetric { .. }))
    ));
    assert_eq!(
        check_lanczos(&Big, &p, CheckTol::default()).unwrap_err(),
        CheckError::TooLarge {
            n: MAX_CHECK_DIM + 1,
            max: MAX_CHECK_DIM
        }
    );
    assert!(matches!(
        DenseOracle::new(&HalfProjector),
        Err(CheckError::InvalidConstraint { .. })
    ));
    let too_many = params(5, Which::LargestAlgebraic);
    assert!(matches!(
        check_lanczos(&Diagonal { diag: vec![1.0; 3] }, &too_many, CheckTol::default()),
        Err(CheckError::Lanczos(LanczosError::InvalidK { .. }))
    ));
    let e: TestCaseError = CheckError::TooLarge { n: 1, max: 0 }.into();
    assert!(e.to_string().contains("exceeds"));
}

proptest! {
    #![proptest_config(fixed_config(6))]
    #[test]
    fn strategies_produce_valid_inputs(op in any_planted(2..=30), spec in spectrum_strategy(Spectrum::TinyGaps, 3..5), q in orthogonal_strategy(1..=6)) {
        prop_assert!((2..=30).contains(&op.dim()));
        prop_assert!((3..5).contains(&spec.len()));
        let n = (q.len() as f64).sqrt() as usize;
        prop_assert_eq!(n * n, q.len());
    }
}
