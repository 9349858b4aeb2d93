//! Per-block curvature: restricted and off-diagonal products against the
//! rows/columns of the full product and of the dense Hessian, transpose
//! consistency, block selection by name, and typed errors.

use crate::common::*;
use gensplit_eigen::{hutchinson, lanczos, sym_eig, LanczosParams, LinearOperator, NoObserver, Which};
use gensplit_hvp::{dense_hessian, BlockError, BlockOperator, BlockSelection, Curvature, HessianOperator, OffDiagonal};
use gensplit_models::{Cnn, CnnConfig, DataInputs, Dataset, Model};

const CNN_BLOCKS: [&str; 10] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "conv3.weight",
    "conv3.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
];
const MLP_BLOCKS: [&str; 5] = ["embed", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];

/// Small enough for a dense Hessian (542 parameters).
fn dense_cnn() -> Cnn {
    Cnn::new(&CnnConfig {
        channels: [2, 2, 2],
        hidden: 4,
        classes: 10,
    })
    .unwrap()
}

fn sel(m: &impl Model, patterns: &[&str]) -> BlockSelection {
    BlockSelection::new(m.layout(), patterns).unwrap()
}

/// Selections exercised on every model: one block, a glob, a union of
/// non-adjacent blocks, and everything.
fn selections(names: &[&str]) -> Vec<Vec<&'static str>> {
    let first: &'static str = if names[0] == "embed" { "embed" } else { "conv1.weight" };
    vec![vec!["fc2.bias"], vec!["fc2.*"], vec![first, "fc1.bias"], vec!["*"]]
}

#[test]
fn selection_resolves_real_block_names() {
    let (cnn, mlp) = (tiny_cnn(), tiny_mlp());
    let cnn_names: Vec<String> = cnn.layout().blocks().iter().map(|b| b.name.clone()).collect();
    let mlp_names: Vec<String> = mlp.layout().blocks().iter().map(|b| b.name.clone()).collect();
    assert_eq!(cnn_names, CNN_BLOCKS);
    assert_eq!(mlp_names, MLP_BLOCKS);

    let layout = cnn.layout();
    let fc2 = sel(&cnn, &["fc2.*"]);
    assert_eq!(fc2.names(), ["fc2.weight", "fc2.bias"]);
    assert_eq!(fc2.len(), 5 * 10 + 10);
    assert_eq!(fc2.full_len(), layout.len());
    let (w, b) = (layout.find("fc2.weight").unwrap(), layout.find("fc2.bias").unwrap());
    assert_eq!(fc2.ranges(), [w.range(), b.range()]);
    assert_eq!(b.range().end, layout.len());
    // Exact names in any order, duplicates and overlapping globs: the union in θ order.
    let u = sel(&cnn, &["fc1.bias", "conv1.weight", "conv1.*", "conv1.weight"]);
    assert_eq!(u.names(), ["conv1.weight", "conv1.bias", "fc1.bias"]);
    assert_eq!(u.len(), 2 * 9 + 2 + 5);
    let idx: Vec<usize> = u.indices().collect();
    assert_eq!(idx.len(), u.len());
    assert!(idx.windows(2).all(|w| w[0] < w[1]));
    assert!(idx.iter().all(|&i| u.contains(i)));
    assert_eq!(sel(&cnn, &["conv*"]).names(), &CNN_BLOCKS[..6]);
    assert_eq!(BlockSelection::all(layout).unwrap().len(), layout.len());

    // restrict / embed / scatter are E_Aᵀ, E_A and a partial write.
    let v = random_vec(layout.len(), 1);
    let va = u.restrict(&v);
    let full = u.embed(&va);
    for i in 0..layout.len() {
        assert_eq!(full[i], if u.contains(i) { v[i] } else { 0.0 });
    }
    let mut w = vec![7.0; layout.len()];
    u.scatter(&va, &mut w);
    assert!((0..layout.len()).all(|i| w[i] == if u.contains(i) { v[i] } else { 7.0 }));

    // Layers partition θ; their norm shares sum to 1.
    for (m, labels) in [
        (cnn.layout(), vec!["conv1.*", "conv2.*", "conv3.*", "fc1.*", "fc2.*"]),
        (mlp.layout(), vec!["embed", "fc1.*", "fc2.*"]),
    ] {
        let layers = BlockSelection::layers(m);
        assert_eq!(layers.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), labels);
        for (label, s) in &layers {
            assert_eq!(s, &BlockSelection::new(m, &[label]).unwrap(), "{label}");
        }
        assert_eq!(layers.iter().map(|(_, s)| s.len()).sum::<usize>(), m.len());
        let v = random_vec(m.len(), 2);
        let total: f64 = layers.iter().map(|(_, s)| s.norm_share(&v)).sum();
        assert!((total - 1.0).abs() < 1e-12, "shares sum to {total}");
        let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let total32: f64 = layers.iter().map(|(_, s)| s.norm_share(&v32)).sum();
        assert!((total32 - 1.0).abs() < 1e-12);
    }
}

