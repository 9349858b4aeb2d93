//! The layer vocabulary every model's forward is written in, and the primal
//! (ordinary) implementation of it.
//!
//! A model's forward pass ([`crate::Model::forward`]) only calls the methods
//! of [`Ops`]; an implementation decides what an activation is:
//!
//! * [`Primal`]: a rank-2 dfdx tensor `[batch, features]`, taped (training,
//!   gradients) or not. Parameters are slices of one flat θ tensor, so
//!   `∂L/∂θ` comes out as one flat vector.
//! * [`crate::infer::Infer`]: evaluation without a tape; conv activations
//!   stay host buffers (the same values as [`Primal`] without a tape).
//! * `gensplit_hvp::Dual` (other crate): a (primal, tangent) pair giving the
//!   forward-mode directional derivative, used for exact Hessian-vector
//!   products by reverse-over-forward.
//!
//! The loss is the mean softmax cross-entropy over the batch,
//! `L = −(1/N) Σₙ log softmax(zₙ)_{yₙ}` (nats).

use crate::conv::{conv2d_relu_with, conv2d_with, ConvGeom};
use crate::model::{Inputs, Model, ModelError};
use crate::{host_vec, BlockId, Dev, Float, ParamLayout, Taped, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::Tape;

/// The layer operations a model's forward pass is built from.
pub trait Ops<E: Float> {
    /// An activation `[batch, features]` (whatever the implementation carries).
    type Act;
    /// Images as the network input: `pixels` is `[n, features]` in `[0, 1]`.
    fn images(&mut self, pixels: &[f32], features: usize) -> Self::Act;
    /// Shared token embedding of a pair: row `n` is `[table[a_n] ; table[b_n]]`
    /// where `table` is the block `[vocab, dim]`.
    fn embed_pair(&mut self, table: BlockId, a: &[u32], b: &[u32]) -> Self::Act;
    /// Affine layer `x Wᵀ + b` with `W: [out, in]`, `b: [out]`.
    fn linear(&mut self, x: Self::Act, w: BlockId, b: BlockId) -> Self::Act;
    /// 2-D convolution, see [`crate::conv`].
    fn conv2d(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act;
    /// Elementwise `max(x, 0)`.
    fn relu(&mut self, x: Self::Act) -> Self::Act;
    /// `relu(conv2d(x))`. The default composes the two methods;
    /// implementations fuse them into one op (no pre-activation tensor),
    /// which must give the same values and derivatives.
    fn conv2d_relu(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        let z = self.conv2d(x, geom, w, b);
        self.relu(z)
    }
}

/// Runs a forward with every fused method of [`Ops`] replaced by its default
/// composition (e.g. `conv2d_relu` as `conv2d` then `relu`), delegating the
/// rest to the wrapped implementation: the oracle that fused ops are tested
/// against.
pub struct Unfused<'o, O>(pub &'o mut O);

impl<E: Float, O: Ops<E>> Ops<E> for Unfused<'_, O> {
    type Act = O::Act;
    fn images(&mut self, pixels: &[f32], features: usize) -> Self::Act {
        self.0.images(pixels, features)
    }
    fn embed_pair(&mut self, table: BlockId, a: &[u32], b: &[u32]) -> Self::Act {
        self.0.embed_pair(table, a, b)
    }
    fn linear(&mut self, x: Self::Act, w: BlockId, b: BlockId) -> Self::Act {
        self.0.linear(x, w, b)
    }
    fn conv2d(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        self.0.conv2d(x, geom, w, b)
    }
    fn relu(&mut self, x: Self::Act) -> Self::Act {
        self.0.relu(x)
    }
}

/// Primal implementation: parameters are slices of the flat tensor θ, with
/// tape `T` ([`Taped`] to get gradients, [`NoneTape`] to evaluate).
pub struct Primal<'a, E: Float, T> {
    pub(crate) dev: Dev,
    pub(crate) layout: &'a ParamLayout,
    theta: T1<E>,
    /// True right after [`Ops::images`]: the next conv's input is data and
    /// needs no gradient (every other op clears it).
    input_pending: bool,
    pub(crate) blocks: BlockTracker,
    _tape: std::marker::PhantomData<T>,
}

/// Records which parameter blocks a forward pass has taken, to reject a
/// forward that takes one block twice.
///
/// dfdx 0.13's slice backward *assigns* the slice's gradient into θ's
/// gradient instead of adding it, so when a forward slices the same block of
/// θ twice, the gradient of one use is silently lost. [`Primal`] and
/// `gensplit_hvp::Dual` call [`BlockTracker::take`] for every block they
/// slice and [`BlockTracker::finish`] after the forward; a block that is
/// needed twice must be sliced once and its tensor reused
/// (`with_empty_tape`, as [`Ops::embed_pair`] does).
#[derive(Debug, Default)]
pub struct BlockTracker {
    taken: std::cell::RefCell<Vec<bool>>,
    reused: std::cell::Cell<Option<BlockId>>,
}

