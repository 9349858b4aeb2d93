//! The configuration of a `reproduce` run: every number a stage depends on.
//! Two presets: [`ReproConfig::full`] (the results in the report) and
//! [`ReproConfig::quick`] (a small end-to-end smoke run for CI).

use crate::hessian::HessianConfig;
use crate::steer::SteerConfig;
use gensplit_data::modular::ModAddConfig;
use gensplit_data::patterns::PatternConfig;
use gensplit_models::{AdamWConfig, CnnConfig, ModMlpConfig, Schedule, TrainConfig};
use gensplit_steer::walk::{AscentParams, RelearnParams, UnlearnParams};
use serde::{Deserialize, Serialize};

/// Which images a training phase uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainSet {
    /// Digit + pattern averages.
    Mixed,
    /// Pure digits.
    Digits,
    /// Pure patterns.
    Patterns,
    /// Pure digits and pure patterns, concatenated.
    DigitsAndPatterns,
}

/// One training phase of a CNN recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Training data.
    pub data: TrainSet,
    /// Steps, batch, optimizer, seed.
    pub train: TrainConfig,
}

/// Data shared by the image experiments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// Pattern generator.
    pub patterns: PatternConfig,
    /// Use only the first this many training images (`None` = all 60,000).
    pub train_limit: Option<usize>,
    /// Held-out evaluation images per set (first of the 10,000 test images).
    pub test_size: usize,
    /// Held-out images per set used for curve points during training.
    pub curve_eval_size: usize,
}

/// A CNN training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CnnRecipe {
    /// Architecture.
    pub model: CnnConfig,
    /// Initialization seed.
    pub init_seed: u64,
    /// Phases, in order.
    pub phases: Vec<Phase>,
}

/// The modular-addition recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModAddRecipe {
    /// Data.
    pub data: ModAddConfig,
    /// Architecture.
    pub model: ModMlpConfig,
    /// Initialization seed.
    pub init_seed: u64,
    /// Full-batch AdamW run.
    pub train: TrainConfig,
    /// Share of embedding power the key frequencies must hold.
    pub key_fraction: f64,
}

/// Everything `reproduce` runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReproConfig {
    /// Whether this is the `--quick` preset.
    pub quick: bool,
    /// Image data.
    pub data: DataConfig,
    /// Trained on mixed data only (the seed's question 1).
    pub cnn_mixed_only: CnnRecipe,
    /// Pretrained on both pure datasets, then on mixed data.
    pub cnn_pretrained: CnnRecipe,
    /// Modular addition.
    pub modadd: ModAddRecipe,
    /// Hessian of the pretrained CNN on held-out digits, patterns, mixed.
    pub hessian_images: HessianConfig,
    /// Hessian of the modular MLP's training loss (`subset` is ignored: all
    /// training pairs).
    pub hessian_modadd: HessianConfig,
    /// Steering and independence of the pretrained CNN (the main result).
    /// Its largest `seed_ks` entry raises `k` of the pure-set Hessians.
    pub steer: SteerConfig,
    /// Steering and independence of the mixed-only CNN (secondary; its
    /// Hessians use `hessian_images` too).
    pub steer_mixed_only: SteerConfig,
}

fn phase(data: TrainSet, steps: usize, batch: usize, lr: f64, seed: u64, eval_every: usize) -> Phase {
    Phase {
        data,
        train: TrainConfig {
            steps,
            batch_size: batch,
            optim: AdamWConfig {
                lr,
                ..Default::default()
            },
            schedule: Schedule::Cosine,
            seed,
            eval_every,
            checkpoint_every: 0,
        },
    }
}

