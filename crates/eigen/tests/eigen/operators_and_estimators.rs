//! Projections, error cases, observers, SLQ and Hutchinson.

use crate::common::*;
use gensplit_eigen::{
    dense::sym_eig, hutchinson, lanczos, slq, DenseSymmetric, Diagonal, LanczosError, LanczosParams, LinearOperator,
    NoObserver, OperatorError, Projected, Scaled, Shifted, SlqParams, StepInfo, StopReason, Which,
};
use proptest::prelude::*;

#[test]
fn projection_null_space_and_orthogonal_eigenvectors() {
    let n = 120;
    let spec = planted_spectrum(Spectrum::PowerLawWithOutliers, n, 3);
    let a = sym_from_spectrum(&spec, 3);
    // Project out the top-3 eigenvectors plus two random directions, given
    // with a redundant (dependent) vector.
    let top = lanczos(
        &a,
        &LanczosParams {
            k: 3,
            tol: 1e-12,
            ..Default::default()
        },
        &mut NoObserver,
    )
    .unwrap();
    let mut basis = top.vectors.clone();
    basis.extend(gaussian_vectors(n, 2, 9));
    let dep: Vec<f64> = basis[0].iter().zip(&basis[3]).map(|(x, y)| 2.0 * x - y).collect();
    basis.push(dep);
    let p = Projected::new(&a, &basis).unwrap();
    assert_eq!(p.rank(), 5);
    let q = p.basis();
    assert!(orthonormality_error(&q) < 1e-12);
    // P A P q = 0 for q in span(Q).
    let mut y = vec![0.0; n];
    for qi in &basis {
        p.apply(qi, &mut y);
        assert!(y.iter().map(|x| x.abs()).fold(0.0, f64::max) < 1e-12 * 30.0);
    }
    // P A P is symmetric.
    let xs = gaussian_vectors(n, 2, 10);
    let (mut y0, mut y1) = (vec![0.0; n], vec![0.0; n]);
    p.apply(&xs[0], &mut y0);
    p.apply(&xs[1], &mut y1);
    assert!((dot(&xs[1], &y0) - dot(&xs[0], &y1)).abs() < 1e-10);
    // Eigenpairs of P A P: nonzero ones are those of A restricted to span(Q)^⊥.
    for which in [
        Which::LargestAlgebraic,
        Which::SmallestAlgebraic,
        Which::LargestMagnitude,
    ] {
        let r = lanczos(
            &p,
            &LanczosParams {
                k: 4,
                which,
                tol: 1e-11,
                seed: 2,
                ..Default::default()
            },
            &mut NoObserver,
        )
        .unwrap();
        assert_eq!(r.stop, StopReason::Converged);
        for v in &r.vectors {
            for qi in &q {
                assert!(
                    dot(v, qi).abs() < 1e-9,
                    "{which:?} {:?} {:?} {}: component {} in span(Q)",
                    r.values,
                    r.stop,
                    r.restarts,
                    dot(v, qi)
                );
            }
        }
        for (v, &lam) in r.vectors.iter().zip(&r.values) {
            assert!(true_residual(&p, v, lam) <= 1e-11 * 30.0 * 1.01);
        }
    }
    // Top eigenvalue of P A P is below the 3rd of A (top-3 removed; the
    // random directions perturb the rest).
    let r = lanczos(
        &p,
        &LanczosParams {
            k: 1,
            tol: 1e-10,
            ..Default::default()
        },
        &mut NoObserver,
    )
    .unwrap();
    assert!(r.values[0] < top.values[2]);
    // Projecting out exact eigenvectors only: the remaining eigenpairs are
    // eigenpairs of A.
    let p3 = Projected::new(&a, &top.vectors).unwrap();
    let r = lanczos(
        &p3,
        &LanczosParams {
            k: 3,
            tol: 1e-11,
            ..Default::default()
        },
        &mut NoObserver,
    )
    .unwrap();
    let (w, _) = sym_eig(a.as_slice(), n).unwrap();
    for (i, (v, &lam)) in r.vectors.iter().zip(&r.values).enumerate() {
        assert!((lam - w[n - 4 - i]).abs() < 1e-9);
        assert!(true_residual(&a, v, lam) < 1e-9);
    }
    // The smallest eigenvalues of the compression are not the artificial 0s.
    let r = lanczos(
        &p3,
        &LanczosParams {
            k: 2,
            which: Which::SmallestAlgebraic,
            tol: 1e-11,
            ..Default::default()
        },
        &mut NoObserver,
    )
    .unwrap();
    assert!((r.values[0] - w[0]).abs() < 1e-9 && (r.values[1] - w[1]).abs() < 1e-9);
}

