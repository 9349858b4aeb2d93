//! The sphere search: planted modules, the sphere constraint, order
//! parameters against hand-computed cases, deflation, and gradients
//! against finite differences.

use gensplit_models::Model;
use gensplit_sphere::*;
use proptest::prelude::*;

/// `L(θ) = Σᵢ aᵢ θᵢ⁴/4 − Σᵢ bᵢ θᵢ² / 2`: a separable non-convex toy.
struct Toy {
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Objective for Toy {
    fn dim(&self) -> usize {
        self.a.len()
    }
    fn value_grad(&self, th: &[f64], g: &mut [f64]) -> Result<f64, SphereError> {
        let mut f = 0.0;
        for i in 0..th.len() {
            f += self.a[i] * th[i].powi(4) / 4.0 - self.b[i] * th[i] * th[i] / 2.0;
            g[i] = self.a[i] * th[i].powi(3) - self.b[i] * th[i];
        }
        Ok(f)
    }
}

fn eye(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| {
            let mut v = vec![0.0; n];
            v[i] = 1.0;
            v
        })
        .collect()
}

#[test]
fn planted_units_the_weakest_module_breaks_whole() {
    let (model, theta, data) = planted::lookup_modules(3, &[2.0, 3.0, 4.0]);
    let units = unit_groups(model.layout(), "fc1", "fc2").unwrap();
    assert_eq!(units.len(), 27);
    let coords = Coords::shrink(&theta, &units).unwrap();
    let obj = ModelObjective::new(&model, &data, LogitLoss::CE, 0).unwrap();
    let params = SphereParams {
        radii: vec![1.0, 2.0, 3.0],
        bounds: Some((0.0, 1.0)),
        starts: 3,
        iters: 120,
        ..Default::default()
    };
    let paths = search(&obj, &theta, &coords, &params, &Avoid::default(), &mut |_| {}).unwrap();
    let mut hits = 0;
    for p in &paths {
        let c = &p.points[2].c;
        let weak: f64 = c[..9].iter().map(|x| x * x).sum();
        if weak / 9.0 > 0.95 {
            hits += 1;
        }
    }
    assert!(
        hits >= 2,
        "the weakest module's 9 units should carry the whole damage in most starts"
    );
}

#[test]
fn search_is_the_same_on_any_number_of_threads_and_observed_in_start_order() {
    // The starts run in parallel; their random points come from one seeded
    // stream drawn up front, so 1 and 3 threads must give identical paths
    // (bit for bit), cold starts included (one draw per radius).
    let (model, theta, data) = planted::lookup_modules(3, &[2.0, 3.0, 4.0]);
    let units = unit_groups(model.layout(), "fc1", "fc2").unwrap();
    let coords = Coords::shrink(&theta, &units).unwrap();
    let obj = ModelObjective::new(&model, &data, LogitLoss::CE, 0).unwrap();
    for warm_start in [true, false] {
        let params = SphereParams {
            radii: vec![1.0, 2.0],
            bounds: Some((0.0, 1.0)),
            starts: 4,
            iters: 10,
            warm_start,
            ..Default::default()
        };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut seen = Vec::new();
            let paths = pool.install(|| {
                search(&obj, &theta, &coords, &params, &Avoid::default(), &mut |e| {
                    let Event::Radius { start, point } = e;
                    seen.push((*start, point.radius));
                })
                .unwrap()
            });
            (paths, seen)
        };
        let (one, seen_one) = run(1);
        let (three, seen_three) = run(3);
        assert_eq!(one, three, "warm_start = {warm_start}");
        let expected: Vec<(usize, f64)> = (0..4).flat_map(|s| [(s, 1.0), (s, 2.0)]).collect();
        assert_eq!(seen_one, expected);
        assert_eq!(seen_three, expected);
        // the starts differ from each other (the stream is not reused)
        assert_ne!(one[0].points[0].c, one[1].points[0].c);
    }
}

