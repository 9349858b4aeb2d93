//! Inference: the forward pass with no tape, keeping the conv layers'
//! activations on the host.
//!
//! [`Infer`] implements [`Ops`] for evaluation. The conv kernels
//! ([`crate::conv`]) read and write plain buffers, and dfdx 0.13 lends no
//! view of a tensor's buffer, so running a forward on dfdx tensors
//! ([`Primal`] with `NoneTape`) copies every conv input out of its tensor
//! (a zeroed allocation and a copy of `[n, C·H·W]` values per layer) and
//! records a ReLU mask no backward pass will read. Here an activation
//! stays a host buffer from the input image through the conv stack and
//! becomes a dfdx tensor (a move, no copy) only where a dfdx op (linear,
//! ReLU, embedding) takes it. Every value is computed by the same kernel on
//! the same operands in the same order as with [`Primal`], so the logits are
//! equal bit for bit (`infer_logits_equal_the_primal_forward_bit_for_bit`
//! in the models tests).

use crate::conv::kernel::{chunked_forward, Activation};
use crate::conv::ConvGeom;
use crate::model::ModelError;
use crate::ops::{Ops, Primal};
use crate::{host_vec, BlockId, Dev, Float, ParamLayout, T1, T2};
use dfdx::prelude::*;

/// An activation of [`Infer`]: `[rows, cols]` row-major on the host, or a
/// dfdx tensor.
pub enum InferAct<E: Float> {
    /// A host buffer (conv inputs and outputs).
    Host {
        /// The values, row-major.
        v: Vec<E>,
        /// Rows (samples).
        rows: usize,
        /// Columns (features per sample).
        cols: usize,
    },
    /// A dfdx tensor (what dfdx's ops return).
    Tensor(T2<E>),
}

/// The inference implementation of [`Ops`] (no tape, no gradients): conv
/// layers on host buffers, everything else on [`Primal`]'s dfdx ops.
///
/// # Panics
/// A conv method panics when its input's width differs from the geometry's
/// input features, as [`crate::conv::conv2d`] does: a model builds both
/// from one validated layout, and [`crate::evaluate_logits`] checks user
/// inputs with [`crate::Model::check_inputs`] before the forward runs.
pub struct Infer<'a, E: Float> {
    primal: Primal<'a, E, NoneTape>,
    theta: &'a [E],
}

impl<'a, E: Float> Infer<'a, E>
where
    Dev: Device<E>,
{
    /// Wraps a flat parameter vector; [`ModelError::ThetaLength`] when its
    /// length differs from the layout's.
    pub fn try_new(layout: &'a ParamLayout, theta: &'a [E]) -> Result<Self, ModelError> {
        let dev = Dev::default();
        let th: T1<E> = dev.tensor_from_vec(theta.to_vec(), (theta.len(),));
        Ok(Self {
            primal: Primal::try_new(layout, th)?,
            theta,
        })
    }
    /// Checks the forward pass run so far ([`Primal::finish`]).
    pub fn finish(&self) -> Result<(), ModelError> {
        self.primal.finish()
    }
    /// An activation as a row-major host buffer (a move for a host buffer,
    /// one copy for a tensor).
    pub fn into_host(x: InferAct<E>) -> Vec<E> {
        match x {
            InferAct::Host { v, .. } => v,
            InferAct::Tensor(t) => host_vec(&t),
        }
    }
    fn tensor(&self, x: InferAct<E>) -> T2<E> {
        match x {
            InferAct::Host { v, rows, cols } => self.primal.dev.tensor_from_vec(v, (rows, cols)),
            InferAct::Tensor(t) => t,
        }
    }
    /// Block `id` of θ as a host slice (taken once, as [`Primal::block`]).
    fn host_block(&self, id: BlockId) -> &'a [E] {
        self.primal.blocks.take(id);
        &self.theta[self.primal.layout.block(id).range()]
    }
    fn conv(&mut self, x: InferAct<E>, g: &ConvGeom, w: BlockId, b: BlockId, act: Activation) -> InferAct<E> {
        let (v, rows) = match x {
            InferAct::Host { v, rows, cols } => {
                assert_eq!(cols, g.in_features(), "conv2d: input features");
                (v, rows)
            }
            InferAct::Tensor(t) => {
                assert_eq!(t.shape().1, g.in_features(), "conv2d: input features");
                (host_vec(&t), t.shape().0)
            }
        };
        let (w, b) = (self.host_block(w), self.host_block(b));
        let z = chunked_forward(g, &v, None, w, None, b, rows, act).z;
        InferAct::Host {
            v: z,
            rows,
            cols: g.out_features(),
        }
    }
}

impl<E: Float> Ops<E> for Infer<'_, E>
where
    Dev: Device<E>,
{
    type Act = InferAct<E>;

    fn images(&mut self, pixels: &[f32], features: usize) -> Self::Act {
        InferAct::Host {
            v: E::from_f32s(pixels),
            rows: pixels.len() / features,
            cols: features,
        }
    }
    fn embed_pair(&mut self, table: BlockId, a: &[u32], b: &[u32]) -> Self::Act {
        InferAct::Tensor(self.primal.embed_pair(table, a, b))
    }
    fn linear(&mut self, x: Self::Act, w: BlockId, b: BlockId) -> Self::Act {
        let x = self.tensor(x);
        InferAct::Tensor(self.primal.linear(x, w, b))
    }
    fn conv2d(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        self.conv(x, geom, w, b, Activation::Identity)
    }
    fn relu(&mut self, x: Self::Act) -> Self::Act {
        let x = self.tensor(x);
        InferAct::Tensor(self.primal.relu(x))
    }
    fn conv2d_relu(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        self.conv(x, geom, w, b, Activation::ReluNoMask)
    }
}
