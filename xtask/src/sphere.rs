//! The `sphere_*` stages: the unsupervised sphere search (`gensplit-sphere`)
//! on the modular-addition MLP, scored against its Fourier ground truth,
//! over a table of formulations.
//!
//! **What the search sees.** Only θ, the training pairs and their training
//! loss (and, for eigen-spaces, the loss's curvature). **What the scoring
//! sees** (never fed back): the key frequencies of the trained embedding and,
//! for every key frequency k, the share of the logits' Fourier signal along
//! `a + b − c` at k that survives the move,
//! `s_k(θ) = ⟨S_k(θ), S_k(θ*)⟩ / ‖S_k(θ*)‖²` with
//! `S_k(θ) = Σ_{a,b,c} z̃_{ab}(c) (cos, sin)(2πk(a+b−c)/p)` over all p² pairs
//! and row-centred logits z̃. A **single break** is a move where one key
//! frequency keeps ≤ 20% and every other keeps ≥ 80%.
//!
//! **Order parameter.** The participation ratio, over the hidden units, of
//! the change of each unit's contribution to the logits: with
//! `C_j(x) = W₂[:, j] h_j(x)`, `e_j = Σ_x ‖C_j(x; θ) − C_j(x; θ*)‖²` over the
//! training inputs and `PR = (Σ e_j)² / Σ e_j²`. It reads no labels and no
//! frequencies, and sees every kind of move (embedding, first layer, second
//! layer). A move that deletes one Fourier module changes only that
//! module's units, so the ratio drops to about the module's size.
//! The transition is its first relative jump (rise or drop) between consecutive radii
//! above `threshold`.
//!
//! Why most formulations fail, and what works, is in the report and in
//! `gensplit-sphere`'s docs; the table records every formulation tried.

use crate::config::ModAddRecipe;
use crate::stages::ModAddResult;
use anyhow::{Context, Result};
use gensplit_eigen::{lanczos, LanczosParams, Which};
use gensplit_hvp::{Curvature, HessianOperator};
use gensplit_models::{evaluate_logits, Dataset, Inputs, Model};
use gensplit_sphere::{
    detect_transition, enumerate, search, unit_groups, Avoid, Coords, EnumerateParams, LogitLoss, ModelObjective,
    RadiusPoint, SphereParams, Transition,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which checkpoint a formulation searches around.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Checkpoint {
    /// The final, saturated minimum.
    Final,
    /// The first stored checkpoint at or after test accuracy reached 99%
    /// (right after grokking; the loss is not yet saturated).
    Grokked,
}

/// The search space of a formulation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// Top-k Hessian eigenvectors (orthonormal; radius in θ units).
    HessianTop {
        /// k.
        k: usize,
    },
    /// Hessian eigenvectors `skip .. skip + k` (the authors' later slice).
    HessianSlice {
        /// Eigenvectors dropped from the top.
        skip: usize,
        /// Eigenvectors kept.
        k: usize,
    },
    /// Top-k Gauss–Newton eigenvectors (the function-space metric).
    GaussNewtonTop {
        /// k.
        k: usize,
    },
    /// Shrink coordinates over the hidden units, box `[0, 1]` (radius = √
    /// number of units deleted).
    Units,
    /// Shrink coordinates over the principal components of the token
    /// embedding that hold `energy` of its squared norm (at most k), box
    /// `[0, 1]` (radius = √ number of components deleted).
    EmbeddingComponents {
        /// k.
        k: usize,
        /// Share of ‖E‖²_F the components must hold.
        energy: f64,
    },
    /// The same span, with the directions rotated to decouple the searched
    /// loss's first-order shrink costs (`Coords::block_components_rotated`).
    EmbeddingComponentsRotated {
        /// k.
        k: usize,
        /// Share of ‖E‖²_F the components must hold.
        energy: f64,
    },
    /// The same span, deleting along token-space directions unmixed by
    /// independent component analysis (`Coords::block_components_ica`).
    EmbeddingComponentsIca {
        /// k.
        k: usize,
        /// Share of ‖E‖²_F the components must hold.
        energy: f64,
    },
    /// Those directions grouped into dependent subspaces, one coordinate
    /// per group (`Coords::block_subspaces_ica`).
    EmbeddingSubspacesIca {
        /// k.
        k: usize,
        /// Share of ‖E‖²_F the components must hold.
        energy: f64,
        /// Smallest |corr(qᵢ², qⱼ²)| that puts two directions in one group.
        min_dependence: f64,
    },
}

/// One formulation of the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Formulation {
    /// Name (a `summary.json` key).
    pub name: String,
    /// Where.
    pub checkpoint: Checkpoint,
    /// In which space.
    pub space: Space,
    /// Which loss.
    pub loss: LogitLoss,
    /// Minimise the loss minus its quadratic model.
    pub subtract_quadratic: bool,
    /// Keep the move orthogonal to the gradient.
    pub gradient_orthogonal: bool,
    /// Drop eigen-directions with negative eigenvalues.
    pub positive_only: bool,
    /// A fresh random start at every radius instead of a warm start.
    pub cold_starts: bool,
}