impl BlockTracker {
    /// A tracker for `layout`.
    pub fn new(layout: &ParamLayout) -> Self {
        Self {
            taken: std::cell::RefCell::new(vec![false; layout.blocks().len()]),
            reused: std::cell::Cell::new(None),
        }
    }
    /// Marks block `id` as taken; remembers the first block taken twice.
    pub fn take(&self, id: BlockId) {
        let mut taken = self.taken.borrow_mut();
        let i = id;
        if i >= taken.len() {
            taken.resize(i + 1, false);
        }
        if std::mem::replace(&mut taken[i], true) && self.reused.get().is_none() {
            self.reused.set(Some(id));
        }
    }
    /// `Err(`[`ModelError::BlockReused`]`)` naming the first block that was
    /// taken twice since the tracker was made.
    pub fn finish(&self, layout: &ParamLayout) -> Result<(), ModelError> {
        match self.reused.get() {
            Some(id) => Err(ModelError::BlockReused {
                block: layout.block(id).name.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl<'a, E: Float, T: Tape<E, Dev>> Primal<'a, E, T>
where
    Dev: Device<E>,
{
    /// Wraps a flat parameter vector (its length must match the layout).
    ///
    /// # Panics
    /// When θ's length differs from the layout's; [`Primal::try_new`] is the
    /// checked alternative.
    pub fn new(layout: &'a ParamLayout, theta: T1<E>) -> Self {
        match Self::try_new(layout, theta) {
            Ok(p) => p,
            Err(e) => panic!("Primal::new: {e}"),
        }
    }
    /// Wraps a flat parameter vector; [`ModelError::ThetaLength`] when its
    /// length differs from the layout's.
    pub fn try_new(layout: &'a ParamLayout, theta: T1<E>) -> Result<Self, ModelError> {
        if theta.shape().0 != layout.len() {
            return Err(ModelError::ThetaLength {
                expected: layout.len(),
                got: theta.shape().0,
            });
        }
        let dev = theta.device().clone();
        Ok(Self {
            dev,
            layout,
            theta,
            input_pending: false,
            blocks: BlockTracker::new(layout),
            _tape: Default::default(),
        })
    }
    /// Checks the forward pass run so far: [`ModelError::BlockReused`] when
    /// it took a parameter block twice (see [`BlockTracker`]).
    pub fn finish(&self) -> Result<(), ModelError> {
        self.blocks.finish(self.layout)
    }
    /// The flat θ tensor (its gradient is `grads.get(primal.theta())`).
    pub fn theta(&self) -> &T1<E> {
        &self.theta
    }
    /// Block `id` as a rank-1 tensor carrying tape `T` back to θ. Taking a
    /// block twice in one forward makes [`Primal::finish`] fail (see
    /// [`BlockTracker`]).
    pub fn block(&self, id: BlockId) -> T1<E, T> {
        self.blocks.take(id);
        param_block(&self.theta, self.layout, id)
    }
    fn block2(&self, id: BlockId) -> T2<E, T> {
        self.blocks.take(id);
        param_matrix(&self.theta, self.layout, id)
    }
}

/// Block `id` of the flat θ tensor as a rank-1 tensor with a fresh tape `T`
/// whose backward adds into θ's gradient. dfdx's slice backward assigns
/// rather than accumulates, so slice each block once per forward and reuse
/// it (`with_empty_tape`) for a second use.
pub fn param_block<E: Float, T: Tape<E, Dev>>(theta: &T1<E>, layout: &ParamLayout, id: BlockId) -> T1<E, T>
where
    Dev: Device<E>,
{
    theta.clone().put_tape(T::default()).slice((layout.block(id).range(),))
}

/// Block `id` of θ as a matrix `[shape[0], product of the rest]` (see
/// [`param_block`]).
pub fn param_matrix<E: Float, T: Tape<E, Dev>>(theta: &T1<E>, layout: &ParamLayout, id: BlockId) -> T2<E, T>
where
    Dev: Device<E>,
{
    let s = &layout.block(id).shape;
    let (r, c) = (s[0], s[1..].iter().product());
    param_block(theta, layout, id).reshape_like(&(r, c))
}

impl<E: Float, T> Ops<E> for Primal<'_, E, T>
where
    Dev: Device<E>,
    T: Tape<E, Dev> + Merge<T> + Merge<NoneTape>,
{
    type Act = T2<E, T>;

    fn images(&mut self, pixels: &[f32], features: usize) -> Self::Act {
        let n = pixels.len() / features;
        self.input_pending = true;
        let v: Vec<E> = E::from_f32s(pixels);
        self.dev.tensor_from_vec(v, (n, features)).put_tape(T::default())
    }

    fn embed_pair(&mut self, table: BlockId, a: &[u32], b: &[u32]) -> Self::Act {
        self.input_pending = false;
        let ia = self
            .dev
            .tensor_from_vec(a.iter().map(|&t| t as usize).collect(), (a.len(),));
        let ib = self
            .dev
            .tensor_from_vec(b.iter().map(|&t| t as usize).collect(), (b.len(),));
        // Slice the table out of θ once and use it twice (dfdx's slice
        // backward assigns rather than accumulates, so two slices of the same
        // range would lose one use's gradient).
        let tab = self.block2(table);
        let tab2 = tab.with_empty_tape();
        let ea: T2<E, T> = tab.gather(ia);
        let eb: T2<E, T> = tab2.gather(ib);
        (ea, eb).concat_along(Axis::<1>)
    }

    fn linear(&mut self, x: Self::Act, w: BlockId, b: BlockId) -> Self::Act {
        self.input_pending = false;
        let n = x.shape().0;
        let out = self.layout.block(w).shape[0];
        let wt = self.block2(w).permute::<(usize, usize), Axes2<1, 0>>();
        let bias = self.block(b).broadcast_like::<_, Axis<0>>(&(n, out));
        x.matmul(wt) + bias
    }

    fn conv2d(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        // The network input needs no gradient: skip the first conv's dx.
        let want_dx = !std::mem::take(&mut self.input_pending);
        conv2d_with(x, self.block(w), self.block(b), geom, want_dx)
    }

    fn relu(&mut self, x: Self::Act) -> Self::Act {
        self.input_pending = false;
        x.relu()
    }

    fn conv2d_relu(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        let want_dx = !std::mem::take(&mut self.input_pending);
        conv2d_relu_with(x, self.block(w), self.block(b), geom, want_dx)
    }
}

/// One-hot targets `[n, classes]`.
pub fn one_hot<E: Float>(dev: &Dev, labels: &[u32], classes: usize) -> T2<E>
where
    Dev: Device<E>,
{
    let mut v = vec![E::zero(); labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] = E::one();
    }
    dev.tensor_from_vec(v, (labels.len(), classes))
}

/// Loss and flat gradient at θ.
#[derive(Clone, Debug)]
pub struct LossGrad<E> {
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// `∂L/∂θ`, same layout as θ.
    pub grad: Vec<E>,
    /// Correctly classified samples in the batch.
    pub correct: usize,
}

/// Validates θ's length, the inputs and the labels against `model`; returns
/// the batch size. Every public entry point on user data calls this first.
pub fn check_batch<M: Model + ?Sized, E>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
    labels: &[u32],
) -> Result<usize, ModelError> {
    let n = check_unlabelled(model, theta, inputs)?;
    if labels.len() != n {
        return Err(ModelError::LabelCount {
            inputs: n,
            labels: labels.len(),
        });
    }
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= model.classes()) {
        return Err(ModelError::LabelRange {
            label: l,
            classes: model.classes(),
        });
    }
    Ok(n)
}

/// Samples whose prediction ([`try_argmax`]) is their label. A row with a
/// NaN logit has no prediction and counts as wrong.
fn count_correct<E: Float>(logits: &[E], labels: &[u32], classes: usize) -> usize {
    logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &l)| try_argmax(row) == Some(l as usize))
        .count()
}