#[test]
fn enumeration_finds_every_planted_module_once() {
    let (model, theta, data) = planted::lookup_modules(3, &[2.0, 3.0, 4.0]);
    let units = unit_groups(model.layout(), "fc1", "fc2").unwrap();
    let coords = Coords::shrink(&theta, &units).unwrap();
    let obj = ModelObjective::new(&model, &data, LogitLoss::CE, 0).unwrap();
    let params = EnumerateParams {
        search: SphereParams {
            radii: vec![0.5, 1.0, 2.0, 3.0],
            bounds: Some((0.0, 1.0)),
            starts: 2,
            iters: 80,
            ..Default::default()
        },
        max_modules: 3,
        threshold: None,
        max_loss: None,
        cumulative: false,
    };
    let found = enumerate(&obj, &theta, &coords, &params, None, &mut |_, _| {}).unwrap();
    let energy = |c: &[f64], m: usize| c[9 * m..9 * m + 9].iter().map(|x| x * x).sum::<f64>();
    let which: Vec<usize> = found
        .breaks
        .iter()
        .map(|b| {
            (0..3)
                .max_by(|&i, &j| energy(&b.point.c, i).total_cmp(&energy(&b.point.c, j)))
                .unwrap()
        })
        .collect();
    let mut sorted = which.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), which.len(), "a module was reported twice: {which:?}");
    assert_eq!(which.len(), 3, "found {which:?}, stop {:?}", found.stop);
    assert_eq!(which[0], 0, "the weakest module breaks first");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn the_sphere_constraint_holds_to_1e_10(dim in 2usize..8, seed in 0u64..1000, r in 0.1f64..20.0, orth in any::<bool>()) {
        let toy = Toy { a: (0..dim).map(|i| 0.1 + i as f64 * 0.3).collect(), b: (0..dim).map(|i| 1.0 + (i % 3) as f64).collect() };
        let theta0: Vec<f64> = (0..dim).map(|i| 0.1 * (i as f64 + 1.0)).collect();
        let coords = Coords::orthonormal(eye(dim), None).unwrap();
        let params = SphereParams { radii: vec![r / 4.0, r / 2.0, r], seed, starts: 2, gradient_orthogonal: orth, ..Default::default() };
        let paths = search(&toy, &theta0, &coords, &params, &Avoid::default(), &mut |_| {}).unwrap();
        let mut g = vec![0.0; dim];
        toy.value_grad(&theta0, &mut g).unwrap();
        let gn: f64 = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        for p in &paths {
            for q in &p.points {
                let n: f64 = q.c.iter().map(|x| x * x).sum::<f64>().sqrt();
                prop_assert!((n - q.radius).abs() <= 1e-10 * q.radius.max(1.0), "‖c‖ = {n}, r = {}", q.radius);
                if orth {
                    let d: f64 = q.c.iter().zip(&g).map(|(a, b)| a * b).sum();
                    prop_assert!(d.abs() <= 1e-9 * gn * q.radius, "c·g = {d}");
                }
            }
        }
    }

    #[test]
    fn deflation_never_returns_a_direction_in_an_earlier_span(dim in 3usize..7, seed in 0u64..500) {
        let toy = Toy { a: (0..dim).map(|i| 1.0 + i as f64).collect(), b: vec![0.5; dim] };
        let theta0 = vec![0.0; dim];
        let coords = Coords::orthonormal(eye(dim), None).unwrap();
        let params = EnumerateParams {
            search: SphereParams { radii: vec![0.1, 0.3, 1.0], seed, starts: 2, ..Default::default() },
            max_modules: dim,
            threshold: None, // every round gives a break
            max_loss: None,
            cumulative: false,
        };
        let e = enumerate(&toy, &theta0, &coords, &params, None, &mut |_, _| {}).unwrap();
        prop_assert!(!e.breaks.is_empty());
        for (j, b) in e.breaks.iter().enumerate() {
            // residual of c_j after projecting out span(c_0..c_{j-1}) keeps its norm
            let mut v = b.point.c.clone();
            let n0: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let mut basis: Vec<Vec<f64>> = Vec::new();
            for e2 in &e.breaks[..j] {
                let mut u = e2.point.c.clone();
                for w in &basis {
                    let d: f64 = u.iter().zip(w).map(|(a, b)| a * b).sum();
                    u.iter_mut().zip(w).for_each(|(a, b)| *a -= d * b);
                }
                let n: f64 = u.iter().map(|x| x * x).sum::<f64>().sqrt();
                u.iter_mut().for_each(|x| *x /= n);
                basis.push(u);
            }
            for w in &basis {
                let d: f64 = v.iter().zip(w).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(w).for_each(|(a, b)| *a -= d * b);
            }
            let n1: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            prop_assert!(n1 >= (1.0 - 1e-8) * n0, "break {j} has {} of its norm in earlier spans", 1.0 - n1 / n0);
        }
    }
}