/// Settings of the modular-addition sphere stages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SphereConfig {
    /// Random starts per formulation.
    pub starts: usize,
    /// Seed of the starts.
    pub seed: u64,
    /// Objective evaluations per radius.
    pub iters: usize,
    /// Radii for eigen-spaces (θ units).
    pub eigen_radii: Vec<f64>,
    /// Radii for unit shrink coordinates (√ units deleted).
    pub unit_radii: Vec<f64>,
    /// Radii for embedding-component shrink coordinates.
    pub component_radii: Vec<f64>,
    /// Relative drop of the order parameter that flags a transition.
    pub threshold: f64,
    /// Starts and evaluations per radius of the formulations outside
    /// `full_budget` (the record of what fails runs on a smaller budget).
    pub reduced_starts: usize,
    /// See `reduced_starts`.
    pub reduced_iters: usize,
    /// Formulations (by name) that run with `starts` and `iters`.
    pub full_budget: Vec<String>,
    /// The formulation the enumeration uses (by name; its search space and
    /// loss). `None`: the one with the most single breaks.
    pub enumerate_formulation: Option<String>,
    /// Radii of the enumeration's rounds (a finer grid around √2, where a
    /// two-component module is deleted).
    pub enumerate_radii: Vec<f64>,
    /// Evaluations per radius in the enumeration.
    pub enumerate_iters: usize,
    /// Lanczos matvec budget for the eigen-spaces computed here.
    pub max_matvecs: usize,
    /// Largest number of breaks the enumeration looks for.
    pub enumerate_max: usize,
    /// Stop the enumeration when a break's searched loss exceeds its value
    /// at θ* by this much.
    pub enumerate_max_loss: f64,
    /// Each enumeration round compares the order parameter with its value
    /// at the first radius (`EnumerateParams::cumulative`).
    pub enumerate_cumulative: bool,
    /// Relative change of the order parameter that ends a round's
    /// concentrated stretch in the enumeration (the formulation table
    /// keeps `threshold` for its transitions).
    pub enumerate_threshold: f64,
    /// The formulations, in table order.
    pub formulations: Vec<Formulation>,
    /// The formulations (by name) run on the second network; empty = all.
    /// The full table is explored on the first network; the second checks
    /// that what worked there is not tuned to one network.
    pub second_network: Vec<String>,
}

