//! Steering directions and the operating-point rule against independent
//! oracles: the generalized eigen-equation and its maximum property, exact
//! orthogonality of projected directions (property-tested), hand-built
//! sweeps, and bad input.

use gensplit_eigen::{DenseSymmetric, LinearOperator};
use gensplit_models::Eval;
use gensplit_steer::direction::{self, generalized, products};
use gensplit_steer::sweep::{operating_point, symmetric_grid, Objective, Point, Rule};
use gensplit_steer::{Basis, SteerError};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gauss_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| direction::gaussian(rng)).collect()
}

/// A random symmetric matrix, plus `shift · I`.
fn random_sym(n: usize, rng: &mut ChaCha8Rng, shift: f64) -> DenseSymmetric {
    let b: Vec<f64> = gauss_vec(rng, n * n);
    DenseSymmetric::from_fn(n, |i, j| {
        let s: f64 = (0..n).map(|l| b[i * n + l] * b[j * n + l]).sum::<f64>() / n as f64;
        s + if i == j { shift } else { 0.0 }
    })
    .unwrap()
}

fn apply(a: &DenseSymmetric, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    a.apply(x, &mut y);
    y
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn ratio(a: &DenseSymmetric, k: &DenseSymmetric, mu: f64, d: &[f64]) -> f64 {
    dot(d, &apply(a, d)) / (dot(d, &apply(k, d)) + mu * dot(d, d))
}

#[test]
fn generalized_solves_the_generalized_eigen_equation_in_the_full_space() {
    for seed in 0..5u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 9;
        let a = random_sym(n, &mut rng, -0.3); // indefinite
        let k = random_sym(n, &mut rng, 0.05); // positive definite
        let mu = 0.01;
        let span: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| (i == j) as u8 as f64).collect())
            .collect();
        let ha = products(&a, &span).unwrap();
        let hk = products(&k, &span).unwrap();
        let g = generalized(&span, &ha, &hk, mu).unwrap();
        let d = &g.direction;
        assert!((dot(d, d) - 1.0).abs() < 1e-12);
        // A d = ρ (K + μI) d
        let (ad, kd) = (apply(&a, d), apply(&k, d));
        let res: f64 = ad
            .iter()
            .zip(&kd)
            .zip(d)
            .map(|((x, y), z)| (x - g.ratio * (y + mu * z)).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(res < 1e-10 * g.ratio.abs().max(1.0), "residual {res}");
        assert!((ratio(&a, &k, mu, d) - g.ratio).abs() < 1e-10);
        assert!((g.ablate_curvature - dot(d, &ad)).abs() < 1e-10);
        // maximum property: no random direction does better
        for _ in 0..200 {
            let x = gauss_vec(&mut rng, n);
            assert!(ratio(&a, &k, mu, &x) <= g.ratio + 1e-10);
        }
    }
}

#[test]
fn generalized_in_a_subspace_stays_in_it_and_is_stationary_there() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, m) = (12, 4);
    let a = random_sym(n, &mut rng, 0.0);
    let k = random_sym(n, &mut rng, 0.1);
    // a dependent spanning set: 4 random vectors plus a combination of two
    let mut span: Vec<Vec<f64>> = (0..m).map(|_| gauss_vec(&mut rng, n)).collect();
    span.push(span[0].iter().zip(&span[1]).map(|(x, y)| 2.0 * x - y).collect());
    let (ha, hk) = (products(&a, &span).unwrap(), products(&k, &span).unwrap());
    let g = generalized(&span, &ha, &hk, 0.0).unwrap();
    assert_eq!(g.span_rank, m);
    let b = Basis::span(&span, n).unwrap();
    assert!((b.share(&g.direction).unwrap() - 1.0).abs() < 1e-10);
    // stationarity inside the span: Sᵀ(A d − ρ K d) = 0
    let (ad, kd) = (apply(&a, &g.direction), apply(&k, &g.direction));
    let r: Vec<f64> = ad.iter().zip(&kd).map(|(x, y)| x - g.ratio * y).collect();
    for s in &span {
        assert!(dot(s, &r).abs() < 1e-9, "{}", dot(s, &r));
    }
    for _ in 0..200 {
        let c = gauss_vec(&mut rng, m);
        let x = b.combine(&c).unwrap();
        assert!(ratio(&a, &k, 0.0, &x) <= g.ratio + 1e-10);
    }
}

