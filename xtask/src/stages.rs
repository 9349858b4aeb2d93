//! The data and training stages, and the types other stages read (the
//! image sets, a trained model). Each stage is a pure function of its config
//! and its inputs' artifacts; [`crate::pipeline::Ctx::stage`] owns caching,
//! timing and reporting. This file's code enters the key of every stage that
//! uses it (see [`crate::fingerprint`]); the plan and the driver live in
//! [`crate::pipeline`], outside every fingerprint.

use crate::config::{CnnRecipe, DataConfig, ModAddRecipe, TrainSet};
use anyhow::Result;
use gensplit_data::{mixed, mnist, patterns, ImageSet};
use gensplit_models::fourier::Spectrum;
use gensplit_models::{evaluate, train, AnyModel, Cnn, Dataset, Eval, ModMlp, Model, Progress, TrainLog};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Where the digit images come from.
#[derive(Clone, Debug)]
pub struct DigitSource {
    /// IDX directory.
    pub dir: PathBuf,
    /// Verify the shipped MNIST checksums (only for the default directory).
    pub verify: bool,
}

/// The image datasets, in memory (regenerated deterministically; only their
/// fingerprints are stored as artifacts — the mixed training set alone is
/// 188 MB of f32).
pub struct Images {
    /// Training sets.
    pub train_digits: ImageSet,
    /// Pure patterns with the training labels.
    pub train_patterns: ImageSet,
    /// Averages.
    pub train_mixed: ImageSet,
    /// Held-out digits (MNIST test).
    pub test_digits: ImageSet,
    /// Held-out patterns (test noise stream).
    pub test_patterns: ImageSet,
    /// Held-out averages.
    pub test_mixed: ImageSet,
}

/// Output of the `data` stage: fingerprints and sample images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataSummary {
    /// SHA-256 of each set (`name`, hex) over its f32 pixels and labels.
    pub fingerprints: Vec<(String, String)>,
    /// Sizes (`name`, count).
    pub sizes: Vec<(String, usize)>,
    /// For the figure: one held-out image per class, per set (`name`, images).
    pub samples: Vec<(String, Vec<Vec<f32>>)>,
}

fn fingerprint(set: &ImageSet) -> String {
    let mut h = Sha256::new();
    for v in &set.images {
        h.update(v.to_le_bytes());
    }
    h.update(&set.labels);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads digits and builds the pattern and mixed sets.
pub fn build_images(src: &DigitSource, cfg: &DataConfig) -> Result<Images> {
    let verify = if src.verify {
        mnist::Verify::MnistChecksums
    } else {
        mnist::Verify::None
    };
    let mut train_digits = mnist::load(&src.dir, mnist::Split::Train, verify)?;
    if let Some(n) = cfg.train_limit {
        train_digits = train_digits.first(n);
    }
    let test_digits = mnist::load(&src.dir, mnist::Split::Test, verify)?.first(cfg.test_size);
    let cb = patterns::Codebook::new(&cfg.patterns)?;
    let train_patterns = patterns::try_generate(&cb, &train_digits.labels, patterns::Stream::Train)?;
    let test_patterns = patterns::try_generate(&cb, &test_digits.labels, patterns::Stream::Test)?;
    let train_mixed = mixed::average(&train_digits, &train_patterns)?;
    let test_mixed = mixed::average(&test_digits, &test_patterns)?;
    Ok(Images {
        train_digits,
        train_patterns,
        train_mixed,
        test_digits,
        test_patterns,
        test_mixed,
    })
}

/// The `data` stage's summary of the built sets.
pub fn summarize(images: &Images) -> DataSummary {
    let sets = [
        ("train_digits", &images.train_digits),
        ("train_patterns", &images.train_patterns),
        ("train_mixed", &images.train_mixed),
        ("test_digits", &images.test_digits),
        ("test_patterns", &images.test_patterns),
        ("test_mixed", &images.test_mixed),
    ];
    let samples = [
        ("digits", &images.test_digits),
        ("patterns", &images.test_patterns),
        ("mixed", &images.test_mixed),
    ]
    .iter()
    .map(|(name, set)| {
        let imgs = (0..10u8)
            .filter_map(|c| set.labels.iter().position(|&l| l == c).map(|i| set.image(i).to_vec()))
            .collect();
        (name.to_string(), imgs)
    })
    .collect();
    DataSummary {
        fingerprints: sets.iter().map(|(n, s)| (n.to_string(), fingerprint(s))).collect(),
        sizes: sets.iter().map(|(n, s)| (n.to_string(), s.len())).collect(),
        samples,
    }
}

/// A trained model and its record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trained {
    /// Architecture.
    pub model: AnyModel,
    /// Final parameters (flat, f32).
    pub theta: Vec<f32>,
    /// Curves and checkpoints.
    pub log: TrainLog,
    /// Final held-out evaluations (`set`, eval).
    pub evals: Vec<(String, Eval)>,
    /// Steps at which each phase ended.
    pub phase_ends: Vec<usize>,
}

impl Trained {
    /// Final accuracy on a named set.
    pub fn acc(&self, set: &str) -> Option<f64> {
        self.evals.iter().find(|(n, _)| n == set).map(|(_, e)| e.acc)
    }
}

pub(crate) fn bar(steps: usize, label: &str) -> ProgressBar {
    crate::progress::bar(steps as u64, "{prefix:>22} [{bar:30}] {pos}/{len} {msg} ({eta})", label)
}