/// Index of the largest entry (first one on ties), or `None` when the row
/// is empty or holds a NaN (a NaN logit is no prediction, never class 0).
pub fn try_argmax<E: Float>(row: &[E]) -> Option<usize> {
    if row.is_empty() || row.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    Some(best)
}

/// Index of the largest entry (first one on ties).
///
/// # Panics
/// When the row is empty or holds a NaN (it has no largest entry);
/// [`try_argmax`] is the checked alternative.
pub fn argmax<E: Float>(row: &[E]) -> usize {
    match try_argmax(row) {
        Some(i) => i,
        None => panic!("argmax of an empty row or a row with a NaN"),
    }
}

/// Mean cross-entropy and its gradient with respect to the flat θ on one batch.
pub fn loss_and_grad<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
    labels: &[u32],
) -> Result<LossGrad<E>, ModelError>
where
    Dev: Device<E>,
{
    check_batch(model, theta, inputs, labels)?;
    let dev = Dev::default();
    let th = dev.tensor_from_vec(theta.to_vec(), (theta.len(),));
    let mut ops: Primal<E, Taped<E>> = Primal::try_new(model.layout(), th.clone())?;
    let logits = model.forward(&mut ops, inputs)?;
    ops.finish()?;
    let classes = model.classes();
    let correct = count_correct(&host_vec(&logits), labels, classes);
    let target = one_hot::<E>(&dev, labels, classes);
    let loss = cross_entropy_with_logits_loss(logits, target);
    let loss_v = loss.array().f64();
    let grads = loss.backward();
    let grad = host_vec(&grads.get(&th));
    Ok(LossGrad {
        loss: loss_v,
        grad,
        correct,
    })
}

