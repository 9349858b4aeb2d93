//! Tests of `gensplit_steer::subspace` and `gensplit_steer::independence`
//! against dense computations with known answers.

use std::f64::consts::FRAC_PI_2;

use gensplit_eigen::sym_eig;
use gensplit_steer::independence::{
    cross_curvature, decompose, decompose_all, expected_random_overlap, overlap, principal_angles, random_baseline,
    rayleigh, scaled_rayleigh,
};
use gensplit_steer::{Basis, SteerError};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------- helpers

/// Deterministic proptest configuration (fixed seed, no failure files).
/// `STEER_PROPTEST_RANDOM=1` draws a fresh seed (for local fuzzing).
fn config(cases: u32) -> ProptestConfig {
    let random = std::env::var_os("STEER_PROPTEST_RANDOM").is_some();
    ProptestConfig {
        cases: if random { cases * 50 } else { cases },
        failure_persistence: None,
        rng_seed: if random {
            RngSeed::Random
        } else {
            RngSeed::Fixed(0x57ee)
        },
        ..ProptestConfig::default()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

fn uniform_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn unit(n: usize, i: usize) -> Vec<f64> {
    (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect()
}

/// `Σ_j c_j v_j`.
fn lincomb(vs: &[Vec<f64>], c: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; vs[0].len()];
    for (v, &cj) in vs.iter().zip(c) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += cj * x;
        }
    }
    out
}

/// A spanning set of `span(vs)` made of random combinations (a random
/// well-conditioned mixing: a random orthogonal matrix scaled per column).
fn mixed(vs: &[Vec<f64>], seed: u64) -> Vec<Vec<f64>> {
    let k = vs.len();
    let r = Basis::random(k, k, seed).unwrap();
    (0..k)
        .map(|j| {
            let c: Vec<f64> = r.vector(j).iter().map(|x| x * (1.0 + j as f64)).collect();
            lincomb(vs, &c)
        })
        .collect()
}

/// Maximum entry of `|QᵀQ − I|`.
fn orthonormality_error(b: &Basis) -> f64 {
    let mut err = 0.0f64;
    for i in 0..b.rank() {
        for j in 0..b.rank() {
            let target = if i == j { 1.0 } else { 0.0 };
            err = err.max((dot(b.vector(i), b.vector(j)) - target).abs());
        }
    }
    err
}

/// Random symmetric `n x n` (row-major) with entries in [-1, 1].
fn random_symmetric(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let v = rng.gen_range(-1.0..1.0);
            a[i * n + j] = v;
            a[j * n + i] = v;
        }
    }
    a
}

fn matvec(a: &[f64], n: usize, x: &[f64]) -> Vec<f64> {
    (0..n).map(|i| dot(&a[i * n..(i + 1) * n], x)).collect()
}

/// Block-diagonal `A ⊕ B` (row-major).
fn block_diag(a: &[f64], na: usize, b: &[f64], nb: usize) -> Vec<f64> {
    let n = na + nb;
    let mut m = vec![0.0; n * n];
    for i in 0..na {
        for j in 0..na {
            m[i * n + j] = a[i * na + j];
        }
    }
    for i in 0..nb {
        for j in 0..nb {
            m[(na + i) * n + na + j] = b[i * nb + j];
        }
    }
    m
}

/// `(n, k, seed)` with `0 <= k <= n`.
fn shape() -> impl Strategy<Value = (usize, usize, u64)> {
    (1usize..24).prop_flat_map(|n| (Just(n), 0..=n, any::<u64>()))
}