/// Trains a CNN recipe on the in-memory images.
pub fn train_cnn(name: &str, recipe: &CnnRecipe, data: &DataConfig, images: &Images) -> Result<Trained> {
    let cnn = Cnn::new(&recipe.model)?;
    let mut theta: Vec<f32> = cnn.init(recipe.init_seed);
    let curve_n = data.curve_eval_size;
    let curve_sets = [
        ("mixed", Dataset::from_images(&images.test_mixed.first(curve_n))),
        ("digits", Dataset::from_images(&images.test_digits.first(curve_n))),
        ("patterns", Dataset::from_images(&images.test_patterns.first(curve_n))),
    ];
    let evals: Vec<(&str, &Dataset)> = curve_sets.iter().map(|(n, d)| (*n, d)).collect();
    let mut log = TrainLog::default();
    let mut phase_ends = Vec::new();
    for (i, phase) in recipe.phases.iter().enumerate() {
        let set = match phase.data {
            TrainSet::Mixed => Dataset::from_images(&images.train_mixed),
            TrainSet::Digits => Dataset::from_images(&images.train_digits),
            TrainSet::Patterns => Dataset::from_images(&images.train_patterns),
            TrainSet::DigitsAndPatterns => {
                Dataset::from_images(&images.train_digits).concat(&Dataset::from_images(&images.train_patterns))?
            }
        };
        let pb = bar(phase.train.steps, &format!("{name} {}/{}", i + 1, recipe.phases.len()));
        train(
            &cnn,
            &mut theta,
            &set,
            &phase.train,
            &evals,
            &mut log,
            &mut |p| match p {
                Progress::Step { done, loss, .. } => {
                    pb.set_position(done as u64);
                    if done % 10 == 0 {
                        pb.set_message(format!("loss {loss:.3}"));
                    }
                }
                Progress::Point(pt) => {
                    let accs: Vec<String> = pt.evals.iter().map(|(n, e)| format!("{n} {:.3}", e.acc)).collect();
                    tracing::debug!(model = name, step = pt.step, "{}", accs.join(", "));
                }
            },
        )?;
        crate::progress::finish(&pb);
        phase_ends.push(log.steps);
    }
    let finals = [
        ("mixed", Dataset::from_images(&images.test_mixed)),
        ("digits", Dataset::from_images(&images.test_digits)),
        ("patterns", Dataset::from_images(&images.test_patterns)),
    ];
    let mut out = Vec::new();
    for (n, d) in &finals {
        out.push((n.to_string(), evaluate(&cnn, &theta, d, 2048)?));
    }
    tracing::info!(
        model = name,
        "held-out accuracy: {}",
        out.iter()
            .map(|(n, e)| format!("{n} {:.4}", e.acc))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Trained {
        model: AnyModel::Cnn(cnn),
        theta,
        log,
        evals: out,
        phase_ends,
    })
}

/// The modular-addition stage's output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModAddResult {
    /// The trained MLP.
    pub trained: Trained,
    /// Folded embedding power spectrum.
    pub spectrum: Spectrum,
    /// Key frequencies (ascending).
    pub key_frequencies: Vec<usize>,
    /// Share of the power they hold.
    pub key_share: f64,
    /// First curve step with test accuracy ≥ 99% (if any).
    pub step_test_99: Option<usize>,
}

/// Trains the modular MLP and analyses its embedding.
/// Trains a modular-addition recipe; `label` names its progress bar.
pub fn train_modadd(recipe: &ModAddRecipe, label: &str) -> Result<ModAddResult> {
    let data = gensplit_data::modular::generate(&recipe.data)?;
    anyhow::ensure!(
        recipe.model.p == data.p as usize,
        "config: modadd.model.p = {} but modadd.data.p = {}",
        recipe.model.p,
        data.p
    );
    let mlp = ModMlp::new(&recipe.model)?;
    let mut theta: Vec<f32> = mlp.init(recipe.init_seed);
    let (tr, te) = (Dataset::from_modadd(&data.train), Dataset::from_modadd(&data.test));
    let mut log = TrainLog::default();
    let pb = bar(recipe.train.steps, label);
    train(
        &mlp,
        &mut theta,
        &tr,
        &recipe.train,
        &[("test", &te), ("train", &tr)],
        &mut log,
        &mut |p| {
            if let Progress::Step { done, loss, .. } = p {
                pb.set_position(done as u64);
                if done % 50 == 0 {
                    pb.set_message(format!("loss {loss:.2e}"));
                }
            }
        },
    )?;
    crate::progress::finish(&pb);
    let evals = vec![
        ("train".to_string(), evaluate(&mlp, &theta, &tr, 4096)?),
        ("test".to_string(), evaluate(&mlp, &theta, &te, 4096)?),
    ];
    let spectrum = Spectrum::of_embedding(&mlp, &theta);
    let (key_frequencies, key_share) = spectrum.key_frequencies(recipe.key_fraction);
    let step_test_99 = log
        .curve
        .iter()
        .find(|p| p.evals.iter().any(|(n, e)| n == "test" && e.acc >= 0.99))
        .map(|p| p.step);
    tracing::info!(test_acc = evals[1].1.acc, ?key_frequencies, key_share, "modadd trained");
    let trained = Trained {
        model: AnyModel::ModMlp(mlp),
        theta,
        log,
        evals,
        phase_ends: vec![recipe.train.steps],
    };
    Ok(ModAddResult {
        trained,
        spectrum,
        key_frequencies,
        key_share,
        step_test_99,
    })
}
