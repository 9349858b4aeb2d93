//! Steering on a tiny model with two planted, independent modules.
//!
//! The modular MLP (shared token embedding, one hidden ReLU layer) sees
//! token pairs over 6 symbols plus a BLANK token. Rule A reads the first
//! slot (`(a, BLANK) → a`), rule B the second (`(BLANK, b) → π(b)` for a
//! fixed permutation π); "mixed" pairs `(a, π⁻¹(a)) → a` are explained by
//! both. Trained on all three, the network computes the label through two
//! routes, one per slot: two modules that share only the embedding table
//! and the output layer. Steering must break one route and keep the other.

use gensplit_eigen::{lanczos, LanczosParams, NoObserver, Which};
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::{
    train, AdamWConfig, DataInputs, Dataset, ModMlp, ModMlpConfig, Model, Schedule, TrainConfig, TrainLog,
};
use gensplit_steer::direction::{self, products};
use gensplit_steer::sweep::{self, operating_point, Objective, Rule};
use gensplit_steer::walk::{self, AscentParams};
use gensplit_steer::{independence, Basis};

const SYMBOLS: u32 = 6;
const BLANK: u32 = 6;
const PERM: [u32; 6] = [3, 0, 4, 1, 5, 2];

fn sets() -> (Dataset, Dataset, Dataset) {
    let tok = |a: Vec<u32>, b: Vec<u32>, labels: Vec<u32>| Dataset {
        inputs: DataInputs::Tokens { a, b },
        labels,
    };
    let s: Vec<u32> = (0..SYMBOLS).collect();
    let rule_a = tok(s.clone(), vec![BLANK; 6], s.clone());
    let rule_b = tok(vec![BLANK; 6], s.clone(), s.iter().map(|&b| PERM[b as usize]).collect());
    let inv: Vec<u32> = s
        .iter()
        .map(|&c| PERM.iter().position(|&p| p == c).unwrap() as u32)
        .collect();
    let mixed = tok(s.clone(), inv, s);
    (rule_a, rule_b, mixed)
}

struct Planted {
    model: ModMlp,
    theta: Vec<f32>,
    a: Dataset,
    b: Dataset,
    mixed: Dataset,
}

fn planted() -> Planted {
    let model = ModMlp::new(&ModMlpConfig {
        p: 7,
        embed: 6,
        hidden: 32,
    })
    .unwrap();
    let (a, b, mixed) = sets();
    let all = a.concat(&b).unwrap().concat(&mixed).unwrap();
    let mut theta: Vec<f32> = model.init(5);
    let cfg = TrainConfig {
        steps: 400,
        batch_size: 0,
        optim: AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.01,
            ..Default::default()
        },
        schedule: Schedule::Constant,
        seed: 1,
        eval_every: 400,
        checkpoint_every: 0,
    };
    train(
        &model,
        &mut theta,
        &all,
        &cfg,
        &[],
        &mut TrainLog::default(),
        &mut |_| {},
    )
    .unwrap();
    Planted {
        model,
        theta,
        a,
        b,
        mixed,
    }
}

fn top(p: &Planted, data: &Dataset, k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let th: Vec<f64> = p.theta.iter().map(|&x| x as f64).collect();
    let op = HessianOperator::<_, f64>::new(&p.model, th, data, 0, Curvature::Hessian).unwrap();
    let params = LanczosParams {
        k,
        which: Which::LargestAlgebraic,
        tol: 1e-8,
        ..Default::default()
    };
    let r = lanczos(&op, &params, &mut NoObserver).unwrap();
    (r.values, r.vectors)
}

fn op(p: &Planted, data: &Dataset) -> HessianOperator<'static, ModMlp, f64> {
    // leak the model and data: the operator borrows them for the test's life
    let model: &'static ModMlp = Box::leak(Box::new(p.model.clone()));
    let data: &'static Dataset = Box::leak(Box::new(data.clone()));
    let th: Vec<f64> = p.theta.iter().map(|&x| x as f64).collect();
    HessianOperator::new(model, th, data, 0, Curvature::Hessian).unwrap()
}

#[test]
fn both_routes_are_learned_and_their_curvature_is_nearly_independent() {
    let p = planted();
    let sets = [("a", &p.a), ("b", &p.b), ("mixed", &p.mixed)];
    let base = sweep::evaluate_sets(&p.model, &p.theta, &sets).unwrap();
    assert_eq!(base["a"].acc, 1.0);
    assert_eq!(base["b"].acc, 1.0);
    assert_eq!(base["mixed"].acc, 1.0);
    let n = p.model.layout().len();
    let (la, ua) = top(&p, &p.a, 4);
    let (lb, ub) = top(&p, &p.b, 4);
    let (ba, bb) = (Basis::span(&ua, n).unwrap(), Basis::span(&ub, n).unwrap());
    let overlap = independence::overlap(&ba, &bb).unwrap();
    // the routes share only the embedding and the output layer
    println!("eigenvalues a {la:?}, b {lb:?}; overlap {overlap:.3}");
    assert!(overlap < 0.5, "overlap {overlap}");
    assert!(overlap > independence::expected_random_overlap(n, 4, 4));
    // cross-curvature: B's top directions are much flatter under H_A
    let hab = products(&op(&p, &p.a), &ub).unwrap();
    let c = independence::cross_curvature(&ub, &lb, &hab).unwrap();
    println!("cross-curvature b->a {:.3}", c.mean);
    assert!(c.mean < 0.5, "{c:?}");
}