impl ReproConfig {
    /// The full configuration (the numbers in the report).
    pub fn full() -> Self {
        Self {
            quick: false,
            data: DataConfig {
                patterns: PatternConfig::default(),
                train_limit: None,
                test_size: 10_000,
                curve_eval_size: 2_000,
            },
            cnn_mixed_only: CnnRecipe {
                model: CnnConfig::default(),
                init_seed: 1,
                phases: vec![phase(TrainSet::Mixed, 1200, 128, 2e-3, 11, 100)],
            },
            cnn_pretrained: CnnRecipe {
                model: CnnConfig::default(),
                init_seed: 2,
                phases: vec![
                    phase(TrainSet::DigitsAndPatterns, 5000, 128, 3e-3, 21, 250),
                    phase(TrainSet::Mixed, 500, 128, 3e-4, 22, 100),
                ],
            },
            modadd: ModAddRecipe {
                data: ModAddConfig {
                    p: 59,
                    train_frac: 0.5,
                    seed: 3,
                },
                model: ModMlpConfig::default(),
                init_seed: 4,
                train: TrainConfig {
                    steps: 10_000,
                    batch_size: 0,
                    optim: AdamWConfig {
                        lr: 1e-3,
                        beta1: 0.9,
                        beta2: 0.98,
                        eps: 1e-8,
                        weight_decay: 1.0,
                    },
                    schedule: Schedule::Constant,
                    seed: 5,
                    eval_every: 250,
                    checkpoint_every: 1000,
                },
                key_fraction: gensplit_models::fourier::DEFAULT_KEY_FRACTION,
            },
            hessian_images: HessianConfig {
                k: 20,
                tol: 1e-6,
                max_matvecs: 400,
                subset: 2048,
                batch_size: 512,
                seed: 7,
                slq_probes: 2,
                slq_steps: 30,
                slq_subset: 256,
                f64: true,
            },
            hessian_modadd: HessianConfig {
                k: 20,
                tol: 1e-6,
                max_matvecs: 400,
                subset: 0,
                batch_size: 0,
                seed: 8,
                slq_probes: 2,
                slq_steps: 30,
                slq_subset: usize::MAX,
                f64: true,
            },
            steer: SteerConfig {
                cal_eval: 1024,
                heldout_start: 5000,
                heldout_size: 5000,
                k: 20,
                seed_ks: vec![20, 50],
                mu: 0.1,
                alphas: vec![0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
                random_seeds: vec![1, 2, 3, 4, 5],
                random_trials: 5,
                ascent: AscentParams {
                    steps: 100,
                    step_size: 0.02,
                    beta: 1.0,
                    mu: 0.1,
                    record_every: 4,
                    keep_gradient: false,
                    restore_tol: 0.0,
                    restore_weight: 0.0,
                },
                guarded: AscentParams {
                    steps: 100,
                    step_size: 0.02,
                    beta: 1.0,
                    mu: 0.1,
                    record_every: 4,
                    keep_gradient: true,
                    restore_tol: 0.002,
                    restore_weight: 2.0,
                },
                walk_k: 50,
                ascent_keep_subset: 1024,
                unlearn: UnlearnParams {
                    steps: 300,
                    batch: 64,
                    lr: 1e-4,
                    ascent_weight: 1.0,
                    seed: 9,
                    record_every: 5,
                },
                relearn_samples: 64,
                relearn: RelearnParams {
                    lr: 1e-3,
                    record_at: vec![0, 10, 25, 50, 100],
                },
                max_keep_drop: 0.02,
            },
            steer_mixed_only: SteerConfig {
                cal_eval: 1024,
                heldout_start: 5000,
                heldout_size: 5000,
                k: 20,
                seed_ks: vec![20],
                mu: 0.1,
                alphas: vec![0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
                random_seeds: vec![1, 2, 3, 4, 5],
                random_trials: 5,
                ascent: AscentParams {
                    steps: 100,
                    step_size: 0.02,
                    beta: 1.0,
                    mu: 0.1,
                    record_every: 4,
                    keep_gradient: false,
                    restore_tol: 0.0,
                    restore_weight: 0.0,
                },
                guarded: AscentParams {
                    steps: 100,
                    step_size: 0.02,
                    beta: 1.0,
                    mu: 0.1,
                    record_every: 4,
                    keep_gradient: true,
                    restore_tol: 0.002,
                    restore_weight: 2.0,
                },
                walk_k: 20,
                ascent_keep_subset: 1024,
                unlearn: UnlearnParams {
                    steps: 300,
                    batch: 64,
                    lr: 1e-4,
                    ascent_weight: 1.0,
                    seed: 9,
                    record_every: 5,
                },
                relearn_samples: 64,
                relearn: RelearnParams {
                    lr: 1e-3,
                    record_at: vec![0, 10, 25, 50, 100],
                },
                max_keep_drop: 0.02,
            },
        }
    }

    /// A small end-to-end configuration (seconds, not minutes). Its numbers
    /// are not meant to meet the full run's targets.
    pub fn quick() -> Self {
        let mut c = Self::full();
        c.quick = true;
        c.data.train_limit = Some(6_000);
        c.data.test_size = 1_000;
        c.data.curve_eval_size = 500;
        c.cnn_mixed_only.phases = vec![phase(TrainSet::Mixed, 150, 64, 2e-3, 11, 50)];
        c.cnn_pretrained.phases = vec![
            phase(TrainSet::DigitsAndPatterns, 150, 64, 2e-3, 21, 50),
            phase(TrainSet::Mixed, 50, 64, 5e-4, 22, 50),
        ];
        c.modadd.data.p = 23;
        c.modadd.model = ModMlpConfig {
            p: 23,
            embed: 8,
            hidden: 32,
        };
        c.modadd.train.steps = 1_500;
        c.modadd.train.eval_every = 250;
        c.modadd.train.checkpoint_every = 500;
        c.hessian_images.k = 5;
        c.hessian_images.subset = 256;
        c.hessian_images.batch_size = 128;
        c.hessian_images.max_matvecs = 120;
        c.hessian_images.slq_probes = 2;
        c.hessian_images.slq_steps = 15;
        c.hessian_images.slq_subset = 128;
        c.hessian_modadd.k = 5;
        c.hessian_modadd.max_matvecs = 120;
        c.hessian_modadd.slq_probes = 2;
        c.hessian_modadd.slq_steps = 15;
        c.steer.cal_eval = 128;
        c.steer.heldout_start = 500;
        c.steer.heldout_size = 500;
        c.steer.k = 5;
        c.steer.seed_ks = vec![5];
        c.steer.alphas = vec![0.25, 0.5, 1.0, 2.0, 4.0];
        c.steer.random_seeds = vec![1, 2];
        c.steer.random_trials = 2;
        c.steer.ascent.steps = 12;
        c.steer.ascent.step_size = 0.2;
        c.steer.ascent.record_every = 3;
        c.steer.guarded.record_every = 3;
        c.steer.guarded.steps = 12;
        c.steer.guarded.step_size = 0.2;
        c.steer.walk_k = 5;
        c.steer.ascent_keep_subset = 128;
        c.steer.unlearn.steps = 40;
        c.steer.relearn_samples = 32;
        c.steer.relearn.record_at = vec![0, 10, 25];
        c.steer_mixed_only = c.steer.clone();
        c
    }

    /// A tiny configuration for the pipeline's own tests.
    pub fn tiny() -> Self {
        let mut c = Self::quick();
        c.data.train_limit = Some(300);
        c.data.test_size = 100;
        c.data.curve_eval_size = 50;
        c.cnn_mixed_only.model = CnnConfig {
            channels: [2, 2, 2],
            hidden: 4,
            classes: 10,
        };
        c.cnn_pretrained.model = c.cnn_mixed_only.model.clone();
        c.cnn_mixed_only.phases = vec![phase(TrainSet::Mixed, 4, 16, 2e-3, 11, 2)];
        c.cnn_pretrained.phases = vec![
            phase(TrainSet::DigitsAndPatterns, 3, 16, 2e-3, 21, 3),
            phase(TrainSet::Mixed, 2, 16, 5e-4, 22, 2),
        ];
        c.modadd.data.p = 7;
        c.modadd.model = ModMlpConfig {
            p: 7,
            embed: 3,
            hidden: 5,
        };
        c.modadd.train.steps = 20;
        c.modadd.train.eval_every = 10;
        c.modadd.train.checkpoint_every = 10;
        c.hessian_images.k = 2;
        c.hessian_images.subset = 32;
        c.hessian_images.batch_size = 16;
        c.hessian_images.max_matvecs = 40;
        c.hessian_images.slq_steps = 5;
        c.hessian_images.slq_subset = 16;
        c.hessian_modadd.k = 2;
        c.hessian_modadd.max_matvecs = 40;
        c.hessian_modadd.slq_steps = 5;
        c.steer.cal_eval = 16;
        c.steer.heldout_start = 50;
        c.steer.heldout_size = 50;
        c.steer.k = 2;
        c.steer.seed_ks = vec![2];
        c.steer.alphas = vec![0.5, 2.0];
        c.steer.random_seeds = vec![1];
        c.steer.random_trials = 2;
        c.steer.ascent.steps = 3;
        c.steer.ascent.record_every = 1;
        c.steer.guarded.steps = 3;
        c.steer.guarded.record_every = 1;
        c.steer.walk_k = 2;
        c.steer.ascent_keep_subset = 16;
        c.steer.unlearn.steps = 4;
        c.steer.unlearn.batch = 8;
        c.steer.unlearn.record_every = 2;
        c.steer.relearn_samples = 8;
        c.steer.relearn.record_at = vec![0, 2];
        c.steer_mixed_only = c.steer.clone();
        c
    }
}