#[test]
fn order_parameters_match_hand_computed_cases() {
    assert_eq!(participation_ratio(&[3.0, 0.0, 0.0]), 1.0);
    assert!((participation_ratio(&[1.0, -1.0, 1.0, 1.0]) - 4.0).abs() < 1e-12);
    assert!((participation_ratio(&[1.0, 1.0, 0.0]) - 2.0).abs() < 1e-12);
    assert_eq!(participation_ratio(&[0.0, 0.0]), 0.0);
    // energies 4 and 1 and 0: PR of energies = 25 / 17, top share 0.8
    let c = group_concentration(&[2.0, 0.0, 1.0, 0.0], &[vec![0, 1], vec![2], vec![3]]);
    assert!((c.participation - 25.0 / 17.0).abs() < 1e-12 && (c.top_share - 0.8).abs() < 1e-12);
    // L(r) = 3 r² has second derivative 6 on any grid
    let r = [0.5, 1.0, 2.0, 2.5, 4.0];
    let l: Vec<f64> = r.iter().map(|x| 3.0 * x * x).collect();
    for k in loss_curvature(&r, &l) {
        assert!((k - 6.0).abs() < 1e-9, "{k}");
    }
    // PR 5, 4.8, 1.5, 1.4: the first jump past 30% is at index 2 (radius 3)
    let t = detect_transition(&[1.0, 2.0, 3.0, 4.0], &[5.0, 4.8, 1.5, 1.4], 0.3).unwrap();
    assert_eq!((t.index, t.radius), (2, 3.0));
    assert!((t.change + 3.3 / 4.8).abs() < 1e-12);
    assert!(detect_transition(&[1.0, 2.0], &[5.0, 4.0], 0.3).is_none());
    // a rise counts too, and the first jump wins over a later, larger one
    let t = detect_transition(&[1.0, 2.0, 3.0, 4.0], &[24.0, 24.1, 33.6, 98.0], 0.3).unwrap();
    assert_eq!(t.index, 2);
    assert!((t.change - 9.5 / 24.1).abs() < 1e-12);
}

#[test]
fn logit_losses_match_finite_differences() {
    let z = [0.3, -1.2, 2.0, 0.1, 0.5, 0.8, -0.7, 1.9, 1.0];
    let labels = [2u32, 0, 1];
    for loss in [
        LogitLoss::CE,
        LogitLoss::CrossEntropy { temperature: 4.0 },
        LogitLoss::Margin { margin: 1.5 },
    ] {
        let (_, g) = loss.value_grad(&z, &labels, 3);
        for i in 0..z.len() {
            let (mut zp, mut zm) = (z, z);
            zp[i] += 1e-6;
            zm[i] -= 1e-6;
            let fd = (loss.value_grad(&zp, &labels, 3).0 - loss.value_grad(&zm, &labels, 3).0) / 2e-6;
            assert!((fd - g[i]).abs() < 1e-7, "{loss:?} coordinate {i}: fd {fd} vs {}", g[i]);
        }
    }
}

#[test]
fn model_objective_gradient_matches_finite_differences_and_batches_agree() {
    let (model, mut theta, data) = planted::lookup_modules(3, &[1.0, 0.5]);
    // move off the planted point so that every block has a gradient
    for (i, t) in theta.iter_mut().enumerate() {
        *t += 0.01 * ((i * 7919 % 13) as f64 - 6.0);
    }
    let loss = LogitLoss::CrossEntropy { temperature: 2.0 };
    let full = ModelObjective::new(&model, &data, loss, 0).unwrap();
    let chunked = ModelObjective::new(&model, &data, loss, 4).unwrap();
    let n = model.layout().len();
    let (mut g, mut g2) = (vec![0.0; n], vec![0.0; n]);
    let f = full.value_grad(&theta, &mut g).unwrap();
    let f2 = chunked.value_grad(&theta, &mut g2).unwrap();
    assert!((f - f2).abs() < 1e-12);
    assert!(g.iter().zip(&g2).all(|(a, b)| (a - b).abs() < 1e-12));
    let mut scratch = vec![0.0; n];
    for i in (0..n).step_by(7) {
        let (mut tp, mut tm) = (theta.clone(), theta.clone());
        tp[i] += 1e-6;
        tm[i] -= 1e-6;
        let fd = (full.value_grad(&tp, &mut scratch).unwrap() - full.value_grad(&tm, &mut scratch).unwrap()) / 2e-6;
        assert!((fd - g[i]).abs() < 1e-6, "θ[{i}]: fd {fd} vs {}", g[i]);
    }
}

