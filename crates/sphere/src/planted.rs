//! Planted test models with known modules.
//!
//! [`lookup_modules`] builds a modular-addition MLP (`gensplit_models::ModMlp`,
//! one-hot embedding) for `(a + b) mod p` out of `M` complete lookup tables.
//! Module f has `p²` hidden units; unit `(f, a, b)` has incoming weights
//! `e_a + e_{p+b}` and bias −1, so `ReLU(·)` is 1 exactly on the pair
//! `(a, b)` and 0 elsewhere, and outgoing weight `v_f` to class `(a+b) mod p`.
//! The logit margin of every pair is `Σ_f v_f`: the modules are redundant
//! votes, and deleting module f costs margin `v_f` on every pair alike.

use gensplit_models::{Dataset, ModMlp, ModMlpConfig, Model};

/// `(model, θ, all p² pairs)` for modules of strengths `votes`.
pub fn lookup_modules(p: usize, votes: &[f64]) -> (ModMlp, Vec<f64>, Dataset) {
    let m = votes.len();
    let h = m * p * p;
    let model = ModMlp::new(&ModMlpConfig { p, embed: p, hidden: h }).expect("planted sizes are valid");
    let mut theta = vec![0.0; model.layout().len()];
    let blocks = model.layout().blocks().to_vec();
    let (e, w1, b1, w2) = (blocks[0].offset, blocks[1].offset, blocks[2].offset, blocks[3].offset);
    for t in 0..p {
        theta[e + t * p + t] = 1.0;
    }
    for (f, &v) in votes.iter().enumerate() {
        for a in 0..p {
            for b in 0..p {
                let j = f * p * p + a * p + b;
                theta[w1 + j * 2 * p + a] = 1.0;
                theta[w1 + j * 2 * p + p + b] = 1.0;
                theta[b1 + j] = -1.0;
                theta[w2 + ((a + b) % p) * h + j] = v;
            }
        }
    }
    let (mut aa, mut bb, mut y) = (Vec::new(), Vec::new(), Vec::new());
    for a in 0..p as u32 {
        for b in 0..p as u32 {
            aa.push(a);
            bb.push(b);
            y.push((a + b) % p as u32);
        }
    }
    let data = Dataset {
        inputs: gensplit_models::DataInputs::Tokens { a: aa, b: bb },
        labels: y,
    };
    (model, theta, data)
}