#[test]
fn steering_breaks_the_planted_route_and_keeps_the_other() {
    let p = planted();
    let n = p.model.layout().len();
    let k = 4;
    let (la, ua) = top(&p, &p.a, k);
    let (lb, ub) = top(&p, &p.b, k);
    let keep = Basis::span(&ua, n).unwrap();
    let sets = [("a", &p.a), ("b", &p.b), ("mixed", &p.mixed)];
    let rule = Rule {
        objective: Objective::MinAcc("b".into()),
        keep: "a".into(),
        base_keep_acc: 1.0,
        max_drop: 0.0,
    };
    let alphas = sweep::symmetric_grid(&[0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]).unwrap();
    // generalized eigenvector of (H_B, H_A + μI) in span(U_B, U_A)
    let (opa, opb) = (op(&p, &p.a), op(&p, &p.b));
    let span: Vec<Vec<f64>> = [ub.clone(), ua.clone()].concat();
    let own = |u: &[Vec<f64>], l: &[f64]| -> Vec<Vec<f64>> {
        u.iter()
            .zip(l)
            .map(|(v, x)| v.iter().map(|y| y * x).collect())
            .collect()
    };
    let ha = [own(&ub, &lb), products(&opb, &ua).unwrap()].concat();
    let hk = [products(&opa, &ub).unwrap(), own(&ua, &la)].concat();
    let g = direction::generalized(&span, &ha, &hk, 1e-3).unwrap();
    let mut best_b = Vec::new();
    for (name, d) in [
        ("unprojected", direction::unprojected(&ub[0]).unwrap()),
        ("seed", direction::seed(&ub[0], &keep).unwrap()),
        ("gen_eig", g.direction.clone()),
    ] {
        let pts = sweep::line(&p.model, &p.theta, &d, &alphas, &sets).unwrap();
        let i = operating_point(&pts, &rule).expect("α = 0 always qualifies");
        println!(
            "{name}: α {} -> a {:.2}, b {:.2}",
            pts[i].alpha,
            pts[i].acc("a"),
            pts[i].acc("b")
        );
        assert_eq!(pts[i].acc("a"), 1.0);
        best_b.push(pts[i].acc("b"));
    }
    // the curvature-aware direction does at least as well as the authors'
    assert!(best_b[2] <= best_b[1], "gen_eig {} vs seed {}", best_b[2], best_b[1]);
    assert!(best_b[2] < 1.0, "gen_eig did not touch route B");
    // and the walk takes B to chance or below
    let (pts, thetas) = walk::curvature_ascent(
        &p.model,
        &p.theta,
        &p.b,
        &opa,
        Some(&keep),
        None,
        &AscentParams {
            steps: 60,
            step_size: 0.1,
            beta: 1.0,
            mu: 1e-3,
            record_every: 2,
            keep_gradient: false,
            restore_tol: 0.0,
            restore_weight: 0.0,
            batch: 0,
            keep_batch: 0,
            seed: 0,
            stop_acc: 0.0,
        },
        &sets,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(pts.len(), thetas.len());
    let i = operating_point(&pts, &rule).unwrap();
    println!(
        "curv_ascent: dist {:.2} -> a {:.2}, b {:.2}",
        pts[i].alpha,
        pts[i].acc("a"),
        pts[i].acc("b")
    );
    assert_eq!(pts[i].acc("a"), 1.0);
    assert!(
        pts[i].acc("b") <= 1.0 / 6.0 + 1e-9,
        "walk kept B at {}",
        pts[i].acc("b")
    );
    // the walk's recorded θ reproduces its recorded evaluation
    let again = sweep::evaluate_sets(&p.model, &thetas[i], &sets).unwrap();
    assert_eq!(again, pts[i].evals);
}

/// The minibatched, keep-gradient-guarded walk (the full preset's
/// `guarded_ascent`): seeded (the same seed gives the same path, bit for
/// bit), it still breaks route B while route A survives, and it stops once
/// the step's ablate samples are at the `stop_acc` level.
#[test]
fn minibatch_walk_is_seeded_breaks_route_b_and_stops_at_chance() {
    let p = planted();
    let n = p.model.layout().len();
    let (_, ua) = top(&p, &p.a, 4);
    let keep = Basis::span(&ua, n).unwrap();
    let opa = op(&p, &p.a);
    let sets = [("a", &p.a), ("b", &p.b), ("mixed", &p.mixed)];
    let params = AscentParams {
        steps: 80,
        step_size: 0.1,
        beta: 1.0,
        mu: 1e-3,
        record_every: 5,
        keep_gradient: true,
        restore_tol: 0.01,
        restore_weight: 1.0,
        batch: 4,
        keep_batch: 3,
        seed: 3,
        stop_acc: 0.2,
    };
    let try_run = |params: &AscentParams| {
        walk::curvature_ascent(
            &p.model,
            &p.theta,
            &p.b,
            &opa,
            Some(&keep),
            Some(&p.a),
            params,
            &sets,
            &mut |_| {},
        )
    };
    let run = |params: &AscentParams| try_run(params).unwrap();
    let (pts, thetas) = run(&params);
    let (pts2, thetas2) = run(&params);
    assert_eq!(pts, pts2, "same seed, same path");
    assert_eq!(thetas, thetas2);
    let last = pts.last().unwrap();
    let stopped_at = last.step.unwrap();
    println!(
        "minibatch walk: stopped at step {stopped_at}, dist {:.2}, a {:.2}, b {:.2}",
        last.alpha,
        last.acc("a"),
        last.acc("b")
    );
    assert!(stopped_at < params.steps, "never reached the stop level");
    let rule = Rule {
        objective: Objective::MinAcc("b".into()),
        keep: "a".into(),
        base_keep_acc: 1.0,
        max_drop: 0.0,
    };
    let i = operating_point(&pts, &rule).unwrap();
    assert_eq!(pts[i].acc("a"), 1.0);
    assert!(pts[i].acc("b") <= 0.5, "walk kept B at {}", pts[i].acc("b"));
    // a stop level of 1 stops before the first step: only θ* is recorded
    let (pts, _) = run(&AscentParams {
        stop_acc: 1.0,
        ..params.clone()
    });
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].step, Some(0));
    // and a stop level outside [0, 1] is a typed error
    let bad = try_run(&AscentParams {
        stop_acc: 1.5,
        ..params.clone()
    });
    assert!(matches!(
        bad,
        Err(gensplit_steer::SteerError::Invalid { field: "stop_acc", .. })
    ));
}