#[test]
fn errors_are_typed_and_list_available_blocks() {
    let (cnn, mlp) = (tiny_cnn(), tiny_mlp());
    let err = BlockSelection::new(cnn.layout(), &["fc2.*", "conv4.weight"]).unwrap_err();
    assert_eq!(
        err,
        BlockError::UnknownBlock {
            pattern: "conv4.weight".into(),
            available: CNN_BLOCKS.iter().map(|s| s.to_string()).collect(),
        }
    );
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("conv4.weight") && msg.contains("conv1.weight, conv1.bias"),
        "{msg}"
    );
    // A glob that matches nothing, and the CNN's names on the MLP.
    assert!(matches!(
        BlockSelection::new(cnn.layout(), &["fc3.*"]),
        Err(BlockError::UnknownBlock { .. })
    ));
    assert!(matches!(
        BlockSelection::new(mlp.layout(), &["conv1.*"]),
        Err(BlockError::UnknownBlock { .. })
    ));
    for bad in ["", "fc*.weight", "**"] {
        assert_eq!(
            BlockSelection::new(cnn.layout(), &[bad]),
            Err(BlockError::InvalidPattern { pattern: bad.into() })
        );
    }
    assert_eq!(
        BlockSelection::new(cnn.layout(), &[] as &[&str]),
        Err(BlockError::EmptySelection)
    );

    let data = modadd_data(7);
    let h = HessianOperator::new(&mlp, mlp.init::<f64>(0), &data, 0, Curvature::Hessian).unwrap();
    assert_eq!(
        h.off_diagonal(&["fc2.*"], &["fc1.*", "fc2.bias"]).unwrap_err(),
        BlockError::Overlap {
            blocks: vec!["fc2.bias".into()]
        }
    );
    assert!(matches!(h.block(&["nope"]), Err(BlockError::UnknownBlock { .. })));
    // A selection from another model's layout does not fit the operator.
    let err = BlockOperator::new(&h, sel(&cnn, &["fc2.*"])).unwrap_err();
    assert_eq!(
        err,
        BlockError::DimensionMismatch {
            layout: cnn.layout().len(),
            operator: mlp.layout().len()
        }
    );
    assert!(OffDiagonal::new(&h, sel(&mlp, &["embed"]), sel(&cnn, &["fc2.*"])).is_err());
}