// ---------------------------------------------------------------- subspace

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn projections_are_idempotent((n, k, seed) in shape()) {
        let b = Basis::random(n, k, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 1);
        let x = uniform_vec(&mut rng, n);
        let scale = norm(&x).max(1e-300);

        let mut p = x.clone();
        b.project_onto(&mut p).unwrap();
        let mut pp = p.clone();
        b.project_onto(&mut pp).unwrap();
        prop_assert!(max_abs_diff(&p, &pp) <= 1e-12 * scale);

        let mut q = x.clone();
        b.project_out(&mut q).unwrap();
        let mut qq = q.clone();
        b.project_out(&mut qq).unwrap();
        prop_assert!(max_abs_diff(&q, &qq) <= 1e-12 * scale);

        // P P⊥ = 0.
        let mut pq = q.clone();
        b.project_onto(&mut pq).unwrap();
        prop_assert!(norm(&pq) <= 1e-12 * scale);
    }

    #[test]
    fn p_plus_p_perp_is_identity((n, k, seed) in shape()) {
        let b = Basis::random(n, k, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 2);
        let x = uniform_vec(&mut rng, n);
        let mut p = x.clone();
        b.project_onto(&mut p).unwrap();
        let mut q = x.clone();
        b.project_out(&mut q).unwrap();
        let sum: Vec<f64> = p.iter().zip(&q).map(|(a, c)| a + c).collect();
        prop_assert!(max_abs_diff(&sum, &x) <= 1e-12 * norm(&x).max(1e-300));
        // Pythagoras and the share.
        let share = b.share(&x).unwrap();
        let nx2 = dot(&x, &x);
        if nx2 > 0.0 {
            prop_assert!((share - dot(&p, &p) / nx2).abs() <= 1e-12);
            prop_assert!((1.0 - share - dot(&q, &q) / nx2).abs() <= 1e-12);
        }
    }

    #[test]
    fn p_perp_is_orthogonal_to_every_basis_vector((n, k, seed) in shape(), mostly_inside in any::<bool>()) {
        let b = Basis::random(n, k, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 3);
        let mut x = uniform_vec(&mut rng, n);
        if mostly_inside && k > 0 {
            // Hard case for one pass: x almost entirely inside the subspace.
            let c = uniform_vec(&mut rng, k);
            let inside = b.combine(&c).unwrap();
            x = inside.iter().zip(&x).map(|(a, e)| 1e3 * a + 1e-6 * e).collect();
        }
        let scale = norm(&x).max(1e-300);
        b.project_out(&mut x).unwrap();
        for j in 0..k {
            prop_assert!(dot(b.vector(j), &x).abs() <= 1e-12 * scale);
        }
        prop_assert!(b.coords(&x).unwrap().iter().all(|c| c.abs() <= 1e-12 * scale));
    }

    #[test]
    fn coords_and_combine_round_trip((n, k, seed) in shape()) {
        let b = Basis::random(n, k, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 4);
        let c = uniform_vec(&mut rng, k);
        let x = b.combine(&c).unwrap();
        prop_assert_eq!(x.len(), n);
        let c2 = b.coords(&x).unwrap();
        prop_assert!(max_abs_diff(&c, &c2) <= 1e-12);
        // combine(c) is inside: projecting onto changes nothing.
        let mut y = x.clone();
        b.project_onto(&mut y).unwrap();
        prop_assert!(max_abs_diff(&x, &y) <= 1e-12);
        if k > 0 && norm(&x) > 0.0 {
            prop_assert!((b.share(&x).unwrap() - 1.0).abs() <= 1e-12);
        }
    }

    #[test]
    fn span_of_dependent_vectors_has_the_right_rank(
        (n, r, seed) in (1usize..20).prop_flat_map(|n| (Just(n), 0..=n, any::<u64>())),
        extra in 0usize..6,
        zeros in 0usize..3,
    ) {
        // r independent (well-conditioned) vectors, then `extra` random
        // combinations of them and `zeros` zero vectors, shuffled.
        let frame = Basis::random(n, r, seed).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 5);
        let mut vs: Vec<Vec<f64>> = (0..r).map(|j| frame.vector(j).iter().map(|x| x * (j as f64 + 0.5)).collect()).collect();
        if r > 0 {
            for _ in 0..extra {
                let c = uniform_vec(&mut rng, r);
                vs.push(lincomb(&vs[..r], &c));
            }
        }
        for _ in 0..zeros {
            vs.push(vec![0.0; n]);
        }
        for i in (1..vs.len()).rev() {
            let j = rng.gen_range(0..=i);
            vs.swap(i, j);
        }
        let b = Basis::span(&vs, n).unwrap();
        prop_assert_eq!(b.rank(), r);
        prop_assert_eq!(b.dim(), n);
        prop_assert!(orthonormality_error(&b) <= 1e-12);
        // Every given vector lies inside the span.
        for v in &vs {
            if norm(v) > 0.0 {
                prop_assert!((b.share(v).unwrap() - 1.0).abs() <= 1e-12);
            }
        }
    }

    #[test]
    fn union_rank_is_the_rank_of_the_concatenation(
        (n, m, seed) in (1usize..20).prop_flat_map(|n| (Just(n), 0..=n, any::<u64>())),
        cuts in (0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0, 0.0f64..1.0),
    ) {
        // A = span F[a0..a1], B = span F[b0..b1] of one orthonormal frame F.
        let f = Basis::random(n, m, seed).unwrap().vectors();
        let at = |t: f64| ((t * (m + 1) as f64) as usize).min(m);
        let (mut a0, mut a1, mut b0, mut b1) = (at(cuts.0), at(cuts.1), at(cuts.2), at(cuts.3));
        if a0 > a1 { std::mem::swap(&mut a0, &mut a1); }
        if b0 > b1 { std::mem::swap(&mut b0, &mut b1); }
        let a = Basis::span(&if a1 > a0 { mixed(&f[a0..a1], seed ^ 6) } else { vec![] }, n).unwrap();
        let b = Basis::span(&if b1 > b0 { mixed(&f[b0..b1], seed ^ 7) } else { vec![] }, n).unwrap();
        prop_assert_eq!(a.rank(), a1 - a0);
        prop_assert_eq!(b.rank(), b1 - b0);
        let u = a.union(&b).unwrap();
        let expected = (0..m).filter(|&i| (a0..a1).contains(&i) || (b0..b1).contains(&i)).count();
        prop_assert_eq!(u.rank(), expected);
        let mut all = a.vectors();
        all.extend(b.vectors());
        prop_assert_eq!(Basis::span(&all, n).unwrap().rank(), expected);
        prop_assert!(orthonormality_error(&u) <= 1e-12);
        // The union contains both.
        for v in a.vectors().iter().chain(b.vectors().iter()) {
            prop_assert!((u.share(v).unwrap() - 1.0).abs() <= 1e-12);
        }
    }

    #[test]
    fn random_frames_are_orthonormal_and_seeded((n, k, seed) in shape()) {
        let b = Basis::random(n, k, seed).unwrap();
        prop_assert_eq!((b.dim(), b.rank()), (n, k));
        prop_assert!(orthonormality_error(&b) <= 1e-12);
        prop_assert_eq!(&b, &Basis::random(n, k, seed).unwrap());
        if k > 0 && n > 1 {
            // (In R^1 the only frames are ±1, so seeds may coincide.)
            prop_assert_ne!(&b, &Basis::random(n, k, seed.wrapping_add(1)).unwrap());
        }
        // Re-spanning an orthonormal basis keeps it (up to rounding).
        let again = Basis::span(&b.vectors(), n).unwrap();
        prop_assert_eq!(again.rank(), k);
        for j in 0..k {
            prop_assert!(max_abs_diff(again.vector(j), b.vector(j)) <= 1e-12);
        }
    }
}