#[test]
fn one_pass_evaluations_equal_the_separate_ones_bit_for_bit() {
    let p = planted();
    let sets = [("a", &p.a), ("b", &p.b), ("mixed", &p.mixed)];
    let n = p.model.layout().len();
    let d: Vec<f64> = (0..n)
        .map(|i| ((i * 7919 % 101) as f64 - 50.0) / 50.0 / (n as f64).sqrt())
        .collect();
    let alphas = sweep::symmetric_grid(&[0.5, 2.0]).unwrap();
    // α = 0 reuses the base evaluation; every other α is computed
    let base = sweep::evaluate_sets(&p.model, &p.theta, &sets).unwrap();
    let plain = sweep::line(&p.model, &p.theta, &d, &alphas, &sets).unwrap();
    let reused = sweep::line_with_base(&p.model, &p.theta, &d, &alphas, &sets, Some(&base)).unwrap();
    assert_eq!(plain, reused);
    // a wrong base shows up at α = 0 only (it is used there, nowhere else)
    let mut fake = base.clone();
    fake.get_mut("a").unwrap().acc = -1.0;
    let faked = sweep::line_with_base(&p.model, &p.theta, &d, &alphas, &sets, Some(&fake)).unwrap();
    for (x, y) in plain.iter().zip(&faked) {
        assert_eq!(x.alpha == 0.0, x != y, "α = {}", x.alpha);
    }
    // a base without one of the sets is not used
    let partial: std::collections::BTreeMap<_, _> = fake.into_iter().filter(|(k, _)| k != "b").collect();
    let unused = sweep::line_with_base(&p.model, &p.theta, &d, &alphas, &sets, Some(&partial)).unwrap();
    assert_eq!(plain, unused);
    // evaluation and KL from one pass equal the two separate passes
    let reference = sweep::logits(&p.model, &p.theta, &p.a).unwrap();
    assert_eq!(reference.len(), p.a.len() * p.model.classes());
    assert_eq!(
        sweep::evaluate_from_logits(&reference, &p.a, p.model.classes()).unwrap(),
        base["a"]
    );
    for alpha in [0.0, 0.5, 2.0] {
        let th = sweep::offset(&p.theta, &d, alpha).unwrap();
        let (e, kl) = sweep::evaluate_with_kl(&p.model, &th, &p.a, &reference).unwrap();
        assert_eq!(e, sweep::evaluate_sets(&p.model, &th, &[("a", &p.a)]).unwrap()["a"]);
        assert_eq!(kl, sweep::kl_from(&p.model, &p.theta, &th, &p.a).unwrap());
        assert_eq!(kl == 0.0, alpha == 0.0, "KL {kl} at α = {alpha}");
    }
    let err = sweep::evaluate_with_kl(&p.model, &p.theta, &p.a, &reference[1..]).unwrap_err();
    assert!(err.to_string().contains("reference logits"), "{err}");
}