/// Restricted products against the rows of the full product, and the block
/// decomposition `(H v)_{A_i} = Σ_j H_{A_i A_j} v_{A_j}` over the layers.
fn check_against_full<M: Model>(name: &str, m: &M, data: &Dataset) {
    let layout = m.layout();
    let theta: Vec<f64> = m.init(3);
    let n = theta.len();
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        let h = HessianOperator::new(m, theta.clone(), data, 5, kind).unwrap();
        let block_names: Vec<&str> = layout.blocks().iter().map(|b| b.name.as_str()).collect();
        let mut worst = 0.0f64;
        for (s, patterns) in selections(&block_names).iter().enumerate() {
            let a = sel(m, patterns);
            let op = h.block(patterns).unwrap();
            assert_eq!(op.dim(), a.len());
            let x = random_vec(a.len(), 10 + s as u64);
            let before = h.matvecs();
            let mut y = vec![0.0; a.len()];
            op.apply(&x, &mut y);
            assert_eq!(h.matvecs(), before + 1, "one full product per restricted product");
            // Rows A of the full product with the zero-padded direction.
            let mut full_x = vec![0.0; n];
            for (k, i) in a.indices().enumerate() {
                full_x[i] = x[k];
            }
            let hx = h.hvp(&full_x).unwrap();
            let rows: Vec<f64> = a.indices().map(|i| hx[i]).collect();
            let err = rel_err(&y, &rows);
            worst = worst.max(err);
            assert!(err <= 1e-12, "{name} {kind:?} {patterns:?}: {err:e}");
        }

        // Off-diagonal and diagonal blocks over the layers add up to the full product.
        let layers = BlockSelection::layers(layout);
        let v = random_vec(n, 20);
        let hv = h.hvp(&v).unwrap();
        for (la, a) in &layers {
            let mut sum = vec![0.0; a.len()];
            for (lb, b) in &layers {
                let vb = b.restrict(&v);
                let mut part = vec![0.0; a.len()];
                if la == lb {
                    BlockOperator::new(&h, a.clone()).unwrap().apply(&vb, &mut part);
                } else {
                    let off = OffDiagonal::new(&h, a.clone(), b.clone()).unwrap();
                    assert_eq!(off.shape(), (a.len(), b.len()));
                    off.apply(&vb, &mut part);
                }
                sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
            }
            let err = rel_err(&sum, &a.restrict(&hv));
            worst = worst.max(err);
            assert!(err <= 1e-12, "{name} {kind:?} Σ_B H_{{{la},B}} v_B: {err:e}");
        }
        eprintln!("{name} {kind:?}: restricted vs full product, worst relative error {worst:.3e}");
    }
}

#[test]
fn restricted_products_match_full_product_cnn() {
    check_against_full("cnn", &tiny_cnn(), &image_data(12, 4));
}

#[test]
fn restricted_products_match_full_product_mlp() {
    check_against_full("mlp", &tiny_mlp(), &modadd_data(7));
}

fn check_transpose<M: Model>(name: &str, m: &M, data: &Dataset, a: &[&str], b: &[&str]) {
    let theta: Vec<f64> = m.init(4);
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        let h = HessianOperator::new(m, theta.clone(), data, 0, kind).unwrap();
        let hab = h.off_diagonal(a, b).unwrap();
        let hba = h.off_diagonal(b, a).unwrap();
        let (na, nb) = hab.shape();
        assert_eq!(hba.shape(), (nb, na));
        let (x, y) = (random_vec(na, 30), random_vec(nb, 31));
        let (mut hab_y, mut hba_x) = (vec![0.0; na], vec![0.0; nb]);
        hab.apply(&y, &mut hab_y);
        hba.apply(&x, &mut hba_x);
        let (l, r) = (dot(&x, &hab_y), dot(&y, &hba_x));
        let err = (l - r).abs() / (norm(&x) * norm(&hab_y));
        eprintln!("{name} {kind:?}: xᵀH_AB y = {l:.6e}, yᵀH_BA x = {r:.6e}, rel. diff {err:.3e}");
        assert!(err <= 1e-10, "{name} {kind:?}: {err:e}");
        // apply_transpose is H_BA, bit for bit, and transpose() swaps the roles.
        let mut t = vec![0.0; nb];
        hab.apply_transpose(&x, &mut t);
        assert_eq!(t, hba_x);
        let swapped = hab.transpose();
        assert_eq!(swapped.rows().names(), hba.rows().names());
        let mut t2 = vec![0.0; nb];
        swapped.apply(&x, &mut t2);
        assert_eq!(t2, hba_x);
    }
}

#[test]
fn off_diagonal_blocks_are_transposes() {
    check_transpose(
        "cnn",
        &tiny_cnn(),
        &image_data(10, 5),
        &["conv2.*"],
        &["fc1.weight", "fc2.bias"],
    );
    check_transpose("mlp", &tiny_mlp(), &modadd_data(7), &["embed"], &["fc2.*"]);
}