proptest! {
    #![proptest_config(fixed_config(12))]
    #[test]
    fn projected_lanczos_never_leaves_complement(kind in any_spectrum(), n in 20usize..=150, r in 1usize..=6, k in 1usize..=5, which in any_which(), seed in any::<u64>()) {
        let a = PlantedOperator::planted(kind, n, seed);
        let basis = gaussian_vectors(n, r, seed ^ 1);
        let p = Projected::new(&a, &basis).unwrap();
        prop_assert_eq!(p.rank(), r);
        let params = LanczosParams { k, which, tol: 1e-10, seed, multiplicity_check: kind.has_repeats(), ..Default::default() };
        // The kit's oracle is the compression of P A P to span(Q)^⊥ (the
        // range of `constrain`), without the r artificial zero eigenvalues.
        let report = check_lanczos(&p, &params, CheckTol::for_params(&params))?;
        prop_assert_eq!(report.domain_dim, n - r);
        let res = lanczos(&p, &params, &mut NoObserver).unwrap();
        prop_assert_eq!(&res.values, &report.values);
        let q = p.basis();
        for v in &res.vectors {
            for qi in &q {
                prop_assert!(dot(v, qi).abs() < 1e-8);
            }
        }
    }
}

#[test]
fn error_cases() {
    let a = DenseSymmetric::from_diagonal(&[1.0, 2.0, 3.0]).unwrap();
    let run = |p: LanczosParams| lanczos(&a, &p, &mut NoObserver);
    assert!(matches!(
        run(LanczosParams {
            k: 0,
            ..Default::default()
        }),
        Err(LanczosError::InvalidK { .. })
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 4,
            ..Default::default()
        }),
        Err(LanczosError::InvalidK { .. })
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 1,
            tol: 0.0,
            ..Default::default()
        }),
        Err(LanczosError::InvalidTolerance(_))
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 1,
            tol: -1.0,
            ..Default::default()
        }),
        Err(LanczosError::InvalidTolerance(_))
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 1,
            tol: f64::NAN,
            ..Default::default()
        }),
        Err(LanczosError::InvalidTolerance(_))
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 1,
            max_matvecs: 0,
            ..Default::default()
        }),
        Err(LanczosError::InvalidMaxMatvecs)
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 1,
            start: Some(vec![0.0; 3]),
            ..Default::default()
        }),
        Err(LanczosError::InvalidStart { .. })
    ));
    assert!(matches!(
        run(LanczosParams {
            k: 1,
            start: Some(vec![1.0; 2]),
            ..Default::default()
        }),
        Err(LanczosError::InvalidStart { .. })
    ));
    let big = Diagonal {
        diag: (0..50).map(|i| i as f64).collect(),
    };
    assert!(matches!(
        lanczos(
            &big,
            &LanczosParams {
                k: 5,
                max_basis: Some(5),
                ..Default::default()
            },
            &mut NoObserver
        ),
        Err(LanczosError::InvalidBasis { .. })
    ));
    let empty = Diagonal { diag: vec![] };
    assert!(matches!(
        lanczos(&empty, &LanczosParams::default(), &mut NoObserver),
        Err(LanczosError::EmptyOperator)
    ));

    struct Nan;
    impl LinearOperator for Nan {
        fn dim(&self) -> usize {
            10
        }
        fn apply(&self, x: &[f64], y: &mut [f64]) {
            y.copy_from_slice(x);
            y[3] = f64::NAN;
        }
    }
    assert!(matches!(
        lanczos(
            &Nan,
            &LanczosParams {
                k: 1,
                ..Default::default()
            },
            &mut NoObserver
        ),
        Err(LanczosError::NonFinite { matvec: 1 })
    ));
    assert!(hutchinson(&Nan, 3, 0).is_err());
    assert!(slq(&Nan, &SlqParams::default()).is_err());
    assert!(hutchinson(&a, 0, 0).is_err());
    assert!(slq(
        &a,
        &SlqParams {
            n_probes: 0,
            ..Default::default()
        }
    )
    .is_err());

    // Operator construction errors.
    assert!(matches!(
        DenseSymmetric::new(vec![1.0, 2.0, 3.0], 2),
        Err(OperatorError::BadLength { .. })
    ));
    assert!(matches!(
        DenseSymmetric::new(vec![1.0, 2.0, 2.5, 1.0], 2),
        Err(OperatorError::NotSymmetric { .. })
    ));
    assert!(matches!(
        DenseSymmetric::new(vec![1.0, f64::NAN, f64::NAN, 1.0], 2),
        Err(OperatorError::NonFinite)
    ));
    assert!(DenseSymmetric::new(vec![1.0, 2.0, 2.0 + 1e-14, 1.0], 2).is_ok());
    assert!(matches!(
        Projected::new(&a, &[vec![1.0; 2]]),
        Err(OperatorError::BadBasisVector { .. })
    ));
}