#[test]
fn random_frames_look_uniform() {
    // E[q_ij²] = 1/n for a Haar frame: average over many frames.
    let (n, k, trials) = (6, 2, 2000);
    let mut acc = vec![0.0; n];
    for t in 0..trials {
        let b = Basis::random(n, k, t).unwrap();
        for (a, x) in acc.iter_mut().zip(b.vector(1)) {
            *a += x * x;
        }
    }
    for a in acc {
        // Var(q_i²) ≤ 1 / n², so the standard error is below 1/(n·sqrt(trials)).
        assert!((a / trials as f64 - 1.0 / n as f64).abs() < 5.0 / (n as f64 * (trials as f64).sqrt()));
    }
}

#[test]
fn top_takes_the_first_k_eigenvectors() {
    let n = 5;
    let vs: Vec<Vec<f32>> = (0..4).map(|i| unit(n, i).iter().map(|&x| x as f32).collect()).collect();
    let b = Basis::top(&vs, 2, n, "digits").unwrap();
    assert_eq!(b.rank(), 2);
    assert_eq!(b.vector(0), unit(n, 0).as_slice());
    assert_eq!(b.vector(1), unit(n, 1).as_slice());
    assert_eq!(Basis::top(&vs, 0, n, "digits").unwrap().rank(), 0);
    match Basis::top(&vs, 5, n, "digits") {
        Err(SteerError::NotEnoughEigenpairs {
            what,
            requested,
            available,
        }) => assert_eq!((what.as_str(), requested, available), ("digits", 5, 4)),
        other => panic!("expected NotEnoughEigenpairs, got {other:?}"),
    }
    // Only the first k are checked/used.
    let mut bad = vs.clone();
    bad[3] = vec![f32::NAN; 2];
    assert_eq!(Basis::top(&bad, 3, n, "x").unwrap().rank(), 3);
    assert!(matches!(Basis::top(&bad, 4, n, "x"), Err(SteerError::Length { .. })));
    bad[3] = vec![f32::NAN; n];
    assert!(matches!(Basis::top(&bad, 4, n, "x"), Err(SteerError::NonFinite { .. })));
}

#[test]
fn span_f32_matches_span() {
    let vs: Vec<Vec<f32>> = vec![vec![1.0, 2.0, 0.5], vec![0.0, 1.0, -1.0]];
    let wide: Vec<Vec<f64>> = vs.iter().map(|v| v.iter().map(|&x| f64::from(x)).collect()).collect();
    assert_eq!(Basis::span_f32(&vs, 3).unwrap(), Basis::span(&wide, 3).unwrap());
}

#[test]
fn span_handles_extreme_scales() {
    let b = Basis::span(&[vec![1e300, 1e300, 0.0], vec![1e-300, 0.0, 0.0]], 3).unwrap();
    assert_eq!(b.rank(), 2);
    assert!(orthonormality_error(&b) < 1e-14);
    assert!((b.share(&[1e300, 0.0, 1e300]).unwrap() - 0.5).abs() < 1e-14);
}