impl SphereConfig {
    /// The full table.
    pub fn full() -> Self {
        let ce = LogitLoss::CE;
        let f = |name: &str, checkpoint, space, loss, sub, orth, pos| Formulation {
            name: name.into(),
            checkpoint,
            space,
            loss,
            subtract_quadratic: sub,
            gradient_orthogonal: orth,
            positive_only: pos,
            cold_starts: false,
        };
        use Checkpoint::{Final, Grokked};
        let top = Space::HessianTop { k: 20 };
        Self {
            starts: 5,
            seed: 11,
            iters: 30,
            eigen_radii: vec![1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0],
            unit_radii: vec![0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
            component_radii: vec![0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5],
            threshold: 0.3,
            reduced_starts: 3,
            reduced_iters: 12,
            full_budget: vec![
                "final_embedding_components_shrink".into(),
                "final_embedding_subspaces_ica_shrink_t32".into(),
            ],
            enumerate_formulation: Some("final_embedding_subspaces_ica_shrink_t32".into()),
            // one coordinate per module: the break is at r = 1, and the
            // order parameter jumps at the next radius
            enumerate_radii: vec![0.5, 0.75, 1.0, 1.25, 1.5],
            enumerate_iters: 20,
            max_matvecs: 120,
            enumerate_max: 7,
            enumerate_max_loss: 1.0,
            enumerate_cumulative: true,
            enumerate_threshold: 0.1,
            second_network: vec![
                "final_hessian_top20".into(),
                "final_gauss_newton_top20".into(),
                "final_units_shrink".into(),
                "final_embedding_components_shrink".into(),
                "final_embedding_components_rotated_shrink_t32".into(),
                "final_embedding_components_ica_shrink_t32".into(),
                "final_embedding_subspaces_ica_shrink_t32".into(),
            ],
            formulations: vec![
                f("final_hessian_top20", Final, top, ce, false, false, false),
                f(
                    "final_hessian_top20_minus_quadratic",
                    Final,
                    top,
                    ce,
                    true,
                    false,
                    false,
                ),
                f(
                    "final_hessian_slice10_20_minus_quadratic",
                    Final,
                    Space::HessianSlice { skip: 10, k: 10 },
                    ce,
                    true,
                    false,
                    false,
                ),
                f(
                    "final_gauss_newton_top20",
                    Final,
                    Space::GaussNewtonTop { k: 20 },
                    ce,
                    false,
                    true,
                    false,
                ),
                f(
                    "final_hessian_top20_tempered_t8",
                    Final,
                    top,
                    LogitLoss::CrossEntropy { temperature: 8.0 },
                    false,
                    false,
                    false,
                ),
                f(
                    "final_hessian_top20_margin_k5",
                    Final,
                    top,
                    LogitLoss::Margin { margin: 5.0 },
                    false,
                    false,
                    false,
                ),
                f("grokked_hessian_top20", Grokked, top, ce, false, false, false),
                f(
                    "grokked_hessian_top20_gradorth_positive",
                    Grokked,
                    top,
                    ce,
                    false,
                    true,
                    true,
                ),
                f("final_units_shrink", Final, Space::Units, ce, false, false, false),
                f("grokked_units_shrink", Grokked, Space::Units, ce, false, false, false),
                f(
                    "final_embedding_components_shrink",
                    Final,
                    Space::EmbeddingComponents { k: 16, energy: 0.9 },
                    ce,
                    false,
                    false,
                    false,
                ),
                f(
                    "final_embedding_components_rotated_shrink_t32",
                    Final,
                    Space::EmbeddingComponentsRotated { k: 16, energy: 0.9 },
                    LogitLoss::CrossEntropy { temperature: 32.0 },
                    false,
                    false,
                    false,
                ),
                f(
                    "final_embedding_components_ica_shrink",
                    Final,
                    Space::EmbeddingComponentsIca { k: 16, energy: 0.9 },
                    ce,
                    false,
                    false,
                    false,
                ),
                f(
                    "final_embedding_subspaces_ica_shrink",
                    Final,
                    Space::EmbeddingSubspacesIca {
                        k: 16,
                        energy: 0.9,
                        min_dependence: 0.5,
                    },
                    ce,
                    false,
                    false,
                    false,
                ),
                f(
                    "final_embedding_subspaces_ica_shrink_t32",
                    Final,
                    Space::EmbeddingSubspacesIca {
                        k: 16,
                        energy: 0.9,
                        min_dependence: 0.5,
                    },
                    LogitLoss::CrossEntropy { temperature: 32.0 },
                    false,
                    false,
                    false,
                ),
                f(
                    "final_embedding_components_ica_shrink_t32",
                    Final,
                    Space::EmbeddingComponentsIca { k: 16, energy: 0.9 },
                    LogitLoss::CrossEntropy { temperature: 32.0 },
                    false,
                    false,
                    false,
                ),
                Formulation {
                    cold_starts: true,
                    ..f(
                        "final_embedding_components_shrink_cold",
                        Final,
                        Space::EmbeddingComponents { k: 16, energy: 0.9 },
                        ce,
                        false,
                        false,
                        false,
                    )
                },
            ],
        }
    }
    /// `--quick`: three starts, fewer radii and steps, six formulations.
    pub fn quick() -> Self {
        let mut c = Self::full();
        c.starts = 3;
        c.iters = 12;
        c.eigen_radii = vec![1.0, 4.0, 8.0, 12.0];
        c.unit_radii = vec![0.5, 1.0, 2.0, 3.0];
        c.component_radii = vec![0.5, 1.0, 1.5];
        c.max_matvecs = 60;
        c.enumerate_max = 3;
        c.reduced_starts = 2;
        c.reduced_iters = 8;
        c.enumerate_radii = vec![0.5, 1.0, 1.25];
        c.enumerate_iters = 12;
        c.second_network.retain(|n| {
            matches!(
                n.as_str(),
                "final_hessian_top20"
                    | "final_units_shrink"
                    | "final_embedding_components_shrink"
                    | "final_embedding_subspaces_ica_shrink_t32"
            )
        });
        c.formulations.retain(|f| {
            matches!(
                f.name.as_str(),
                "final_hessian_top20"
                    | "grokked_hessian_top20"
                    | "final_units_shrink"
                    | "final_gauss_newton_top20"
                    | "final_embedding_components_shrink"
                    | "final_embedding_subspaces_ica_shrink_t32"
            )
        });
        for f in &mut c.formulations {
            if let Space::HessianTop { k } | Space::GaussNewtonTop { k } = &mut f.space {
                *k = 5;
            }
        }
        c
    }
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.starts >= 1, "sphere.starts must be at least 1");
        anyhow::ensure!(self.iters >= 1, "sphere.iters must be at least 1");
        anyhow::ensure!(!self.formulations.is_empty(), "sphere.formulations is empty");
        for n in &self.second_network {
            anyhow::ensure!(
                self.formulations.iter().any(|f| &f.name == n),
                "sphere.second_network names `{n}`, which is not in sphere.formulations"
            );
        }
        anyhow::ensure!(
            self.reduced_starts >= 1 && self.reduced_iters >= 1 && self.enumerate_iters >= 1,
            "sphere.reduced_starts, reduced_iters and enumerate_iters must be at least 1"
        );
        for n in self.full_budget.iter().chain(&self.enumerate_formulation) {
            anyhow::ensure!(
                self.formulations.iter().any(|f| &f.name == n),
                "sphere names formulation `{n}`, which is not in sphere.formulations"
            );
        }
        for (field, t) in [
            ("threshold", self.threshold),
            ("enumerate_threshold", self.enumerate_threshold),
        ] {
            anyhow::ensure!(
                t.is_finite() && t > 0.0,
                "sphere.{field} must be a positive number, got {t}"
            );
        }
        for (field, r) in [
            ("enumerate_radii", &self.enumerate_radii),
            ("eigen_radii", &self.eigen_radii),
            ("unit_radii", &self.unit_radii),
            ("component_radii", &self.component_radii),
        ] {
            anyhow::ensure!(
                !r.is_empty() && r.iter().all(|x| x.is_finite() && *x > 0.0) && r.windows(2).all(|w| w[1] > w[0]),
                "sphere.{field} must be positive and strictly increasing, got {r:?}"
            );
        }
        Ok(())
    }
}