/// Restricted products, Lanczos on a block and Hutchinson on a block
/// against the dense matrix's submatrices.
fn check_dense<M: Model>(name: &str, m: &M, data: &Dataset, a_pat: &[&str], b_pat: &[&str]) {
    let theta: Vec<f64> = m.init(5);
    let n = theta.len();
    for kind in [Curvature::Hessian, Curvature::GaussNewton] {
        let dense = dense_hessian(m, &theta, data, 0, kind).unwrap();
        let hmax = dense.iter().fold(0.0f64, |x, y| x.max(y.abs()));
        let h = HessianOperator::new(m, theta.clone(), data, 4, kind).unwrap();
        let (a, b) = (sel(m, a_pat), sel(m, b_pat));
        let (ia, ib): (Vec<usize>, Vec<usize>) = (a.indices().collect(), b.indices().collect());
        let sub = |rows: &[usize], cols: &[usize], x: &[f64]| -> Vec<f64> {
            rows.iter()
                .map(|&i| cols.iter().zip(x).map(|(&j, xj)| dense[i * n + j] * xj).sum())
                .collect()
        };
        // H_AA, H_AB and H_ABᵀ products.
        let haa = BlockOperator::new(&h, a.clone()).unwrap();
        let hab = OffDiagonal::new(&h, a.clone(), b.clone()).unwrap();
        let (xa, xb) = (random_vec(a.len(), 40), random_vec(b.len(), 41));
        let mut y = vec![0.0; a.len()];
        haa.apply(&xa, &mut y);
        let e_aa = rel_err(&y, &sub(&ia, &ia, &xa));
        hab.apply(&xb, &mut y);
        let e_ab = rel_err(&y, &sub(&ia, &ib, &xb));
        let mut yb = vec![0.0; b.len()];
        hab.apply_transpose(&xa, &mut yb);
        let e_ba = rel_err(&yb, &sub(&ib, &ia, &xa));
        // Top eigenvalue of H_AA and its trace.
        let block: Vec<f64> = ia
            .iter()
            .flat_map(|&i| ia.iter().map(move |&j| (i, j)))
            .map(|(i, j)| 0.5 * (dense[i * n + j] + dense[j * n + i]))
            .collect();
        let (exact, _) = sym_eig(&block, a.len()).unwrap();
        let exact_top = exact.iter().fold(f64::NEG_INFINITY, |x, &y| x.max(y));
        let params = LanczosParams {
            k: 1,
            which: Which::LargestAlgebraic,
            tol: 1e-10,
            max_matvecs: 500,
            ..Default::default()
        };
        let top = lanczos(&haa, &params, &mut NoObserver).unwrap();
        let e_top = (top.values[0] - exact_top).abs() / exact_top.abs();
        let trace: f64 = ia.iter().map(|&i| dense[i * n + i]).sum();
        let t = hutchinson(&haa, 400, 7).unwrap();
        eprintln!(
            "{name} {kind:?} A = {a_pat:?} ({}), B = {b_pat:?} ({}): rel. errors H_AA {e_aa:.2e}, H_AB {e_ab:.2e}, \
             H_BA {e_ba:.2e}; top eigenvalue {:.6e} vs dense {exact_top:.6e} ({e_top:.1e}, {} matvecs); \
             Hutchinson {:.4e} ± {:.1e} vs trace {trace:.4e} (max |H| {hmax:.2e})",
            a.len(),
            b.len(),
            top.values[0],
            top.matvecs,
            t.estimate,
            t.std_error
        );
        for (what, e) in [("H_AA", e_aa), ("H_AB", e_ab), ("H_BA", e_ba)] {
            assert!(e <= 1e-10, "{name} {kind:?} {what}: {e:e}");
        }
        assert!(e_top <= 1e-8, "{name} {kind:?}: top eigenvalue error {e_top:e}");
        assert!(
            (t.estimate - trace).abs() <= 5.0 * t.std_error,
            "{name} {kind:?}: Hutchinson off"
        );
        if kind == Curvature::GaussNewton {
            assert!(exact.iter().all(|&v| v >= -1e-12 * hmax), "G_AA must be PSD");
        }
    }
}

#[test]
fn blocks_match_dense_hessian_mlp() {
    // A spans two layers, so H_AA ≠ G_AA (see `single_layer_blocks_have_no_residual_term`).
    check_dense(
        "mlp",
        &tiny_mlp(),
        &modadd_data(7),
        &["fc1.weight", "fc2.*"],
        &["embed", "fc1.bias"],
    );
}

#[test]
fn blocks_match_dense_hessian_cnn() {
    let m = dense_cnn();
    assert!(m.layout().len() <= 600, "{} parameters", m.layout().len());
    check_dense(
        "cnn",
        &m,
        &image_data(6, 6),
        &["conv2.*", "fc2.weight"],
        &["conv1.weight", "fc1.*"],
    );
}

