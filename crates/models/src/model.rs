//! The [`Model`] trait: a parameter layout plus one generic forward pass.

use crate::ops::Ops;
use crate::{Cnn, Float, ModMlp, ParamLayout};
use serde::{Deserialize, Serialize};

/// Errors from running a model on user-supplied parameters or data.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// θ does not have the layout's length.
    #[error("parameter vector has {got} entries, the model's layout needs {expected}")]
    ThetaLength {
        /// Layout length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// The inputs are of the wrong kind or size for this model.
    #[error("inputs do not fit the model: {0}")]
    Inputs(String),
    /// Labels and inputs differ in count.
    #[error("{labels} labels for {inputs} inputs")]
    LabelCount {
        /// Inputs.
        inputs: usize,
        /// Labels.
        labels: usize,
    },
    /// A label is not a valid class.
    #[error("label {label} is out of range for {classes} classes")]
    LabelRange {
        /// The label.
        label: u32,
        /// Number of classes.
        classes: usize,
    },
    /// A configuration field is invalid.
    #[error("invalid model config field `{field}`: {reason}")]
    Config {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A row range is not within the dataset.
    #[error("rows {lo}..{hi} are not within a dataset of {len} samples")]
    Rows {
        /// First row.
        lo: usize,
        /// One past the last row.
        hi: usize,
        /// Samples in the dataset.
        len: usize,
    },
    /// A forward pass took the same parameter block twice. dfdx 0.13's
    /// slice backward assigns instead of accumulating, so the gradient of
    /// one of the two uses would be lost silently; slice a block once per
    /// forward and reuse the tensor (`with_empty_tape`) instead.
    #[error("parameter block `{block}` was taken twice in one forward pass (its gradient would be wrong)")]
    BlockReused {
        /// Name of the block.
        block: String,
    },
    /// Training produced NaN or an infinity.
    #[error("non-finite {quantity} at training step {step}{}", block.as_ref().map(|b| format!(" in parameter block `{b}`")).unwrap_or_default())]
    NonFinite {
        /// Optimizer step (cumulative over phases; 0 = before the first step).
        step: usize,
        /// What was non-finite: `loss`, `gradient` or `parameters`.
        quantity: &'static str,
        /// The first parameter block holding a non-finite entry (`None` for
        /// the loss).
        block: Option<String>,
    },
}

/// A batch of network inputs.
#[derive(Clone, Copy, Debug)]
pub enum Inputs<'a> {
    /// Images, `[n, 784]` row-major, values in `[0, 1]`.
    Images {
        /// Pixels.
        pixels: &'a [f32],
    },
    /// Token pairs `(a_n, b_n)` for modular addition.
    Tokens {
        /// First operands.
        a: &'a [u32],
        /// Second operands.
        b: &'a [u32],
    },
}

impl Inputs<'_> {
    /// Selects rows `lo..hi` of the batch.
    ///
    /// # Panics
    /// When `lo > hi` or the batch has fewer than `hi` rows (like slice
    /// indexing); `Dataset::try_rows` is the checked alternative for owned
    /// data.
    pub fn rows(&self, lo: usize, hi: usize, features: usize) -> Self {
        match *self {
            Inputs::Images { pixels } => Inputs::Images {
                pixels: &pixels[lo * features..hi * features],
            },
            Inputs::Tokens { a, b } => Inputs::Tokens {
                a: &a[lo..hi],
                b: &b[lo..hi],
            },
        }
    }
}

/// A network: a flat parameter layout and a forward pass written once over
/// [`Ops`]. Models are descriptions (geometry and layout, no parameters), so
/// they are shared between threads: curvature products run batches side by
/// side.
pub trait Model: Sync {
    /// The parameter layout (θ's coordinate system).
    fn layout(&self) -> &ParamLayout;
    /// Number of output classes.
    fn classes(&self) -> usize;
    /// Validates `inputs` and returns the batch size.
    fn check_inputs(&self, inputs: &Inputs) -> Result<usize, ModelError>;
    /// Logits `[n, classes]`. Errors with [`ModelError::Inputs`] when the
    /// inputs are of the wrong kind for the model (run
    /// [`Model::check_inputs`] first for the full validation of sizes and
    /// ranges).
    fn forward<E: Float, O: Ops<E>>(&self, ops: &mut O, inputs: &Inputs) -> Result<O::Act, ModelError>;
    /// Seeded initial parameters (deterministic).
    fn init<E: Float>(&self, seed: u64) -> Vec<E>;
    /// Features per input sample (784 for images, 1 for token pairs).
    fn input_features(&self) -> usize;
}

/// Either model, for code that handles both.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AnyModel {
    /// The image CNN.
    Cnn(Cnn),
    /// The modular-addition MLP.
    ModMlp(ModMlp),
}

impl Model for AnyModel {
    fn layout(&self) -> &ParamLayout {
        match self {
            AnyModel::Cnn(m) => m.layout(),
            AnyModel::ModMlp(m) => m.layout(),
        }
    }
    fn classes(&self) -> usize {
        match self {
            AnyModel::Cnn(m) => m.classes(),
            AnyModel::ModMlp(m) => m.classes(),
        }
    }
    fn check_inputs(&self, inputs: &Inputs) -> Result<usize, ModelError> {
        match self {
            AnyModel::Cnn(m) => m.check_inputs(inputs),
            AnyModel::ModMlp(m) => m.check_inputs(inputs),
        }
    }
    fn forward<E: Float, O: Ops<E>>(&self, ops: &mut O, inputs: &Inputs) -> Result<O::Act, ModelError> {
        match self {
            AnyModel::Cnn(m) => m.forward(ops, inputs),
            AnyModel::ModMlp(m) => m.forward(ops, inputs),
        }
    }
    fn init<E: Float>(&self, seed: u64) -> Vec<E> {
        match self {
            AnyModel::Cnn(m) => m.init(seed),
            AnyModel::ModMlp(m) => m.init(seed),
        }
    }
    fn input_features(&self) -> usize {
        match self {
            AnyModel::Cnn(m) => m.input_features(),
            AnyModel::ModMlp(m) => m.input_features(),
        }
    }
}

/// Uniform `U(−1/√fan_in, 1/√fan_in)` draws (PyTorch's default for linear
/// and conv layers), from a seeded ChaCha8 stream.
pub(crate) fn uniform_fan_in(rng: &mut rand_chacha::ChaCha8Rng, n: usize, fan_in: usize) -> Vec<f64> {
    use rand::Rng;
    let bound = 1.0 / (fan_in as f64).sqrt();
    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
}