#[test]
fn small_n_exhausts_space() {
    // n <= basis: Lanczos runs to n and is exact.
    for n in 1..=8 {
        let spec: Vec<f64> = (0..n).map(|i| (i as f64 - 3.0) * 1.5).collect();
        let a = sym_from_spectrum(&spec, n as u64);
        let r = lanczos(
            &a,
            &LanczosParams {
                k: n,
                tol: 1e-12,
                ..Default::default()
            },
            &mut NoObserver,
        )
        .unwrap();
        assert!(r.matvecs <= n + 1, "n={n}: {} matvecs", r.matvecs);
        let mut s = spec.clone();
        s.sort_by(|x, y| y.total_cmp(x));
        for (g, e) in r.values.iter().zip(&s) {
            assert!((g - e).abs() < 1e-10, "n={n}: {:?} vs {:?} ({:?})", r.values, s, r.stop);
        }
        assert!(orthonormality_error(&r.vectors) < 1e-12);
    }
    // Zero and identity operators (every vector is an eigenvector).
    for c in [0.0, 2.5] {
        let a = Diagonal { diag: vec![c; 30] };
        let r = lanczos(
            &a,
            &LanczosParams {
                k: 3,
                ..Default::default()
            },
            &mut NoObserver,
        )
        .unwrap();
        assert_eq!(r.values, vec![c; 3]);
        assert!(orthonormality_error(&r.vectors) < 1e-12);
    }
}