#[test]
fn bad_input_is_a_typed_error() {
    let toy = Toy {
        a: vec![1.0; 3],
        b: vec![1.0; 3],
    };
    let coords = Coords::orthonormal(eye(3), None).unwrap();
    let run = |p: SphereParams| search(&toy, &[0.0; 3], &coords, &p, &Avoid::default(), &mut |_| {});
    assert!(matches!(
        run(SphereParams {
            radii: vec![2.0, 1.0],
            ..Default::default()
        }),
        Err(SphereError::Param { field: "radii", .. })
    ));
    assert!(matches!(
        run(SphereParams {
            radii: vec![],
            ..Default::default()
        }),
        Err(SphereError::Param { field: "radii", .. })
    ));
    assert!(matches!(
        run(SphereParams {
            bounds: Some((1.0, 0.0)),
            ..Default::default()
        }),
        Err(SphereError::Param { field: "bounds", .. })
    ));
    assert!(matches!(
        run(SphereParams {
            subtract_quadratic: true,
            ..Default::default()
        }),
        Err(SphereError::Param {
            field: "subtract_quadratic",
            ..
        })
    ));
    assert!(matches!(
        search(
            &toy,
            &[0.0; 2],
            &coords,
            &SphereParams::default(),
            &Avoid::default(),
            &mut |_| {}
        ),
        Err(SphereError::Length { .. })
    ));
    assert!(matches!(
        Coords::shrink(&[0.0, 1.0], &[vec![0]]),
        Err(SphereError::Param { field: "groups", .. })
    ));
    assert!(matches!(
        Coords::whitened(eye(2), &[1.0], 1e-3),
        Err(SphereError::Length { .. })
    ));
    // the box [0, 1] admits at most √K: radius 3 on 3 coordinates is infeasible... but reachable
    // radius √3 is the largest; asking for 2 must not loop or panic
    let shrink = Coords::shrink(&[1.0, 1.0, 1.0], &[vec![0], vec![1], vec![2]]).unwrap();
    let r = search(
        &toy,
        &[1.0; 3],
        &shrink,
        &SphereParams {
            radii: vec![2.0],
            bounds: Some((0.0, 1.0)),
            ..Default::default()
        },
        &Avoid::default(),
        &mut |_| {},
    );
    assert!(r.is_ok() || matches!(r, Err(SphereError::Infeasible { .. })));
}

#[test]
fn block_components_delete_singular_components_and_keep_the_energy_share() {
    // fc1.weight of a planted model replaced by W = 3 e₀ f₀ᵀ + 2 e₁ f₁ᵀ + 0.1 e₂ f₂ᵀ
    let (model, mut theta, _) = planted::lookup_modules(3, &[1.0]);
    let b = model.layout().blocks()[0].clone(); // embed [3, 3]
    assert_eq!(b.shape, vec![3, 3]);
    let w = [3.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.1, 0.0];
    theta[b.offset..b.offset + 9].copy_from_slice(&w);
    let c = Coords::block_components(&theta, model.layout(), "embed", 3, 0.9).unwrap();
    assert_eq!(c.dim(), 2, "0.1² is below the 10% left out");
    // c = (1, 0) deletes exactly the largest component
    let d = c.delta(&[1.0, 0.0]);
    let mut expect = vec![0.0; theta.len()];
    expect[b.offset] = -3.0;
    for (x, y) in d.iter().zip(&expect) {
        assert!((x - y).abs() < 1e-12);
    }
    // both: only the 0.1 component is left
    let d = c.delta(&[1.0, 1.0]);
    let left: Vec<f64> = (0..9).map(|i| theta[b.offset + i] + d[b.offset + i]).collect();
    let want = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0];
    assert!(left.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12), "{left:?}");
    assert!(matches!(
        Coords::block_components(&theta, model.layout(), "nope", 3, 0.9),
        Err(SphereError::Param { field: "block", .. })
    ));
    assert!(Coords::block_components(&theta, model.layout(), "embed", 3, 0.0).is_err());
}