/// θ's length and the inputs checked against `model` (the unlabelled
/// half of [`check_batch`]); returns the batch size.
fn check_unlabelled<M: Model + ?Sized, E>(model: &M, theta: &[E], inputs: &Inputs) -> Result<usize, ModelError> {
    if theta.len() != model.layout().len() {
        return Err(ModelError::ThetaLength {
            expected: model.layout().len(),
            got: theta.len(),
        });
    }
    model.check_inputs(inputs)
}

/// Logits `[n, classes]` (row-major) at θ, without a tape (the forward
/// runs on [`crate::infer::Infer`]: the same values as on [`Primal`], with
/// the conv activations kept on the host).
pub fn evaluate_logits<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
) -> Result<Vec<E>, ModelError>
where
    Dev: Device<E>,
{
    check_unlabelled(model, theta, inputs)?;
    let mut ops = crate::infer::Infer::try_new(model.layout(), theta)?;
    let logits = model.forward(&mut ops, inputs)?;
    ops.finish()?;
    Ok(crate::infer::Infer::into_host(logits))
}

/// [`evaluate_logits`] on [`Primal`] with no tape (dfdx tensors all the
/// way): the oracle [`crate::infer::Infer`] is tested against.
pub fn evaluate_logits_primal<M: Model + ?Sized, E: Float>(
    model: &M,
    theta: &[E],
    inputs: &Inputs,
) -> Result<Vec<E>, ModelError>
where
    Dev: Device<E>,
{
    check_unlabelled(model, theta, inputs)?;
    let dev = Dev::default();
    let th = dev.tensor_from_vec(theta.to_vec(), (theta.len(),));
    let mut ops: Primal<E, NoneTape> = Primal::try_new(model.layout(), th)?;
    let logits = model.forward(&mut ops, inputs)?;
    ops.finish()?;
    Ok(host_vec(&logits))
}

/// Largest entry of a row, in f64 (`−∞` for an empty row).
fn row_max<E: Float>(row: &[E]) -> f64 {
    row.iter().fold(f64::NEG_INFINITY, |a, v| a.max(v.f64()))
}

/// `log Σᵢ exp(zᵢ)` of one row in f64, shifted by the row's maximum `m` for
/// stability: `m + log Σᵢ exp(zᵢ − m)`.
pub fn log_sum_exp<E: Float>(row: &[E]) -> f64 {
    let m = row_max(row);
    m + row.iter().map(|v| (v.f64() - m).exp()).sum::<f64>().ln()
}

/// `log softmax(z)ᵢ = zᵢ − log Σⱼ exp(zⱼ)` of one row, in f64.
pub fn log_softmax<E: Float>(row: &[E]) -> Vec<f64> {
    let lse = log_sum_exp(row);
    row.iter().map(|v| v.f64() - lse).collect()
}

/// Row-wise `softmax(z)ᵢ = exp(zᵢ − m) / Σⱼ exp(zⱼ − m)` (`m` the row's
/// maximum) of `[n, k]` logits, in f64: the one host-side softmax of the
/// workspace (the taped one is dfdx's).
pub fn softmax_rows<E: Float>(z: &[E], k: usize) -> Vec<f64> {
    let mut s = Vec::with_capacity(z.len());
    for row in z.chunks(k) {
        let m = row_max(row);
        let start = s.len();
        let mut tot = 0.0;
        for v in row {
            let e = (v.f64() - m).exp();
            tot += e;
            s.push(e);
        }
        s[start..].iter_mut().for_each(|e| *e /= tot);
    }
    s
}

/// Mean cross-entropy (nats) and number of correct predictions from logits.
pub fn ce_and_correct<E: Float>(logits: &[E], labels: &[u32], classes: usize) -> (f64, usize) {
    let mut total = 0.0;
    for (row, &l) in logits.chunks(classes).zip(labels) {
        total += log_sum_exp(row) - row[l as usize].f64();
    }
    (
        total / labels.len().max(1) as f64,
        count_correct(logits, labels, classes),
    )
}