/// One start of one formulation, scored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartRun {
    /// Radii.
    pub radii: Vec<f64>,
    /// Training loss (plain CE) at each radius.
    pub loss: Vec<f64>,
    /// The minimised objective at each radius.
    pub objective: Vec<f64>,
    /// Order parameter: participation ratio over hidden units of δ.
    pub unit_pr: Vec<f64>,
    /// Test accuracy (scoring only) at each radius.
    pub test_acc: Vec<f64>,
    /// Survival of each key frequency (rows: radii; columns: key frequencies).
    pub survival: Vec<Vec<f64>>,
    /// The label-free transition, if flagged.
    pub transition: Option<Transition>,
    /// First radius index with a single break.
    pub break_index: Option<usize>,
    /// The broken key frequency there.
    pub broken: Option<usize>,
}

/// One formulation's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FormulationRun {
    /// The formulation.
    pub formulation: Formulation,
    /// Training step of the searched θ.
    pub step: usize,
    /// Training loss there.
    pub loss0: f64,
    /// Eigenvalues of the space (empty for unit coordinates).
    pub eigenvalues: Vec<f64>,
    /// Per start.
    pub starts: Vec<StartRun>,
    /// Starts with a single break.
    pub single_breaks: usize,
    /// Distinct broken key frequencies (ascending).
    pub broken_frequencies: Vec<usize>,
    /// Starts whose transition is within one radius step of their break.
    pub flagged_within_one: usize,
    /// Median transition radius over the starts that flag one.
    pub transition_radius: Option<f64>,
    /// Objective evaluations used (a deterministic cost measure).
    pub evaluations: usize,
}

/// One break of the enumeration, scored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnumBreak {
    /// Radius of the break.
    pub radius: f64,
    /// Training loss there.
    pub loss: f64,
    /// Survival of each key frequency.
    pub survival: Vec<f64>,
    /// Embedding power of each key frequency relative to θ*.
    pub embed_power: Vec<f64>,
    /// The broken key frequency, when it is a single break.
    pub broken: Option<usize>,
}

/// The result of one `sphere_modadd*` stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SphereResult {
    /// `modadd` or `modadd_seed2`.
    pub label: String,
    /// Key frequencies of the trained embedding (scoring only).
    pub key_frequencies: Vec<usize>,
    /// Excluded loss per key frequency at θ* (training CE with that
    /// frequency's a+b−c component removed from the logits).
    pub excluded_loss: Vec<f64>,
    /// Step of the grokked checkpoint.
    pub grokked_step: usize,
    /// Every formulation.
    pub formulations: Vec<FormulationRun>,
    /// The formulation with the most single breaks (first on ties).
    pub best: Option<String>,
    /// The formulation the enumeration used (`enumerate_formulation`, else
    /// `best`).
    #[serde(default)]
    pub enumeration_formulation: Option<String>,
    /// The enumeration's breaks.
    pub enumeration: Vec<EnumBreak>,
    /// Why the enumeration stopped.
    pub enumeration_stop: String,
    /// Distinct key frequencies broken by the enumeration / key frequencies.
    pub recall: f64,
    /// Some key frequency was reported twice by the enumeration.
    pub duplicate: bool,
}

/// Fourier ground truth of the modular MLP (scoring only).
struct Truth {
    p: usize,
    keys: Vec<usize>,
    /// All p² pairs.
    a: Vec<u32>,
    b: Vec<u32>,
    /// Reference signal (cos, sin) per key.
    reference: Vec<(f64, f64)>,
    power0: Vec<f64>,
}

impl Truth {
    fn new(model: &gensplit_models::AnyModel, theta: &[f64], p: usize, keys: &[usize]) -> Result<Self> {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for x in 0..p as u32 {
            for y in 0..p as u32 {
                a.push(x);
                b.push(y);
            }
        }
        let mut t = Self {
            p,
            keys: keys.to_vec(),
            a,
            b,
            reference: Vec::new(),
            power0: Vec::new(),
        };
        t.reference = t.signal(model, theta)?;
        t.power0 = t.power(model, theta);
        Ok(t)
    }
    fn signal(&self, model: &gensplit_models::AnyModel, theta: &[f64]) -> Result<Vec<(f64, f64)>> {
        let p = self.p;
        let z = evaluate_logits(model, theta, &Inputs::Tokens { a: &self.a, b: &self.b })?;
        let (cos, sin): (Vec<f64>, Vec<f64>) = (0..p)
            .map(|m| {
                let w = 2.0 * std::f64::consts::PI * m as f64 / p as f64;
                (w.cos(), w.sin())
            })
            .unzip();
        let mut out = vec![(0.0, 0.0); self.keys.len()];
        for (i, row) in z.chunks(p).enumerate() {
            let (x, y) = (self.a[i] as usize, self.b[i] as usize);
            let mean = row.iter().sum::<f64>() / p as f64;
            for (c, &v) in row.iter().enumerate() {
                let v = v - mean;
                for (o, &k) in out.iter_mut().zip(&self.keys) {
                    let m = (k * ((x + y + p - c) % p)) % p;
                    o.0 += v * cos[m];
                    o.1 += v * sin[m];
                }
            }
        }
        Ok(out)
    }
    fn survival(&self, model: &gensplit_models::AnyModel, theta: &[f64]) -> Result<Vec<f64>> {
        let s = self.signal(model, theta)?;
        Ok(s.iter()
            .zip(&self.reference)
            .map(|(a, r)| (a.0 * r.0 + a.1 * r.1) / (r.0 * r.0 + r.1 * r.1).max(f64::MIN_POSITIVE))
            .collect())
    }
    fn power(&self, model: &gensplit_models::AnyModel, theta: &[f64]) -> Vec<f64> {
        let gensplit_models::AnyModel::ModMlp(m) = model else {
            return Vec::new();
        };
        let s = gensplit_models::fourier::Spectrum::of_embedding(m, theta);
        self.keys.iter().map(|&k| s.power[k - 1]).collect()
    }
    /// Training CE with frequency k's a+b−c component projected out of the
    /// (row-centred) logits, restricted to the training pairs.
    fn excluded_loss(&self, model: &gensplit_models::AnyModel, theta: &[f64], train: &Dataset) -> Result<Vec<f64>> {
        let p = self.p;
        let gensplit_models::DataInputs::Tokens { a, b } = &train.inputs else {
            anyhow::bail!("modadd training data are not token pairs");
        };
        let z = evaluate_logits(model, theta, &Inputs::Tokens { a, b })?;
        let norm = (p * p * p) as f64 / 2.0; // Σ cos² over all (a, b, c)
        let mut out = Vec::new();
        for (ki, &k) in self.keys.iter().enumerate() {
            // the full-grid signal of θ itself
            let (sc, ss) = self.reference[ki];
            let mut zz = z.clone();
            for (i, row) in zz.chunks_mut(p).enumerate() {
                let (x, y) = (a[i] as usize, b[i] as usize);
                for (c, v) in row.iter_mut().enumerate() {
                    let w = 2.0 * std::f64::consts::PI * ((k * ((x + y + p - c) % p)) % p) as f64 / p as f64;
                    *v -= (sc * w.cos() + ss * w.sin()) / norm;
                }
            }
            let (l, _) = gensplit_models::ops::ce_and_correct(&zz, &train.labels, p);
            out.push(l);
        }
        Ok(out)
    }
    /// `Some(k)` when exactly one key frequency keeps ≤ 20% and all others ≥ 80%.
    fn single_break(&self, s: &[f64]) -> Option<usize> {
        let low: Vec<usize> = (0..s.len()).filter(|&i| s[i] <= 0.2).collect();
        (low.len() == 1 && (0..s.len()).all(|i| i == low[0] || s[i] >= 0.8)).then(|| self.keys[low[0]])
    }
}