#[test]
fn rotated_block_components_follow_the_first_order_costs() {
    // W = 2 e₀f₀ᵀ + 2 e₁f₁ᵀ: two equal singular values, so the principal
    // components are any rotation of (f₀, f₁). With G = −W M the first-order
    // cost matrix is −sym(WᵀG) = 4M, whose eigenvectors in that span are
    // (f₀ ± f₁)/√2: the rotated columns must be −(W v) vᵀ for those v.
    let (model, mut theta, _) = planted::lookup_modules(3, &[1.0]);
    let b = model.layout().blocks()[0].clone(); // embed [3, 3]
    let w = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0];
    theta[b.offset..b.offset + 9].copy_from_slice(&w);
    let m = [1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0];
    let mut grad = vec![0.0; theta.len()];
    for r in 0..3 {
        for j in 0..3 {
            grad[b.offset + r * 3 + j] = -(0..3).map(|i| w[r * 3 + i] * m[i * 3 + j]).sum::<f64>();
        }
    }
    let c = Coords::block_components_rotated(&theta, model.layout(), "embed", 3, 1.0, &grad).unwrap();
    assert_eq!(c.dim(), 2);
    let s = 0.5f64.sqrt();
    let candidates: Vec<Vec<f64>> = [[s, s, 0.0], [s, -s, 0.0]]
        .iter()
        .map(|v| {
            let wv: Vec<f64> = (0..3).map(|r| (0..3).map(|i| w[r * 3 + i] * v[i]).sum()).collect();
            (0..9).map(|k| -wv[k / 3] * v[k % 3]).collect()
        })
        .collect();
    let mut matched = [false; 2];
    for j in 0..2 {
        let mut e = vec![0.0; 2];
        e[j] = 1.0;
        let d = c.delta(&e);
        let blk = &d[b.offset..b.offset + 9];
        let hit = candidates
            .iter()
            .position(|cand| cand.iter().zip(blk).all(|(a, b)| (a - b).abs() < 1e-12))
            .unwrap_or_else(|| panic!("column {j} = {blk:?} is not a decoupled direction"));
        matched[hit] = true;
        assert!(d
            .iter()
            .enumerate()
            .all(|(k, x)| (b.offset..b.offset + 9).contains(&k) || *x == 0.0));
    }
    assert_eq!(matched, [true, true], "both directions appear once");
    assert!(matches!(
        Coords::block_components_rotated(&theta, model.layout(), "embed", 3, 1.0, &grad[1..]),
        Err(SphereError::Length { what: "gradient", .. })
    ));
}

#[test]
fn concentrated_break_takes_the_start_that_stays_within_its_start_longest() {
    let path = |start: usize, ord: &[f64]| StartPath {
        start,
        points: ord
            .iter()
            .enumerate()
            .map(|(i, &o)| RadiusPoint {
                radius: 0.5 * (i + 1) as f64,
                objective: o,
                loss: o,
                c: vec![0.0],
                participation: o,
                grad_norm: 0.0,
                accepted: 0,
            })
            .collect(),
    };
    let order = |p: &RadiusPoint| p.participation;
    // start 0 leaves the band 10·1.3 = 13 at index 3; start 1 at index 1;
    // start 2 has a non-positive first value (skipped)
    let paths = vec![
        path(0, &[10.0, 11.0, 12.5, 20.0]),
        path(1, &[10.0, 14.0, 15.0, 16.0]),
        path(2, &[0.0, 1.0, 1.0, 1.0]),
    ];
    let (s, i, t) = concentrated_break(&paths, &order, 0.3).unwrap();
    assert_eq!((s, i), (0, 2));
    let t = t.unwrap();
    assert_eq!(t.index, 3);
    assert!((t.change - 1.0).abs() < 1e-12);
    // a path that never leaves the band breaks at its last radius, without a transition
    let paths = vec![path(0, &[10.0, 11.0, 12.0])];
    assert_eq!(concentrated_break(&paths, &order, 0.3), Some((0, 2, None)));
    // leaving at the second radius already: the break is the first radius
    let (s, i, t) = concentrated_break(&[path(1, &[10.0, 20.0])], &order, 0.3).unwrap();
    assert_eq!((s, i, t.map(|t| t.index)), (1, 0, Some(1)));
    // a non-positive first value gives no break
    assert_eq!(concentrated_break(&[path(2, &[0.0, 1.0])], &order, 0.3), None);
}