#[test]
fn max_matvecs_and_observer() {
    let a = Diagonal {
        diag: (0..2000).map(|i| 1.0 + 1e-3 * i as f64).collect(),
    };
    let mut steps = Vec::new();
    let mut obs = |s: &StepInfo<'_>| steps.push((s.matvecs, s.converged, s.max_residual));
    let r = lanczos(
        &a,
        &LanczosParams {
            k: 5,
            tol: 1e-12,
            max_matvecs: 37,
            ..Default::default()
        },
        &mut obs,
    )
    .unwrap();
    assert_eq!(r.stop, StopReason::MaxMatvecs);
    assert!(!r.converged, "stopped on the budget: not converged");
    assert_eq!(r.matvecs, 37);
    assert_eq!(steps.len(), 37);
    assert_eq!(steps.last().unwrap().0, 37);
    assert!(steps.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    assert_eq!(r.values.len(), 5);
    // Residuals are still true residuals.
    for (v, &lam) in r.vectors.iter().zip(&r.values) {
        let ex = true_residual(&a, v, lam);
        let rep = r.residuals[r.values.iter().position(|&x| x == lam).unwrap()];
        assert!((ex - rep).abs() < 1e-12);
    }
}

#[test]
fn start_vector_and_wrappers() {
    let n = 60;
    let spec = planted_spectrum(Spectrum::Uniform, n, 4);
    let a = sym_from_spectrum(&spec, 4);
    let start: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
    let p = LanczosParams {
        k: 2,
        tol: 1e-10,
        start: Some(start),
        ..Default::default()
    };
    let r = lanczos(&a, &p, &mut NoObserver).unwrap();
    // Shifted / Scaled / boxed dyn operators.
    let sh = Shifted { op: &a, sigma: 3.0 };
    let rs = lanczos(&sh, &p, &mut NoObserver).unwrap();
    let sc = Scaled { op: &a, alpha: -2.0 };
    let rsc = lanczos(
        &sc,
        &LanczosParams {
            which: Which::SmallestAlgebraic,
            ..p.clone()
        },
        &mut NoObserver,
    )
    .unwrap();
    let boxed: Box<dyn LinearOperator> = Box::new(a.clone());
    let rb = lanczos(&boxed, &p, &mut NoObserver).unwrap();
    for i in 0..2 {
        assert!((rs.values[i] - (r.values[i] - 3.0)).abs() < 1e-9);
        assert!((rsc.values[i] - (-2.0 * r.values[i])).abs() < 1e-9);
        assert_eq!(rb.values[i], r.values[i]);
    }
    // Different seeds agree on the values.
    let r2 = lanczos(
        &a,
        &LanczosParams {
            k: 2,
            tol: 1e-10,
            seed: 99,
            ..Default::default()
        },
        &mut NoObserver,
    )
    .unwrap();
    for i in 0..2 {
        assert!((r2.values[i] - r.values[i]).abs() < 1e-9);
    }
}

#[test]
fn slq_density_integrates_to_one_and_matches_mean() {
    let n = 400;
    let spec = planted_spectrum(Spectrum::PowerLawWithOutliers, n, 8);
    let a = sym_from_spectrum(&spec, 8);
    let true_trace: f64 = spec.iter().sum();
    let params = SlqParams {
        n_probes: 8,
        steps: 40,
        seed: 3,
    };
    let r = slq(&a, &params).unwrap();
    assert_eq!(r.matvecs, 8 * 40);
    assert_eq!(r.probes.len(), 8);
    for p in &r.probes {
        let s: f64 = p.weights.iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert!(p.weights.iter().all(|&w| w >= 0.0));
    }
    // Pooled mean = average of v^T A v (Rademacher, unit) which estimates tr/n.
    let mean = r.pooled.integrate(|t| t);
    let h = hutchinson(&a, 8, 3).unwrap();
    assert!(
        (mean * n as f64 - h.estimate).abs() < 1e-8 * true_trace.abs().max(1.0),
        "SLQ mean uses the same probes"
    );
    assert!((mean - true_trace / n as f64).abs() < 4.0 * h.std_error / n as f64 + 1e-12);
    // Extreme nodes approximate the extreme eigenvalues.
    let (lo, hi) = r.range();
    let smax = spec.iter().cloned().fold(f64::MIN, f64::max);
    let smin = spec.iter().cloned().fold(f64::MAX, f64::min);
    assert!((hi - smax).abs() < 1e-6 && (lo - smin).abs() < 1e-2);
    // Broadened density integrates to ~1 (trapezoid rule).
    let sigma = 0.05;
    let (g, d) = r.density_on_grid(4000, sigma, 8.0);
    let dx = g[1] - g[0];
    let integral: f64 = d.iter().sum::<f64>() * dx;
    assert!((integral - 1.0).abs() < 1e-3, "integral {integral}");
    let first_moment: f64 = g.iter().zip(&d).map(|(t, p)| t * p).sum::<f64>() * dx;
    assert!((first_moment - mean).abs() < 1e-3);
    // tr f(A) estimate for f = x^2 within 10%.
    let tr2: f64 = spec.iter().map(|x| x * x).sum();
    assert!((r.trace_of(|t| t * t) - tr2).abs() < 0.1 * tr2);
    // Deterministic.
    assert_eq!(slq(&a, &params).unwrap(), r);
    // Exact for a small space: steps >= n gives the exact spectrum per probe.
    let small = Diagonal {
        diag: vec![1.0, 2.0, 3.0, 4.0],
    };
    let rs = slq(
        &small,
        &SlqParams {
            n_probes: 2,
            steps: 10,
            seed: 0,
        },
    )
    .unwrap();
    assert!(rs.matvecs <= 8);
    for p in &rs.probes {
        for (t, w) in p.nodes.iter().zip(&p.weights) {
            assert!((t - t.round()).abs() < 1e-10);
            assert!((w - 0.25).abs() < 1e-10);
        }
    }
}

#[test]
fn hutchinson_within_standard_errors() {
    let n = 300;
    let spec = planted_spectrum(Spectrum::Uniform, n, 21);
    let a = sym_from_spectrum(&spec, 21);
    let true_trace: f64 = spec.iter().sum();
    let mut within = 0;
    for seed in 0..10 {
        let t = hutchinson(&a, 50, seed).unwrap();
        assert_eq!(t.matvecs, 50);
        assert_eq!(t.samples.len(), 50);
        assert!(t.std_error > 0.0);
        let z = (t.estimate - true_trace).abs() / t.std_error;
        assert!(z < 5.0, "z = {z}");
        if z < 2.0 {
            within += 1;
        }
        assert_eq!(hutchinson(&a, 50, seed).unwrap(), t);
    }
    assert!(within >= 7, "only {within}/10 within 2 standard errors");
    assert!(hutchinson(&a, 1, 0).unwrap().std_error.is_nan());
}

/// `EigenResult::converged` is true for a run that met its tolerance (or
/// exhausted the space) and false for one stopped by its matvec budget.
#[test]
fn converged_flag_follows_the_stop_reason() {
    let a = Diagonal {
        diag: (0..40).map(|i| i as f64).collect(),
    };
    let p = LanczosParams {
        k: 2,
        tol: 1e-10,
        ..Default::default()
    };
    let r = lanczos(&a, &p, &mut NoObserver).unwrap();
    assert_eq!((r.stop, r.converged), (StopReason::Converged, true));
    let r = lanczos(
        &a,
        &LanczosParams {
            max_matvecs: 3,
            ..p.clone()
        },
        &mut NoObserver,
    )
    .unwrap();
    assert_eq!((r.stop, r.converged), (StopReason::MaxMatvecs, false));
    let small = Diagonal { diag: vec![1.0, 2.0] };
    let r = lanczos(&small, &LanczosParams { k: 2, ..p }, &mut NoObserver).unwrap();
    assert!(r.converged, "{:?}", r.stop);
}

/// SLQ honours `constrain` as Lanczos does: on `P A P` (`P` projecting out
/// span(Q)) the probes live in span(Q)^⊥, so the artificial zero eigenvalues
/// on span(Q) get no quadrature weight, and the trace estimate is that of
/// `A` restricted to span(Q)^⊥. Unconstrained operators keep their rules.
#[test]
fn slq_honours_constrain() {
    let n = 50;
    let a = Diagonal {
        diag: (0..n).map(|i| 1.0 + i as f64 / n as f64).collect(),
    };
    let basis: Vec<Vec<f64>> = (0..5)
        .map(|j| (0..n).map(|i| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    let p = Projected::new(&a, &basis).unwrap();
    let params = SlqParams {
        n_probes: 3,
        steps: 30,
        seed: 7,
    };
    let r = slq(&p, &params).unwrap();
    let weight_near_zero: f64 = r
        .pooled
        .nodes
        .iter()
        .zip(&r.pooled.weights)
        .filter(|(t, _)| t.abs() < 0.5)
        .map(|(_, w)| w)
        .sum();
    assert!(
        weight_near_zero < 1e-10,
        "weight on the projected-out zeros: {weight_near_zero:e}"
    );
    // Every probe's rule reproduces the mean of A's eigenvalues on span(Q)^⊥
    // only approximately; the nodes lie inside A's spectrum there.
    let (lo, hi) = r.range();
    assert!(lo >= 1.1 - 1e-9 && hi <= 2.0, "nodes in [{lo}, {hi}]");
    // The plain operator: a rule whose mean is exactly tr(A)/n.
    let r = slq(&a, &params).unwrap();
    let mean = r.pooled.integrate(|t| t);
    let exact = a.diag.iter().sum::<f64>() / n as f64;
    assert!((mean - exact).abs() < 1e-12, "{mean} vs {exact}");
}
