//! The reference CNN for the digit/pattern experiments.
//!
//! Default (29,018 parameters): conv 1→8 k3 s1 p1, ReLU, conv 8→16 k3 s2 p1,
//! ReLU, conv 16→16 k3 s2 p1, ReLU, flatten (16·7·7 = 784), linear 784→32,
//! ReLU, linear 32→10. Input: 28×28 grayscale in `[0, 1]`; output: 10 logits.

use crate::conv::ConvGeom;
use crate::model::{uniform_fan_in, Inputs, Model, ModelError};
use crate::ops::Ops;
use crate::{BlockId, Float, ParamLayout};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Widths of the CNN (kernel 3, strides 1, 2, 2, padding 1 are fixed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnnConfig {
    /// Channels of the three conv layers.
    pub channels: [usize; 3],
    /// Hidden units of the first linear layer.
    pub hidden: usize,
    /// Output classes.
    pub classes: usize,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            channels: [8, 16, 16],
            hidden: 32,
            classes: 10,
        }
    }
}

/// The CNN: geometry plus parameter layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cnn {
    config: CnnConfig,
    convs: Vec<(ConvGeom, BlockId, BlockId)>,
    fc: [(BlockId, BlockId); 2],
    layout: ParamLayout,
}

impl Cnn {
    /// Builds the layout for `config`.
    pub fn new(config: &CnnConfig) -> Result<Self, ModelError> {
        for (field, v) in [
            ("channels", config.channels.iter().min().copied().unwrap_or(0)),
            ("hidden", config.hidden),
        ] {
            if v == 0 {
                return Err(ModelError::Config {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if config.classes < 2 {
            return Err(ModelError::Config {
                field: "classes",
                reason: "need at least 2 classes".into(),
            });
        }
        let mut layout = ParamLayout::new();
        let mut convs = Vec::new();
        let (mut c, mut h, mut w) = (1, 28, 28);
        for (i, (&co, s)) in config.channels.iter().zip([1, 2, 2]).enumerate() {
            let g = ConvGeom {
                c_in: c,
                h,
                w,
                c_out: co,
                k: 3,
                stride: s,
                pad: 1,
            };
            g.validate()?;
            let wid = layout.push(format!("conv{}.weight", i + 1), &[co, c, 3, 3]);
            let bid = layout.push(format!("conv{}.bias", i + 1), &[co]);
            convs.push((g, wid, bid));
            (h, w) = g.out_hw();
            c = co;
        }
        let flat = c * h * w;
        let w1 = layout.push("fc1.weight", &[config.hidden, flat]);
        let b1 = layout.push("fc1.bias", &[config.hidden]);
        let w2 = layout.push("fc2.weight", &[config.classes, config.hidden]);
        let b2 = layout.push("fc2.bias", &[config.classes]);
        Ok(Self {
            config: config.clone(),
            convs,
            fc: [(w1, b1), (w2, b2)],
            layout,
        })
    }
    /// The configuration.
    pub fn config(&self) -> &CnnConfig {
        &self.config
    }
}

impl Model for Cnn {
    fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    fn classes(&self) -> usize {
        self.config.classes
    }
    fn input_features(&self) -> usize {
        784
    }
    fn check_inputs(&self, inputs: &Inputs) -> Result<usize, ModelError> {
        match inputs {
            Inputs::Images { pixels } if pixels.len() % 784 == 0 && !pixels.is_empty() => Ok(pixels.len() / 784),
            Inputs::Images { pixels } => Err(ModelError::Inputs(format!(
                "{} pixels is not a non-empty multiple of 784",
                pixels.len()
            ))),
            Inputs::Tokens { .. } => Err(ModelError::Inputs("the CNN takes images, not tokens".into())),
        }
    }
    fn forward<E: Float, O: Ops<E>>(&self, ops: &mut O, inputs: &Inputs) -> Result<O::Act, ModelError> {
        let Inputs::Images { pixels } = inputs else {
            return Err(ModelError::Inputs("the CNN takes images, not tokens".into()));
        };
        let mut x = ops.images(pixels, 784);
        for (g, w, b) in &self.convs {
            x = ops.conv2d_relu(x, g, *w, *b);
        }
        let x = ops.linear(x, self.fc[0].0, self.fc[0].1);
        let x = ops.relu(x);
        Ok(ops.linear(x, self.fc[1].0, self.fc[1].1))
    }
    fn init<E: Float>(&self, seed: u64) -> Vec<E> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut theta = Vec::with_capacity(self.layout.len());
        for block in self.layout.blocks() {
            // fan_in: input channels × k × k for conv, inputs for linear; the
            // bias uses its layer's fan_in.
            let fan_in = match self
                .layout
                .blocks()
                .iter()
                .find(|b| b.name.split('.').next() == block.name.split('.').next() && b.name.ends_with("weight"))
            {
                Some(wb) => wb.shape[1..].iter().product(),
                None => 1,
            };
            theta.extend(uniform_fan_in(&mut rng, block.len(), fan_in).into_iter().map(E::of));
        }
        theta
    }
}