#[test]
fn sharpest_transition_takes_the_largest_relative_jump() {
    let radii = [1.0, 2.0, 3.0, 4.0];
    let t = sharpest_transition(&radii, &[10.0, 14.0, 28.0, 30.0], 0.3).unwrap();
    assert_eq!(t.index, 2);
    assert!((t.change - 1.0).abs() < 1e-12);
    assert_eq!(
        detect_transition(&radii, &[10.0, 14.0, 28.0, 30.0], 0.3).unwrap().index,
        1
    );
    assert!(sharpest_transition(&radii, &[10.0, 11.0, 12.0, 13.0], 0.3).is_none());
}

/// A sinusoid sampled over whole periods has kurtosis 1.5, a constant 1,
/// an equal mix of two frequencies 2.25.
#[test]
fn kurtosis_against_hand_computed_cases() {
    let n = 31;
    let tau = std::f64::consts::TAU;
    let sin: Vec<f64> = (0..n).map(|a| (tau * 3.0 * a as f64 / n as f64 + 0.4).cos()).collect();
    assert!((kurtosis(&sin) - 1.5).abs() < 1e-12);
    assert!((kurtosis(&vec![2.0; n]) - 1.0).abs() < 1e-12);
    let mix: Vec<f64> = (0..n)
        .map(|a| (tau * 3.0 * a as f64 / n as f64).cos() + (tau * 7.0 * a as f64 / n as f64).cos())
        .collect();
    assert!((kurtosis(&mix) - 2.25).abs() < 1e-12);
}