#[test]
fn generalized_rejects_bad_input() {
    let span = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let ok = span.clone();
    assert!(matches!(
        generalized(&span, &ok, &ok, -1.0),
        Err(SteerError::Invalid { field: "mu", .. })
    ));
    assert!(matches!(
        generalized(&span, &ok[..1], &ok, 0.0),
        Err(SteerError::Invalid { field: "products", .. })
    ));
    assert!(matches!(
        generalized(&span, &[vec![1.0, 0.0], vec![0.0]], &ok, 0.0),
        Err(SteerError::Length { .. })
    ));
    assert!(matches!(
        generalized(&span, &[vec![f64::NAN, 0.0], vec![0.0, 1.0]], &ok, 0.0),
        Err(SteerError::NonFinite { .. })
    ));
    // H_k = −I is not positive definite with μ = 0.5
    let neg = vec![vec![-1.0, 0.0], vec![0.0, -1.0]];
    let err = generalized(&span, &ok, &neg, 0.5).unwrap_err();
    assert!(err.to_string().contains("positive definite"), "{err}");
    assert!(generalized(&[], &[], &[], 0.0).is_err());
    // the automatic ridge shifts an indefinite H_k until it is definite
    let g = direction::generalized_auto(&span, &ok, &neg, 0.5).unwrap();
    assert!((g.mu - 1.5).abs() < 1e-12, "{}", g.mu);
    let g = direction::generalized_auto(&span, &ok, &ok, 0.5).unwrap();
    assert_eq!(g.mu, 0.5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn projected_directions_are_unit_and_orthogonal_to_the_keep_space(
        n in 3usize..40, kfrac in 0.1f64..0.7, seed in 0u64..1000,
    ) {
        let k = ((n as f64 * kfrac) as usize).max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let keep = Basis::random(n, k, seed).unwrap();
        let u = gauss_vec(&mut rng, n);
        for d in [
            direction::seed(&u, &keep).unwrap(),
            direction::projected_gradient(&u, &keep).unwrap(),
            direction::random_in_complement(&keep, seed).unwrap(),
        ] {
            prop_assert!((dot(&d, &d) - 1.0).abs() < 1e-12);
            for j in 0..keep.rank() {
                prop_assert!(dot(&d, keep.vector(j)).abs() < 1e-12);
            }
        }
        // seed(u) is the normalized P⊥u: parallel to it
        let d = direction::seed(&u, &keep).unwrap();
        let mut pu = u.clone();
        keep.project_out(&mut pu).unwrap();
        let c = dot(&d, &pu) / dot(&pu, &pu).sqrt();
        prop_assert!((c - 1.0).abs() < 1e-10);
        // a vector inside the keep space has no direction left
        let inside = keep.vector(0).to_vec();
        prop_assert!(direction::seed(&inside, &keep).is_err());
    }

    #[test]
    fn random_directions_are_reproducible_per_seed(n in 2usize..30, seed in 0u64..500) {
        let keep = Basis::random(n, 1, 3).unwrap();
        prop_assert_eq!(
            direction::random_in_complement(&keep, seed).unwrap(),
            direction::random_in_complement(&keep, seed).unwrap()
        );
    }
}

fn pt(alpha: f64, ablate: f64, keep: f64, loss: f64) -> Point {
    let e = |acc, loss| Eval { loss, acc };
    Point {
        alpha,
        step: None,
        evals: [("a".to_string(), e(ablate, loss)), ("k".to_string(), e(keep, 0.1))]
            .into_iter()
            .collect(),
    }
}

#[test]
fn operating_point_follows_the_rule() {
    let rule = Rule {
        objective: Objective::MinAcc("a".into()),
        keep: "k".into(),
        base_keep_acc: 0.95,
        max_drop: 0.02,
    };
    let pts = vec![
        pt(-2.0, 0.05, 0.80, 3.0), // best ablation but the keep rule fell: excluded
        pt(-1.0, 0.40, 0.94, 1.0),
        pt(0.0, 0.99, 0.95, 0.1),
        pt(0.5, 0.40, 0.95, 1.1), // same ablated accuracy, smaller |α|: wins the tie
        pt(1.0, 0.60, 0.93, 0.9), // exactly at the 2-point limit: allowed
    ];
    assert_eq!(operating_point(&pts, &rule), Some(3));
    let loss_rule = Rule {
        objective: Objective::MaxLoss("a".into()),
        ..rule.clone()
    };
    assert_eq!(operating_point(&pts, &loss_rule), Some(3));
    // nothing keeps the rule
    let strict = Rule {
        base_keep_acc: 0.99,
        ..rule
    };
    assert_eq!(operating_point(&pts, &strict), None);
}

#[test]
fn grids_are_symmetric_and_reject_bad_alphas() {
    assert_eq!(symmetric_grid(&[0.5, 1.0]).unwrap(), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
    for bad in [[0.0, 1.0], [-1.0, 1.0], [f64::INFINITY, 1.0]] {
        assert!(matches!(
            symmetric_grid(&bad),
            Err(SteerError::Invalid { field: "alphas", .. })
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let _ = rng.gen::<u8>();
}