/// Eigenvalues and eigenvectors of one curvature matrix.
type Eigs = (Vec<f64>, Vec<Vec<f64>>);

/// The order parameter (module docs) for the modular MLP.
fn unit_change_pr(model: &gensplit_models::AnyModel, th0: &[f64], th: &[f64], a: &[u32], b: &[u32]) -> f64 {
    let gensplit_models::AnyModel::ModMlp(m) = model else {
        return f64::NAN;
    };
    let (p, d, h) = (m.config().p, m.config().embed, m.config().hidden);
    let bl = m.layout().blocks();
    let (oe, ow1, ob1, ow2) = (bl[0].offset, bl[1].offset, bl[2].offset, bl[3].offset);
    let hidden = |t: &[f64], x: u32, y: u32, out: &mut [f64]| {
        for (j, o) in out.iter_mut().enumerate() {
            let w = &t[ow1 + j * 2 * d..ow1 + (j + 1) * 2 * d];
            let ea = &t[oe + x as usize * d..oe + (x as usize + 1) * d];
            let eb = &t[oe + y as usize * d..oe + (y as usize + 1) * d];
            let mut v = t[ob1 + j];
            for i in 0..d {
                v += w[i] * ea[i] + w[d + i] * eb[i];
            }
            *o = v.max(0.0);
        }
    };
    // per unit: ‖W₂'ⱼ‖², ‖W₂ⱼ‖², W₂'ⱼ·W₂ⱼ
    let mut n1 = vec![0.0; h];
    let mut n0 = vec![0.0; h];
    let mut x01 = vec![0.0; h];
    for c in 0..p {
        for j in 0..h {
            let (u, v) = (th[ow2 + c * h + j], th0[ow2 + c * h + j]);
            n1[j] += u * u;
            n0[j] += v * v;
            x01[j] += u * v;
        }
    }
    let (mut h1, mut h0) = (vec![0.0; h], vec![0.0; h]);
    let mut e = vec![0.0; h];
    for (&x, &y) in a.iter().zip(b) {
        hidden(th, x, y, &mut h1);
        hidden(th0, x, y, &mut h0);
        for j in 0..h {
            e[j] += n1[j] * h1[j] * h1[j] + n0[j] * h0[j] * h0[j] - 2.0 * x01[j] * h1[j] * h0[j];
        }
    }
    let e: Vec<f64> = e.into_iter().map(|v| v.max(0.0).sqrt()).collect();
    gensplit_sphere::participation_ratio(&e)
}