#[test]
fn subspace_rejects_bad_input() {
    assert!(matches!(
        Basis::span(&[vec![1.0, 0.0]], 0),
        Err(SteerError::Invalid { field: "n", .. })
    ));
    assert!(matches!(
        Basis::span(&[vec![1.0, 0.0], vec![1.0]], 2),
        Err(SteerError::Length {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(matches!(
        Basis::span(&[vec![1.0, f64::NAN]], 2),
        Err(SteerError::NonFinite { .. })
    ));
    assert!(matches!(
        Basis::span(&[vec![1.0, f64::INFINITY]], 2),
        Err(SteerError::NonFinite { .. })
    ));
    assert!(matches!(
        Basis::span_f32(&[vec![1.0, f32::NAN]], 2),
        Err(SteerError::NonFinite { .. })
    ));
    assert!(matches!(
        Basis::random(3, 4, 0),
        Err(SteerError::Invalid { field: "k", .. })
    ));
    assert!(matches!(
        Basis::random(0, 0, 0),
        Err(SteerError::Invalid { field: "n", .. })
    ));
    assert_eq!(Basis::random(3, 0, 0).unwrap().rank(), 0);

    let b = Basis::random(4, 2, 1).unwrap();
    let other = Basis::random(5, 2, 1).unwrap();
    assert!(matches!(b.union(&other), Err(SteerError::Length { .. })));
    assert!(matches!(b.coords(&[1.0; 3]), Err(SteerError::Length { .. })));
    assert!(matches!(b.combine(&[1.0; 3]), Err(SteerError::Length { .. })));
    assert!(matches!(b.combine(&[1.0, f64::NAN]), Err(SteerError::NonFinite { .. })));
    assert!(matches!(b.project_onto(&mut [1.0; 5]), Err(SteerError::Length { .. })));
    assert!(matches!(b.project_out(&mut [1.0; 3]), Err(SteerError::Length { .. })));
    assert!(matches!(
        b.project_out(&mut [1.0, 2.0, f64::NAN, 0.0]),
        Err(SteerError::NonFinite { .. })
    ));
    assert!(matches!(b.share(&[1.0; 2]), Err(SteerError::Length { .. })));
    assert_eq!(b.share(&[0.0; 4]).unwrap(), 0.0);
    assert_eq!(Basis::span(&[], 4).unwrap().share(&[1.0; 4]).unwrap(), 0.0);
}

// ---------------------------------------------------------------- independence

/// `(n, k, j, seed)` with `j <= k` and `2k - j <= n`.
fn shared_shape() -> impl Strategy<Value = (usize, usize, usize, u64)> {
    (1usize..10)
        .prop_flat_map(|k| (Just(k), 0..=k))
        .prop_flat_map(|(k, j)| (2 * k - j..2 * k - j + 8, Just(k), Just(j), any::<u64>()))
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn overlap_with_itself_is_one((n, k, seed) in shape()) {
        prop_assume!(k > 0);
        let a = Basis::random(n, k, seed).unwrap();
        let same = Basis::span(&mixed(&a.vectors(), seed ^ 8), n).unwrap();
        prop_assert!((overlap(&a, &same).unwrap() - 1.0).abs() <= 1e-12);
        prop_assert!(principal_angles(&a, &same).unwrap().iter().all(|t| t.abs() <= 1e-12));
    }

    #[test]
    fn overlap_of_nested_subspaces_is_one((n, k, seed) in shape(), cut in 0.0f64..1.0) {
        prop_assume!(k > 0);
        let a = Basis::random(n, k, seed).unwrap();
        let j = 1 + ((cut * k as f64) as usize).min(k - 1);
        let sub = Basis::span(&mixed(&a.vectors()[..j], seed ^ 9), n).unwrap();
        prop_assert!((overlap(&a, &sub).unwrap() - 1.0).abs() <= 1e-12);
        prop_assert!((overlap(&sub, &a).unwrap() - 1.0).abs() <= 1e-12);
        prop_assert_eq!(principal_angles(&a, &sub).unwrap().len(), j);
    }

    #[test]
    fn overlap_of_orthogonal_subspaces_is_zero((n, k, seed) in (2usize..24).prop_flat_map(|n| (Just(n), 1..=n - 1, any::<u64>())), cut in 0.0f64..1.0) {
        let f = Basis::random(n, k + 1, seed).unwrap().vectors();
        let split = 1 + ((cut * k as f64) as usize).min(k - 1);
        let a = Basis::span(&mixed(&f[..split], seed ^ 10), n).unwrap();
        let b = Basis::span(&mixed(&f[split..], seed ^ 11), n).unwrap();
        prop_assert!(overlap(&a, &b).unwrap() <= 1e-12);
        let th = principal_angles(&a, &b).unwrap();
        prop_assert_eq!(th.len(), split.min(k + 1 - split));
        prop_assert!(th.iter().all(|t| (t - FRAC_PI_2).abs() <= 1e-12));
    }

    #[test]
    fn sharing_j_of_k_directions_gives_j_over_k((n, k, j, seed) in shared_shape()) {
        // F: 2k - j orthonormal vectors; A = span F[0..k], B = span F[k-j..2k-j].
        let f = Basis::random(n, 2 * k - j, seed).unwrap().vectors();
        let a = Basis::span(&mixed(&f[..k], seed ^ 12), n).unwrap();
        let b = Basis::span(&mixed(&f[k - j..], seed ^ 13), n).unwrap();
        prop_assert_eq!((a.rank(), b.rank()), (k, k));
        let o = overlap(&a, &b).unwrap();
        prop_assert!((o - j as f64 / k as f64).abs() <= 1e-12, "overlap {} vs {}/{}", o, j, k);
        let th = principal_angles(&a, &b).unwrap();
        prop_assert_eq!(th.len(), k);
        for (i, t) in th.iter().enumerate() {
            let expected = if i < j { 0.0 } else { FRAC_PI_2 };
            prop_assert!((t - expected).abs() <= 1e-12, "angle {} = {} expected {}", i, t, expected);
        }
        prop_assert_eq!(a.union(&b).unwrap().rank(), 2 * k - j);
    }

    #[test]
    fn principal_angles_of_a_rotated_pair_are_recovered(
        m in 1usize..6,
        extra_b in 0usize..3,
        pad in 0usize..4,
        raw in prop::collection::vec(0.0f64..1.0, 6),
        seed in any::<u64>(),
    ) {
        // a_i = e_{2i}, b_i = cos θ_i e_{2i} + sin θ_i e_{2i+1}, plus `extra_b`
        // vectors of B orthogonal to everything; then a random rotation R of R^n.
        let n = 2 * m + extra_b + pad;
        let mut angles: Vec<f64> = raw[..m].iter().enumerate().map(|(i, r)| match i {
            0 => 1e-6 * r,           // a tiny angle: needs the sine formula
            1 => FRAC_PI_2 * (1.0 - 1e-6 * r), // nearly orthogonal
            _ => FRAC_PI_2 * r,
        }).collect();
        let rot = Basis::random(n, n, seed).unwrap();
        let rotate = |x: &[f64]| rot.combine(x).unwrap();
        let av: Vec<Vec<f64>> = (0..m).map(|i| rotate(&unit(n, 2 * i))).collect();
        let mut bv: Vec<Vec<f64>> = (0..m)
            .map(|i| {
                let mut x = vec![0.0; n];
                x[2 * i] = angles[i].cos();
                x[2 * i + 1] = angles[i].sin();
                rotate(&x)
            })
            .collect();
        bv.extend((0..extra_b).map(|t| rotate(&unit(n, 2 * m + t))));
        let a = Basis::span(&mixed(&av, seed ^ 14), n).unwrap();
        let b = Basis::span(&mixed(&bv, seed ^ 15), n).unwrap();
        angles.sort_by(f64::total_cmp);
        for (x, y) in [(&a, &b), (&b, &a)] {
            let th = principal_angles(x, y).unwrap();
            prop_assert_eq!(th.len(), m);
            for (t, e) in th.iter().zip(&angles) {
                prop_assert!((t - e).abs() <= 1e-12, "{} vs {}", t, e);
            }
            let cos2: f64 = angles.iter().map(|t| t.cos().powi(2)).sum();
            prop_assert!((overlap(x, y).unwrap() - cos2 / m as f64).abs() <= 1e-12);
        }
    }

    #[test]
    fn decomposition_of_known_combinations(
        coef in prop::collection::vec(-1.0f64..1.0, 4),
        seed in any::<u64>(),
        n in 6usize..20,
    ) {
        // A = span(F0, F1), B = span(F2, F3) (orthogonal), u = Σ c_i F_i + c_3' F5.
        let f = Basis::random(n, 6, seed).unwrap().vectors();
        let a = Basis::span(&mixed(&f[0..2], seed ^ 16), n).unwrap();
        let b = Basis::span(&mixed(&f[2..4], seed ^ 17), n).unwrap();
        let (ca, cb, cr) = (coef[0], coef[1], coef[2]);
        prop_assume!(ca * ca + cb * cb + cr * cr > 1e-6);
        let scale = 10f64.powf(coef[3] * 5.0);
        let u = lincomb(&[f[0].clone(), f[2].clone(), f[5].clone()], &[ca * scale, cb * scale, cr * scale]);
        let t = ca * ca + cb * cb + cr * cr;
        let d = decompose(&u, &a, &b).unwrap();
        let tol = 1e-12;
        prop_assert!((d.in_a - ca * ca / t).abs() <= tol);
        prop_assert!((d.in_b - cb * cb / t).abs() <= tol);
        prop_assert!((d.joint - (ca * ca + cb * cb) / t).abs() <= tol);
        prop_assert!((d.rest - cr * cr / t).abs() <= tol);
        // Orthogonal A and B: the bars are the shares themselves.
        prop_assert!((d.bar_a - d.in_a).abs() <= tol && (d.bar_b - d.in_b).abs() <= tol);
        prop_assert!((d.bar_a + d.bar_b + d.bar_rest - 1.0).abs() <= 1e-14);
        prop_assert_eq!(d.bar_rest, d.rest);
        prop_assert_eq!(&decompose_all(std::slice::from_ref(&u), &a, &b).unwrap()[0], &d);
    }

    #[test]
    fn decomposition_bars_sum_to_one(seed in any::<u64>(), (n, ka, kb) in (2usize..16).prop_flat_map(|n| (Just(n), 0..=n, 0..=n))) {
        let a = Basis::random(n, ka, seed).unwrap();
        let b = Basis::random(n, kb, seed ^ 18).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 19);
        let u = uniform_vec(&mut rng, n);
        prop_assume!(norm(&u) > 0.0);
        let d = decompose(&u, &a, &b).unwrap();
        for v in [d.in_a, d.in_b, d.joint, d.rest, d.bar_a, d.bar_b, d.bar_rest] {
            prop_assert!((0.0..=1.0).contains(&v));
        }
        prop_assert!(d.joint + 1e-12 >= d.in_a.max(d.in_b));
        prop_assert!((d.bar_a + d.bar_b + d.bar_rest - 1.0).abs() <= 1e-14);
    }
}

#[test]
fn decomposition_with_overlapping_subspaces() {
    let n = 5;
    let e = |i| unit(n, i);
    // A = span(e0, e1), B = span(e1, e2); u = e1 lies in both.
    let a = Basis::span(&[e(0), e(1)], n).unwrap();
    let b = Basis::span(&[e(1), e(2)], n).unwrap();
    let d = decompose(&e(1), &a, &b).unwrap();
    assert_eq!((d.in_a, d.in_b, d.joint, d.rest), (1.0, 1.0, 1.0, 0.0));
    assert_eq!((d.bar_a, d.bar_b, d.bar_rest), (0.5, 0.5, 0.0));

    // A = span(e0), B = span(cos φ e0 + sin φ e1); u = e1: in_a = 0,
    // in_b = sin²φ, joint = 1 (the union is the (e0, e1) plane).
    let phi: f64 = 0.3;
    let a = Basis::span(&[e(0)], n).unwrap();
    let b = Basis::span(&[lincomb(&[e(0), e(1)], &[phi.cos(), phi.sin()])], n).unwrap();
    let d = decompose(&e(1), &a, &b).unwrap();
    assert!(d.in_a.abs() < 1e-15);
    assert!((d.in_b - phi.sin().powi(2)).abs() < 1e-15);
    assert!((d.joint - 1.0).abs() < 1e-15 && d.rest.abs() < 1e-15);
    assert!((d.bar_b - 1.0).abs() < 1e-15 && d.bar_a.abs() < 1e-15);

    // u outside both: everything in the rest, bars a and b zero.
    let d = decompose(&e(4), &a, &b).unwrap();
    assert_eq!((d.in_a, d.in_b, d.joint, d.rest), (0.0, 0.0, 0.0, 1.0));
    assert_eq!((d.bar_a, d.bar_b, d.bar_rest), (0.0, 0.0, 1.0));
}

#[test]
fn result_types_are_serde() {
    fn serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
    serde::<gensplit_steer::independence::Decomposition>();
    serde::<gensplit_steer::independence::RandomBaseline>();
    serde::<gensplit_steer::independence::CrossCurvature>();
}

#[test]
fn expected_random_overlap_formula() {
    assert_eq!(expected_random_overlap(100, 5, 10), 0.1);
    assert_eq!(expected_random_overlap(100, 10, 5), 0.1);
    assert_eq!(expected_random_overlap(7, 7, 7), 1.0);
    assert!(expected_random_overlap(0, 1, 1).is_nan());
    assert!(expected_random_overlap(10, 0, 1).is_nan());
}

#[test]
fn random_baseline_matches_the_expectation() {
    for (n, ka, kb) in [(40, 3, 5), (30, 4, 4), (12, 1, 6)] {
        let trials = 400;
        let r = random_baseline(n, ka, kb, trials, 2024).unwrap();
        assert_eq!(r.trials, trials);
        let expected = expected_random_overlap(n, ka, kb);
        let se = r.overlap_std / (trials as f64).sqrt();
        assert!(
            (r.overlap_mean - expected).abs() < 5.0 * se,
            "n={n} ka={ka} kb={kb}: mean {} vs {expected} (se {se})",
            r.overlap_mean
        );
        assert!(r.overlap_std > 0.0);
        assert!(r.min_angle_mean > 0.0 && r.min_angle_mean < FRAC_PI_2);
        // Deterministic in the seed.
        assert_eq!(r, random_baseline(n, ka, kb, trials, 2024).unwrap());
        assert_ne!(r, random_baseline(n, ka, kb, trials, 2025).unwrap());
    }
    let one = random_baseline(10, 2, 3, 1, 0).unwrap();
    assert_eq!(one.overlap_std, 0.0);
}

#[test]
fn cross_curvature_on_block_diagonal_hessians() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (nr, ns) = (5, 4);
    let n = nr + ns;
    // H_r: symmetric positive definite with known eigenpairs; H_s: symmetric.
    let mut hr = random_symmetric(&mut rng, nr);
    for i in 0..nr {
        hr[i * nr + i] += 4.0;
    }
    let hs = random_symmetric(&mut rng, ns);
    let (w, v) = sym_eig(&hr, nr).unwrap();
    assert!(w[0] > 0.0);
    let top = 3;
    let (vectors, values): (Vec<Vec<f64>>, Vec<f64>) = (0..top)
        .map(|t| {
            let j = nr - 1 - t;
            let mut u = v[j * nr..(j + 1) * nr].to_vec();
            u.resize(n, 0.0); // embedded in the r block
            (u, w[j])
        })
        .unzip();

    // Independent blocks: the s loss's Hessian is 0 ⊕ H_s → ρ = 0.
    let h_s_only = block_diag(&vec![0.0; nr * nr], nr, &hs, ns);
    let products: Vec<Vec<f64>> = vectors.iter().map(|u| matvec(&h_s_only, n, u)).collect();
    let cc = cross_curvature(&vectors, &values, &products).unwrap();
    assert_eq!(cc.per_vector.len(), top);
    assert!(cc.mean.abs() < 1e-14 && cc.per_vector.iter().all(|r| r.abs() < 1e-14));

    // The same operator (even with extra curvature in the other block): ρ = 1.
    let full = block_diag(&hr, nr, &hs, ns);
    let products: Vec<Vec<f64>> = vectors.iter().map(|u| matvec(&full, n, u)).collect();
    let cc = cross_curvature(&vectors, &values, &products).unwrap();
    assert!((cc.mean - 1.0).abs() < 1e-12 && cc.per_vector.iter().all(|r| (r - 1.0).abs() < 1e-12));

    // 2.5 H_r: ρ = 2.5; a general dense H_s: ρ_i = u_iᵀ H_s u_i / λ_i.
    let scaled: Vec<f64> = full.iter().map(|x| 2.5 * x).collect();
    let products: Vec<Vec<f64>> = vectors.iter().map(|u| matvec(&scaled, n, u)).collect();
    assert!((cross_curvature(&vectors, &values, &products).unwrap().mean - 2.5).abs() < 1e-12);
    let dense = random_symmetric(&mut rng, n);
    let products: Vec<Vec<f64>> = vectors.iter().map(|u| matvec(&dense, n, u)).collect();
    let cc = cross_curvature(&vectors, &values, &products).unwrap();
    for ((u, h), (lam, rho)) in vectors.iter().zip(&products).zip(values.iter().zip(&cc.per_vector)) {
        assert!((rho - dot(u, h) / lam).abs() < 1e-13);
    }
    assert!((cc.mean - cc.per_vector.iter().sum::<f64>() / top as f64).abs() < 1e-15);

    // Non-unit eigenvectors (f32 storage): the Rayleigh quotient removes the norm.
    let stretched: Vec<Vec<f64>> = vectors.iter().map(|u| u.iter().map(|x| 1.001 * x).collect()).collect();
    let products: Vec<Vec<f64>> = stretched.iter().map(|u| matvec(&full, n, u)).collect();
    assert!((cross_curvature(&stretched, &values, &products).unwrap().mean - 1.0).abs() < 1e-12);

    // The random-direction baseline: Rayleigh quotients over a common scale.
    let dirs: Vec<Vec<f64>> = (0..4)
        .map(|t| Basis::random(n, 1, t).unwrap().vector(0).to_vec())
        .collect();
    let products: Vec<Vec<f64>> = dirs.iter().map(|u| matvec(&full, n, u)).collect();
    let base = scaled_rayleigh(&dirs, &products, 2.0).unwrap();
    for ((u, h), rho) in dirs.iter().zip(&products).zip(&base.per_vector) {
        assert!((rho - dot(u, h) / 2.0).abs() < 1e-13);
    }
}

#[test]
fn rayleigh_quotient() {
    let u = [1.0, 2.0, 0.0];
    let hu = [2.0, 4.0, 1.0];
    assert!((rayleigh(&u, &hu).unwrap() - 2.0).abs() < 1e-15);
    let big = [1e200, 2e200, 0.0];
    let hbig = [3e200, 6e200, 0.0];
    assert!((rayleigh(&big, &hbig).unwrap() - 3.0).abs() < 1e-14);
    assert!(matches!(
        rayleigh(&[0.0; 3], &hu),
        Err(SteerError::Invalid { field: "u", .. })
    ));
    assert!(matches!(
        rayleigh(&[], &[]),
        Err(SteerError::Invalid { field: "u", .. })
    ));
    assert!(matches!(rayleigh(&u, &hu[..2]), Err(SteerError::Length { .. })));
    assert!(matches!(
        rayleigh(&[f64::NAN, 1.0, 0.0], &hu),
        Err(SteerError::NonFinite { .. })
    ));
    assert!(matches!(
        rayleigh(&u, &[f64::INFINITY, 1.0, 0.0]),
        Err(SteerError::NonFinite { .. })
    ));
}

#[test]
fn independence_rejects_bad_input() {
    let a = Basis::random(6, 2, 0).unwrap();
    let b5 = Basis::random(5, 2, 0).unwrap();
    let empty = Basis::span(&[], 6).unwrap();
    assert!(matches!(overlap(&a, &b5), Err(SteerError::Length { .. })));
    assert!(matches!(
        overlap(&a, &empty),
        Err(SteerError::Invalid { field: "b", .. })
    ));
    assert!(matches!(
        overlap(&empty, &a),
        Err(SteerError::Invalid { field: "a", .. })
    ));
    assert!(matches!(principal_angles(&a, &b5), Err(SteerError::Length { .. })));
    assert!(matches!(principal_angles(&a, &empty), Err(SteerError::Invalid { .. })));

    assert!(matches!(
        random_baseline(5, 6, 1, 10, 0),
        Err(SteerError::Invalid { field: "k", .. })
    ));
    assert!(matches!(
        random_baseline(5, 0, 1, 10, 0),
        Err(SteerError::Invalid { field: "ka", .. })
    ));
    assert!(matches!(
        random_baseline(5, 1, 0, 10, 0),
        Err(SteerError::Invalid { field: "kb", .. })
    ));
    assert!(matches!(
        random_baseline(5, 1, 1, 0, 0),
        Err(SteerError::Invalid { field: "trials", .. })
    ));
    assert!(matches!(
        random_baseline(0, 1, 1, 3, 0),
        Err(SteerError::Invalid { .. })
    ));

    let b = Basis::random(6, 2, 1).unwrap();
    assert!(matches!(decompose(&[1.0; 5], &a, &b), Err(SteerError::Length { .. })));
    assert!(matches!(decompose(&[1.0; 6], &a, &b5), Err(SteerError::Length { .. })));
    assert!(matches!(
        decompose(&[0.0; 6], &a, &b),
        Err(SteerError::Invalid { field: "u", .. })
    ));
    let mut nan = [1.0; 6];
    nan[2] = f64::NAN;
    assert!(matches!(decompose(&nan, &a, &b), Err(SteerError::NonFinite { .. })));
    assert!(matches!(
        decompose_all(&[vec![1.0; 6], vec![1.0; 4]], &a, &b),
        Err(SteerError::Length { .. })
    ));

    let u = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]];
    let h = vec![vec![2.0, 0.0, 0.0], vec![0.0, 3.0, 0.0]];
    assert_eq!(cross_curvature(&u, &[2.0, 3.0], &h).unwrap().per_vector, vec![1.0, 1.0]);
    let invalid_values = |r: Result<_, SteerError>| matches!(r, Err(SteerError::Invalid { field: "values", .. }));
    assert!(invalid_values(cross_curvature(&u, &[2.0, 0.0], &h)));
    assert!(invalid_values(cross_curvature(&u, &[-1.0, 3.0], &h)));
    assert!(matches!(
        cross_curvature(&u, &[2.0, f64::NAN], &h),
        Err(SteerError::NonFinite { .. })
    ));
    assert!(matches!(
        cross_curvature(&u, &[2.0], &h),
        Err(SteerError::Length { .. })
    ));
    assert!(matches!(
        cross_curvature(&u, &[2.0, 3.0], &h[..1]),
        Err(SteerError::Length { .. })
    ));
    assert!(matches!(
        cross_curvature(&[], &[], &[]),
        Err(SteerError::Invalid { .. })
    ));
    let short = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0]];
    assert!(matches!(
        cross_curvature(&short, &[2.0, 3.0], &h),
        Err(SteerError::Length { .. })
    ));
    let short_h = vec![vec![2.0, 0.0, 0.0], vec![0.0, 3.0]];
    assert!(matches!(
        cross_curvature(&u, &[2.0, 3.0], &short_h),
        Err(SteerError::Length { .. })
    ));
    let inf_h = vec![vec![2.0, 0.0, 0.0], vec![0.0, f64::INFINITY, 0.0]];
    assert!(matches!(
        cross_curvature(&u, &[2.0, 3.0], &inf_h),
        Err(SteerError::NonFinite { .. })
    ));
    let zero_u = vec![vec![1.0, 0.0, 0.0], vec![0.0; 3]];
    assert!(matches!(
        cross_curvature(&zero_u, &[2.0, 3.0], &h),
        Err(SteerError::Invalid { field: "u", .. })
    ));
    assert!(matches!(
        scaled_rayleigh(&u, &h, 0.0),
        Err(SteerError::Invalid { field: "scale", .. })
    ));
    assert!(matches!(
        scaled_rayleigh(&u, &h, f64::NAN),
        Err(SteerError::NonFinite { .. })
    ));
}