/// Deterministic pseudo-random numbers in [−1, 1).
fn lcg(seed: u64, n: usize) -> Vec<f64> {
    // splitmix64 of the seed first: raw LCG states of consecutive seeds
    // differ by a constant, which makes their vectors nearly dependent
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    s = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    s = (s ^ (s >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    s ^= s >> 31;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Gram–Schmidt.
fn orthonormalize(vs: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    for mut v in vs {
        for u in &out {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.push(v.into_iter().map(|x| x / n).collect());
    }
    out
}

/// An embedding `[p, d]` holding two "modules" of equal strength: the
/// token sinusoids of frequencies 3 and 7, each read through its own two
/// random vectors of ℝ⁶ (not orthogonal to the other module's). The
/// principal components mix the two (equal singular values); the ICA
/// directions must each lie in one frequency's token plane, two per
/// frequency, and deleting the two of frequency 3 must leave frequency 7's
/// part of W exactly.
#[test]
fn ica_components_unmix_modules_of_equal_strength() {
    let (p, d) = (31usize, 6usize);
    let mut layout = gensplit_models::ParamLayout::new();
    layout.push("embed", &[p, d]);
    let tau = std::f64::consts::TAU;
    let wave = |k: f64, sin: bool| -> Vec<f64> {
        (0..p)
            .map(|a| {
                let t = tau * k * a as f64 / p as f64;
                if sin {
                    t.sin()
                } else {
                    t.cos()
                }
            })
            .collect()
    };
    let reads: Vec<Vec<f64>> = (0..4).map(|i| lcg(100 + i, d)).collect();
    let part = |k: usize| -> Vec<f64> {
        let (c, s) = (wave([3.0, 7.0][k], false), wave([3.0, 7.0][k], true));
        let (x, y) = (&reads[2 * k], &reads[2 * k + 1]);
        (0..p * d).map(|i| c[i / d] * x[i % d] + s[i / d] * y[i % d]).collect()
    };
    let (w3, w7) = (part(0), part(1));
    let theta: Vec<f64> = w3.iter().zip(&w7).map(|(a, b)| a + b).collect();
    let c = Coords::block_components_ica(&theta, &layout, "embed", d, 1.0).unwrap();
    assert_eq!(c.dim(), 4, "W has rank 4");
    let planes = [
        orthonormalize(vec![wave(3.0, false), wave(3.0, true)]),
        orthonormalize(vec![wave(7.0, false), wave(7.0, true)]),
    ];
    let mut owner = Vec::new();
    for j in 0..4 {
        let mut e = vec![0.0; 4];
        e[j] = 1.0;
        let delta = c.delta(&e);
        // the move is −q (qᵀW): its column of largest norm is ∝ q
        let col = (0..d)
            .map(|i| (0..p).map(|a| delta[a * d + i]).collect::<Vec<f64>>())
            .max_by(|x, y| {
                let n = |v: &Vec<f64>| v.iter().map(|t| t * t).sum::<f64>();
                n(x).total_cmp(&n(y))
            })
            .unwrap();
        let n2: f64 = col.iter().map(|t| t * t).sum();
        let share: Vec<f64> = planes
            .iter()
            .map(|pl| {
                pl.iter()
                    .map(|u| col.iter().zip(u).map(|(a, b)| a * b).sum::<f64>().powi(2))
                    .sum::<f64>()
                    / n2
            })
            .collect();
        let k = if share[0] > share[1] { 0 } else { 1 };
        assert!(share[k] > 0.999, "direction {j}: shares {share:?}");
        owner.push(k);
    }
    assert_eq!(owner.iter().filter(|&&k| k == 0).count(), 2, "{owner:?}");
    let del: Vec<f64> = owner.iter().map(|&k| if k == 0 { 1.0 } else { 0.0 }).collect();
    let left: Vec<f64> = theta.iter().zip(c.delta(&del)).map(|(a, b)| a + b).collect();
    let err = left.iter().zip(&w7).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-6, "what is left differs from frequency 7's part by {err}");
    // grouped into subspaces: one coordinate per frequency, each deleting
    // exactly that frequency's part of W
    let g = Coords::block_subspaces_ica(&theta, &layout, "embed", d, 1.0, 0.5).unwrap();
    assert_eq!(g.dim(), 2, "two cos/sin pairs");
    let mut seen = Vec::new();
    for j in 0..2 {
        let mut e = vec![0.0; 2];
        e[j] = 1.0;
        let left: Vec<f64> = theta.iter().zip(g.delta(&e)).map(|(a, b)| a + b).collect();
        let dist = |w: &[f64]| left.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let (e3, e7) = (dist(&w7), dist(&w3));
        assert!(
            e3.min(e7) < 1e-6,
            "coordinate {j} deletes no single frequency ({e3}, {e7})"
        );
        seen.push(e3 < e7);
    }
    assert!(seen[0] != seen[1], "the two coordinates delete different frequencies");
    assert!(matches!(
        Coords::block_subspaces_ica(&theta, &layout, "embed", d, 1.0, 0.0),
        Err(SphereError::Param {
            field: "min_dependence",
            ..
        })
    ));
}

/// cos/sin of one frequency have squares summing to a constant (linked);
/// a third frequency's squares are uncorrelated with both (alone); a
/// constant signal links to nothing.
#[test]
fn dependent_groups_link_rotation_invariant_pairs_only() {
    let n = 31;
    let tau = std::f64::consts::TAU;
    let w = |k: f64, ph: f64| -> Vec<f64> { (0..n).map(|a| (tau * k * a as f64 / n as f64 + ph).cos()).collect() };
    let sigs = vec![w(3.0, 0.3), w(5.0, 0.0), w(3.0, 0.3 + tau / 4.0), vec![1.0; n]];
    assert_eq!(dependent_groups(&sigs, 0.5), vec![vec![0, 2], vec![1], vec![3]]);
    assert_eq!(dependent_groups(&sigs[..2], 0.5), vec![vec![0], vec![1]]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// The ICA rotation returns orthonormal vectors spanning the input span.
    #[test]
    fn ica_rotation_is_an_orthogonal_rotation(m in 1usize..5, extra in 1usize..16, seed in 0u64..1000) {
        let n = m + extra;
        let y = orthonormalize((0..m).map(|i| lcg(seed * 31 + i as u64, n)).collect());
        let q = ica_rotation(&y, 20);
        prop_assert_eq!(q.len(), m);
        for i in 0..m {
            for j in 0..m {
                let d: f64 = q[i].iter().zip(&q[j]).map(|(a, b)| a * b).sum();
                prop_assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10, "QᵀQ[{},{}] = {}", i, j, d);
            }
            // q_i lies in span(y): its projection keeps its norm
            let proj: f64 = y.iter().map(|u| u.iter().zip(&q[i]).map(|(a, b)| a * b).sum::<f64>().powi(2)).sum();
            prop_assert!((proj - 1.0).abs() < 1e-10);
        }
    }
}