fn top_eigs(
    model: &gensplit_models::AnyModel,
    theta: &[f64],
    data: &Dataset,
    curvature: Curvature,
    k: usize,
    max_matvecs: usize,
    seed: u64,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let op = HessianOperator::<_, f64>::new(model, theta.to_vec(), data, 0, curvature)?;
    let params = LanczosParams {
        k: k.min(model.layout().len()),
        which: Which::LargestAlgebraic,
        tol: 1e-6,
        max_matvecs,
        seed,
        ..Default::default()
    };
    let eig = lanczos(&op, &params, &mut |_: &gensplit_eigen::StepInfo<'_>| {})
        .context("Lanczos for the sphere search space")?;
    tracing::info!(?curvature, matvecs = eig.matvecs, stop = ?eig.stop, "sphere: eigen-space");
    Ok((eig.values, eig.vectors))
}

/// Runs every formulation, then the enumeration with the best one.
pub fn run(
    label: &str,
    recipe: &ModAddRecipe,
    modadd: &ModAddResult,
    cfg: &SphereConfig,
    second: bool,
) -> Result<SphereResult> {
    cfg.validate()?;
    let mut cfg = cfg.clone();
    if second && !cfg.second_network.is_empty() {
        let keep = cfg.second_network.clone();
        cfg.formulations.retain(|f| keep.contains(&f.name));
    }
    let cfg = &cfg;
    let data = gensplit_data::modular::generate(&recipe.data)?;
    let (train, test) = (Dataset::from_modadd(&data.train), Dataset::from_modadd(&data.test));
    let model = &modadd.trained.model;
    let p = recipe.model.p;
    let theta_final: Vec<f64> = modadd.trained.theta.iter().map(|&x| x as f64).collect();
    let final_step = modadd.trained.log.steps;
    let (grokked_step, theta_grok) = {
        let after = modadd.step_test_99.unwrap_or(final_step);
        match modadd.trained.log.checkpoints.iter().find(|(s, _)| *s >= after) {
            Some((s, th)) => (*s, th.iter().map(|&x| x as f64).collect::<Vec<f64>>()),
            None => (final_step, theta_final.clone()),
        }
    };
    let keys = modadd.key_frequencies.clone();
    let truth = Truth::new(model, &theta_final, p, &keys)?;
    let excluded_loss = truth.excluded_loss(model, &theta_final, &train)?;
    let groups = unit_groups(model.layout(), "fc1", "fc2")?;
    let gensplit_models::DataInputs::Tokens { a: ta, b: tb } = &train.inputs else {
        anyhow::bail!("modadd training data are not token pairs");
    };
    let ce = ModelObjective::new(model, &train, LogitLoss::CE, 0)?;
    let theta_at = |c: Checkpoint| match c {
        Checkpoint::Final => (final_step, &theta_final),
        Checkpoint::Grokked => (grokked_step, &theta_grok),
    };
    // The eigen-spaces the formulations search: one Lanczos run per
    // (checkpoint, curvature), as many pairs as the largest formulation
    // of that kind needs; the runs are independent, so they run in parallel.
    let mut eig_keys: Vec<((Checkpoint, bool), usize)> = Vec::new();
    for form in &cfg.formulations {
        let (gn, k) = match form.space {
            Space::HessianTop { k } => (false, k),
            Space::HessianSlice { skip, k } => (false, skip + k),
            Space::GaussNewtonTop { k } => (true, k),
            _ => continue,
        };
        match eig_keys.iter_mut().find(|(key, _)| *key == (form.checkpoint, gn)) {
            Some((_, kk)) => *kk = (*kk).max(k),
            None => eig_keys.push(((form.checkpoint, gn), k)),
        }
    }
    let eig_cache: Vec<((Checkpoint, bool), Eigs)> = eig_keys
        .par_iter()
        .map(|&((ckpt, gn), kk)| {
            let curv = if gn { Curvature::GaussNewton } else { Curvature::Hessian };
            let e = top_eigs(
                model,
                theta_at(ckpt).1,
                &train,
                curv,
                kk,
                cfg.max_matvecs,
                cfg.seed ^ 0xE1,
            )?;
            Ok(((ckpt, gn), e))
        })
        .collect::<Result<_>>()?;
    let pb = crate::stages::bar(cfg.formulations.len(), &format!("sphere {label}"));
    // Every formulation is independent of the others: they run in
    // parallel (and each one's starts too), results in table order.
    let per_formulation = cfg
        .formulations
        .par_iter()
        .enumerate()
        .map(|(fi, form)| -> Result<(FormulationRun, (Coords, SphereParams))> {
            let (step, theta0) = theta_at(form.checkpoint);
            let need = |gn: bool, k: usize| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
                let (_, e) = eig_cache
                    .iter()
                    .find(|(c, _)| *c == (form.checkpoint, gn))
                    .context("sphere: an eigen-space was not computed")?;
                let k = k.min(e.0.len());
                Ok((e.0[..k].to_vec(), e.1[..k].to_vec()))
            };
            let (values, coords, radii, bounds) = match form.space {
                Space::Units => (
                    Vec::new(),
                    Coords::shrink(theta0, &groups)?,
                    cfg.unit_radii.clone(),
                    Some((0.0, 1.0)),
                ),
                Space::EmbeddingComponents { k, energy } => (
                    Vec::new(),
                    Coords::block_components(theta0, model.layout(), "embed", k, energy)?,
                    cfg.component_radii.clone(),
                    Some((0.0, 1.0)),
                ),
                Space::EmbeddingComponentsIca { k, energy } => (
                    Vec::new(),
                    Coords::block_components_ica(theta0, model.layout(), "embed", k, energy)?,
                    cfg.component_radii.clone(),
                    Some((0.0, 1.0)),
                ),
                Space::EmbeddingSubspacesIca {
                    k,
                    energy,
                    min_dependence,
                } => (
                    Vec::new(),
                    Coords::block_subspaces_ica(theta0, model.layout(), "embed", k, energy, min_dependence)?,
                    cfg.component_radii.clone(),
                    Some((0.0, 1.0)),
                ),
                Space::EmbeddingComponentsRotated { k, energy } => {
                    let obj = ModelObjective::new(model, &train, form.loss, 0)?;
                    let mut g = vec![0.0; theta0.len()];
                    gensplit_sphere::Objective::value_grad(&obj, theta0, &mut g)?;
                    (
                        Vec::new(),
                        Coords::block_components_rotated(theta0, model.layout(), "embed", k, energy, &g)?,
                        cfg.component_radii.clone(),
                        Some((0.0, 1.0)),
                    )
                }
                sp => {
                    let (mut vals, mut vecs) = match sp {
                        Space::HessianTop { k } => need(false, k)?,
                        Space::GaussNewtonTop { k } => need(true, k)?,
                        Space::HessianSlice { skip, k } => {
                            let (v, u) = need(false, skip + k)?;
                            (v.into_iter().skip(skip).collect(), u.into_iter().skip(skip).collect())
                        }
                        Space::Units
                        | Space::EmbeddingComponents { .. }
                        | Space::EmbeddingComponentsRotated { .. }
                        | Space::EmbeddingComponentsIca { .. }
                        | Space::EmbeddingSubspacesIca { .. } => {
                            unreachable!("handled above")
                        }
                    };
                    if form.positive_only {
                        let keep: Vec<bool> = vals.iter().map(|&l| l > 0.0).collect();
                        vecs = vecs
                            .into_iter()
                            .zip(&keep)
                            .filter(|(_, &k)| k)
                            .map(|(v, _)| v)
                            .collect();
                        vals.retain(|&l| l > 0.0);
                    }
                    anyhow::ensure!(!vecs.is_empty(), "formulation {}: empty eigen-space", form.name);
                    let c = Coords::orthonormal(vecs, Some(vals.clone()))?;
                    (vals, c, cfg.eigen_radii.clone(), None)
                }
            };
            // a box [lo, hi]^K reaches no further than √K · max(|lo|, hi)
            let radii: Vec<f64> = match bounds {
                Some((lo, hi)) => {
                    let (lo, hi): (f64, f64) = (lo, hi);
                    let cap = (coords.dim() as f64).sqrt() * lo.abs().max(hi);
                    radii.into_iter().filter(|&r| r <= cap * (1.0 + 1e-9)).collect()
                }
                None => radii,
            };
            anyhow::ensure!(
                radii.len() >= 2,
                "formulation {}: fewer than two radii within the reach of its {} coordinates",
                form.name,
                coords.dim()
            );
            let obj = ModelObjective::new(model, &train, form.loss, 0)?;
            let (starts_n, iters) = if cfg.full_budget.contains(&form.name) {
                (cfg.starts, cfg.iters)
            } else {
                (cfg.reduced_starts, cfg.reduced_iters)
            };
            let params = SphereParams {
                radii: radii.clone(),
                iters,
                step: 0.3,
                starts: starts_n,
                seed: cfg.seed.wrapping_add(fi as u64),
                bounds,
                gradient_orthogonal: form.gradient_orthogonal,
                subtract_quadratic: form.subtract_quadratic,
                warm_start: !form.cold_starts,
            };
            let paths = search(&obj, theta0, &coords, &params, &Avoid::default(), &mut |_| {})
                .with_context(|| format!("sphere search, formulation {}", form.name))?;
            let loss0 = gensplit_sphere::Objective::value_grad(&ce, theta0, &mut vec![0.0; theta0.len()])?;
            // score each start's path (label-using ground truth, never fed back
            // into the search); starts in parallel, results in start order
            let starts = paths
                .par_iter()
                .map(|path| -> Result<StartRun> {
                    let mut g = vec![0.0; theta0.len()];
                    let mut s = StartRun {
                        radii: radii.clone(),
                        loss: Vec::new(),
                        objective: Vec::new(),
                        unit_pr: Vec::new(),
                        test_acc: Vec::new(),
                        survival: Vec::new(),
                        transition: None,
                        break_index: None,
                        broken: None,
                    };
                    for (i, q) in path.points.iter().enumerate() {
                        let d = coords.delta(&q.c);
                        let th: Vec<f64> = theta0.iter().zip(&d).map(|(a, b)| a + b).collect();
                        s.loss.push(gensplit_sphere::Objective::value_grad(&ce, &th, &mut g)?);
                        s.objective.push(q.objective);
                        s.unit_pr.push(unit_change_pr(model, theta0, &th, ta, tb));
                        s.test_acc.push(gensplit_models::evaluate(model, &th, &test, 4096)?.acc);
                        let sv = truth.survival(model, &th)?;
                        if s.break_index.is_none() {
                            if let Some(k) = truth.single_break(&sv) {
                                s.break_index = Some(i);
                                s.broken = Some(k);
                            }
                        }
                        s.survival.push(sv);
                    }
                    s.transition = detect_transition(&s.radii, &s.unit_pr, cfg.threshold);
                    Ok(s)
                })
                .collect::<Result<Vec<StartRun>>>()?;
            let single_breaks = starts.iter().filter(|s| s.broken.is_some()).count();
            let mut broken_frequencies: Vec<usize> = starts.iter().filter_map(|s| s.broken).collect();
            broken_frequencies.sort_unstable();
            broken_frequencies.dedup();
            let flagged_within_one = starts
                .iter()
                .filter(|s| match (s.transition, s.break_index) {
                    (Some(t), Some(b)) => t.index.abs_diff(b) <= 1,
                    _ => false,
                })
                .count();
            let mut tr: Vec<f64> = starts.iter().filter_map(|s| s.transition.map(|t| t.radius)).collect();
            tr.sort_by(f64::total_cmp);
            let transition_radius = (!tr.is_empty()).then(|| tr[tr.len() / 2]);
            tracing::info!(
                label,
                formulation = form.name,
                single_breaks,
                ?broken_frequencies,
                ?transition_radius,
                "sphere formulation done"
            );
            pb.inc(1);
            Ok((
                FormulationRun {
                    formulation: form.clone(),
                    step,
                    loss0,
                    eigenvalues: values,
                    starts,
                    single_breaks,
                    broken_frequencies,
                    flagged_within_one,
                    transition_radius,
                    evaluations: starts_n * radii.len() * iters,
                },
                (coords, params),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    crate::progress::finish(&pb);
    // each formulation's search space and parameters, for the enumeration
    let (runs, spaces): (Vec<FormulationRun>, Vec<(Coords, SphereParams)>) = per_formulation.into_iter().unzip();
    // the best formulation: most single breaks, then most distinct broken
    // frequencies (it found more modules), then most transitions flagged
    // within one radius step, then the first in the table
    let best = runs
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| {
            a.single_breaks
                .cmp(&b.single_breaks)
                .then(a.broken_frequencies.len().cmp(&b.broken_frequencies.len()))
                .then(a.flagged_within_one.cmp(&b.flagged_within_one))
                .then(j.cmp(i))
        })
        .filter(|(_, r)| r.single_breaks > 0)
        .map(|(i, _)| i);
    let (mut enumeration, mut stop, mut recall, mut duplicate) = (Vec::new(), "not run".to_string(), 0.0, false);
    let enum_index = match &cfg.enumerate_formulation {
        Some(n) => runs.iter().position(|r| &r.formulation.name == n).or(best),
        None => best,
    };
    if let Some(bi) = enum_index {
        let form = &runs[bi].formulation;
        let theta0 = if form.checkpoint == Checkpoint::Final {
            &theta_final
        } else {
            &theta_grok
        };
        let (coords, search_params) = &spaces[bi];
        let obj = ModelObjective::new(model, &train, form.loss, 0)?;
        let order = |q: &RadiusPoint| {
            let d = coords.delta(&q.c);
            let th: Vec<f64> = theta0.iter().zip(&d).map(|(a, b)| a + b).collect();
            unit_change_pr(model, theta0, &th, ta, tb)
        };
        let params = EnumerateParams {
            search: SphereParams {
                seed: cfg.seed ^ 0xDEF1,
                radii: cfg.enumerate_radii.clone(),
                iters: cfg.enumerate_iters,
                starts: cfg.starts,
                ..search_params.clone()
            },
            max_modules: cfg.enumerate_max,
            threshold: Some(cfg.enumerate_threshold),
            // the limit is on the rise of the searched loss over θ* (a
            // tempered loss is far from 0 at θ*)
            max_loss: Some(
                gensplit_sphere::Objective::value_grad(&obj, theta0, &mut vec![0.0; theta0.len()])?
                    + cfg.enumerate_max_loss,
            ),
            cumulative: cfg.enumerate_cumulative,
        };
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        let mut obs = |round: usize, ev: &gensplit_sphere::Event| {
            if !debug {
                return;
            }
            let gensplit_sphere::Event::Radius { start, point } = ev;
            let d = coords.delta(&point.c);
            let th: Vec<f64> = theta0.iter().zip(&d).map(|(a, b)| a + b).collect();
            let sv = truth.survival(model, &th).unwrap_or_default();
            tracing::debug!(
                round,
                start,
                r = point.radius,
                loss = point.loss,
                order = order(point),
                surv = ?sv.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>(),
                c = ?point.c.iter().map(|x| (x * 100.0).round() / 100.0).collect::<Vec<_>>(),
                "enumeration path"
            );
        };
        let e = enumerate(&obj, theta0, coords, &params, Some(&order), &mut obs).context("sphere enumeration")?;
        stop = format!("{:?}", e.stop);
        let mut seen = Vec::new();
        for b in &e.breaks {
            let d = coords.delta(&b.point.c);
            let th: Vec<f64> = theta0.iter().zip(&d).map(|(a, b)| a + b).collect();
            let survival = truth.survival(model, &th)?;
            let broken = truth.single_break(&survival);
            if let Some(k) = broken {
                if seen.contains(&k) {
                    duplicate = true;
                } else {
                    seen.push(k);
                }
            }
            let pw = truth.power(model, &th);
            enumeration.push(EnumBreak {
                radius: b.point.radius,
                loss: gensplit_sphere::Objective::value_grad(&ce, &th, &mut vec![0.0; th.len()])?,
                embed_power: pw
                    .iter()
                    .zip(&truth.power0)
                    .map(|(a, b)| a / b.max(f64::MIN_POSITIVE))
                    .collect(),
                survival,
                broken,
            });
        }
        recall = seen.len() as f64 / keys.len().max(1) as f64;
    }
    Ok(SphereResult {
        label: label.to_string(),
        key_frequencies: keys,
        excluded_loss,
        grokked_step,
        best: best.map(|i| runs[i].formulation.name.clone()),
        enumeration_formulation: enum_index.map(|i| runs[i].formulation.name.clone()),
        formulations: runs,
        enumeration,
        enumeration_stop: stop,
        recall,
        duplicate,
    })
}