/// In a ReLU network the logits are piecewise linear in the parameters of
/// any single layer (weight and bias), so the residual term
/// `(1/N) Σ (s − y) ∇²z` of `H = G + …` vanishes on every layer's diagonal
/// block: `H_AA = G_AA` there, while blocks across layers differ.
fn check_layer_blocks<M: Model>(name: &str, m: &M, data: &Dataset) {
    let theta: Vec<f64> = m.init(6);
    let h = HessianOperator::new(m, theta.clone(), data, 0, Curvature::Hessian).unwrap();
    let g = HessianOperator::new(m, theta, data, 0, Curvature::GaussNewton).unwrap();
    let layers = BlockSelection::layers(m.layout());
    for (i, (label, a)) in layers.iter().enumerate() {
        let x = random_vec(a.len(), 50 + i as u64);
        let (mut hx, mut gx) = (vec![0.0; a.len()], vec![0.0; a.len()]);
        BlockOperator::new(&h, a.clone()).unwrap().apply(&x, &mut hx);
        BlockOperator::new(&g, a.clone()).unwrap().apply(&x, &mut gx);
        let err = rel_err(&hx, &gx);
        eprintln!("{name} {label}: |H_AA x − G_AA x| / |G_AA x| = {err:.2e}");
        assert!(err <= 1e-10, "{name} {label}: {err:e}");
    }
    // Across two layers the residual term shows.
    let (a, b) = (&layers[0].1, &layers[1].1);
    let x = random_vec(b.len(), 60);
    let (mut hx, mut gx) = (vec![0.0; a.len()], vec![0.0; a.len()]);
    OffDiagonal::new(&h, a.clone(), b.clone()).unwrap().apply(&x, &mut hx);
    OffDiagonal::new(&g, a.clone(), b.clone()).unwrap().apply(&x, &mut gx);
    let err = rel_err(&hx, &gx);
    eprintln!(
        "{name} {} × {}: |H_AB x − G_AB x| / |G_AB x| = {err:.2e}",
        layers[0].0, layers[1].0
    );
    assert!(err > 1e-3, "{name}: H_AB and G_AB should differ");
}

#[test]
fn single_layer_blocks_have_no_residual_term() {
    check_layer_blocks("cnn", &tiny_cnn(), &image_data(12, 7));
    check_layer_blocks("mlp", &tiny_mlp(), &modadd_data(7));
}

/// The block products have checked alternatives: a vector of the wrong
/// length is `BlockError::VectorLength` naming the product and argument,
/// and in range they give the unchecked product.
#[test]
fn block_products_check_lengths() {
    let m = tiny_mlp();
    let (a, b): (Vec<u32>, Vec<u32>) = (0..49).map(|i| (i / 7, i % 7)).unzip();
    let labels = a.iter().zip(&b).map(|(x, y)| (x + y) % 7).collect();
    let data = Dataset {
        inputs: DataInputs::Tokens { a, b },
        labels,
    };
    let h = HessianOperator::new(&m, m.init::<f64>(1), &data, 0, Curvature::Hessian).unwrap();
    let blk = h.block(&["fc2.*"]).unwrap();
    let n = blk.dim();
    let x: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
    let (mut y1, mut y2) = (vec![0.0; n], vec![0.0; n]);
    blk.apply(&x, &mut y1);
    blk.try_apply(&x, &mut y2).unwrap();
    assert_eq!(y1, y2);
    match blk.try_apply(&x[1..], &mut y2) {
        Err(BlockError::VectorLength {
            arg: "x",
            expected,
            got,
            ..
        }) => assert_eq!((expected, got), (n, n - 1)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        blk.try_apply(&x, &mut y2[1..]),
        Err(BlockError::VectorLength { arg: "y", .. })
    ));
    let off = h.off_diagonal(&["fc2.*"], &["embed"]).unwrap();
    let (ra, cb) = off.shape();
    let xb = vec![0.5; cb];
    let mut ya = vec![0.0; ra];
    off.try_apply(&xb, &mut ya).unwrap();
    let e = off.try_apply(&xb[1..], &mut ya).unwrap_err();
    assert!(e.to_string().contains("OffDiagonal::apply"), "{e}");
    let mut yb = vec![0.0; cb];
    off.try_apply_transpose(&ya, &mut yb).unwrap();
    assert!(off.try_apply_transpose(&ya, &mut ya.clone()).is_err());
}
