//! [`Dual`]: the forward pass together with its tangent (forward-mode JVP)
//! along a fixed direction `v`, written as an implementation of
//! [`gensplit_models::Ops`] so every model's single forward runs on it.
//!
//! An activation is a [`DualAct`]: the primal value `a` (a taped dfdx tensor
//! that records the ordinary backward graph down to θ) and its tangent
//! `ȧ = (∂a/∂θ)·v` (`None` when it is identically zero, as for the network
//! input). The tangent rules, with `(V, c)` the blocks of `v` that sit where
//! `(W, b)` sit in θ:
//!
//! | layer | primal | tangent |
//! | --- | --- | --- |
//! | input | `x` | `0` |
//! | `embed_pair` | `[E(a) ; E(b)]` | `[V_E(a) ; V_E(b)]` |
//! | `linear` | `z = x Wᵀ + b` | `ż = ẋ Wᵀ + x Vᵀ + c` |
//! | `conv2d` | `z = conv(x, W, b)` | `ż = conv(ẋ, W, 0) + conv(x, V, c)` (fused: [`conv2d_dual`]) |
//! | `relu` | `a = max(z, 0)` | `ȧ = 1[z > 0] · ż` (mask constant; one fused op) |
//!
//! The tangent tape type `TT` chooses what the reverse pass differentiates:
//!
//! * `TT = `[`Taped`]: the tangent branch is recorded too, so reverse mode
//!   on a scalar built from `(z, ż)` differentiates through both (the
//!   Hessian-vector product, [`crate::Curvature::Hessian`]).
//! * `TT = `[`NoneTape`]: the tangent is a plain value; only the primal graph
//!   is recorded (vector-Jacobian products, used for the Gauss–Newton
//!   product [`crate::Curvature::GaussNewton`]).
//!
//! Two dfdx facts shape the code: a θ block is sliced out of the flat θ
//! tensor *once* per use site (dfdx's slice backward assigns rather than
//! accumulates, so slicing the same range twice would drop a gradient), and
//! a taped tensor needed by both branches keeps its tape in the primal branch
//! and enters the tangent branch as a tape-less-but-same-id clone
//! (`retaped`), so the gradients of both uses accumulate on the same id and
//! the tapes merge where the branches join.
//!
//! [`Dual::with_cache`] hands the conv layers a [`PrimalCache`]: on the
//! first pass they record their `v`-independent parts, on later passes (same
//! θ, batch and loss scale, any `v`) they reuse them.

use crate::HvpError;
use dfdx::prelude::*;
use dfdx::tensor::{Merge, Tape};
use gensplit_models::conv::{conv2d_dual, ConvGeom, DualConvCache};
use gensplit_models::ops::{param_block, param_matrix, BlockTracker};
use gensplit_models::{cpu_vec, host_vec, take_grad, BlockId, Dev, Float, ModelError, Ops, ParamLayout, Taped, T1, T2};
use std::sync::{Arc, Mutex, PoisonError};

/// The `v`-independent parts of a [`Dual`] pass over one batch at one θ,
/// one [`DualConvCache`] per conv call in forward order (see there for what
/// is kept and why it does not depend on `v`). Filled by the first pass that
/// uses it, read by the later ones. Valid for one model, θ, batch and loss
/// scale only (the recorded tangent gradients scale with the loss).
#[derive(Debug, Default)]
pub struct PrimalCache<E: Float> {
    convs: Mutex<Vec<Arc<DualConvCache<E>>>>,
}

impl<E: Float> PrimalCache<E> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            convs: Mutex::new(Vec::new()),
        }
    }

    /// The slot of the `i`-th conv call (created on first use).
    fn slot(&self, i: usize) -> Arc<DualConvCache<E>> {
        let mut s = self.convs.lock().unwrap_or_else(PoisonError::into_inner);
        while s.len() <= i {
            s.push(Arc::new(DualConvCache::new()));
        }
        s[i].clone()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let s = self.convs.lock().unwrap_or_else(PoisonError::into_inner);
        s.iter().map(|c| c.bytes()).sum()
    }
}

/// A (primal, tangent) activation `[batch, features]`.
pub struct DualAct<E: Float, TT> {
    /// The primal value, recording the backward graph down to θ.
    pub primal: T2<E, Taped<E>>,
    /// The tangent `(∂a/∂θ)·v`. `None` means identically zero *and* marks
    /// an activation that does not depend on θ at all (the network input):
    /// the next layer's tangent `x Vᵀ + c` (or `conv(x, V, c)`) is then
    /// a constant and records no backward operation.
    pub tangent: Option<T2<E, TT>>,
}

/// Forward-with-tangent implementation of [`Ops`].
///
/// Parameters are slices of one flat θ tensor (as in
/// [`gensplit_models::Primal`]), so the reverse pass on any scalar of the
/// outputs yields one flat gradient `grads.get(dual.theta())`. The direction
/// `v` is a constant.
pub struct Dual<'a, E: Float, TT = Taped<E>> {
    dev: Dev,
    layout: &'a ParamLayout,
    theta: T1<E>,
    v: &'a [E],
    cache: Option<&'a PrimalCache<E>>,
    convs: usize,
    blocks: BlockTracker,
    /// The first cache mismatch met (reported by [`Dual::finish`]).
    cache_error: Option<HvpError>,
    _tt: std::marker::PhantomData<TT>,
}

impl<'a, E: Float, TT> Dual<'a, E, TT>
where
    Dev: Device<E>,
    TT: Tape<E, Dev>,
{
    /// Wraps θ (a flat tensor whose gradient is wanted) and the direction
    /// `v`; both must have the layout's length
    /// ([`ModelError::ThetaLength`], [`HvpError::DirectionLength`]).
    pub fn new(layout: &'a ParamLayout, theta: T1<E>, v: &'a [E]) -> Result<Self, HvpError> {
        if theta.shape().0 != layout.len() {
            return Err(ModelError::ThetaLength {
                expected: layout.len(),
                got: theta.shape().0,
            }
            .into());
        }
        if v.len() != layout.len() {
            return Err(HvpError::DirectionLength {
                expected: layout.len(),
                got: v.len(),
            });
        }
        let dev = theta.device().clone();
        Ok(Self {
            dev,
            layout,
            theta,
            v,
            cache: None,
            convs: 0,
            blocks: BlockTracker::new(layout),
            cache_error: None,
            _tt: Default::default(),
        })
    }

    /// Checks the forward pass run so far: [`ModelError::BlockReused`] when
    /// it took a parameter block twice (its gradient would be wrong, see
    /// [`BlockTracker`]), [`HvpError::CacheMismatch`] when the cache given to
    /// [`Dual::with_cache`] was recorded by another batch, model or call
    /// site (the pass then ran those layers uncached, so its values are
    /// right, but the caller mixed up caches).
    pub fn finish(&self) -> Result<(), HvpError> {
        self.blocks.finish(self.layout)?;
        match &self.cache_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Uses (and on the first pass fills) `cache` for the conv layers. The
    /// cache must belong to this model, θ and batch.
    pub fn with_cache(mut self, cache: &'a PrimalCache<E>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The flat θ tensor (its gradient is `grads.get(dual.theta())`).
    pub fn theta(&self) -> &T1<E> {
        &self.theta
    }

    /// Block `id` of θ, taped back to θ. Call once per block per forward
    /// (a second call makes [`Dual::finish`] fail).
    fn block(&self, id: BlockId) -> T1<E, Taped<E>> {
        self.blocks.take(id);
        param_block(&self.theta, self.layout, id)
    }

    /// Block `id` of θ as a matrix `[shape[0], rest]`.
    fn block2(&self, id: BlockId) -> T2<E, Taped<E>> {
        self.blocks.take(id);
        param_matrix(&self.theta, self.layout, id)
    }

    /// Block `id` of the direction, constant.
    fn vblock(&self, id: BlockId) -> T1<E> {
        let b = self.layout.block(id);
        self.dev.tensor_from_vec(self.v[b.range()].to_vec(), (b.len(),))
    }

    /// Block `id` of the direction as a constant matrix `[shape[0], rest]`.
    fn vblock2(&self, id: BlockId) -> T2<E> {
        let b = self.layout.block(id);
        let (r, c) = (b.shape[0], b.shape[1..].iter().product());
        self.dev.tensor_from_vec(self.v[b.range()].to_vec(), (r, c))
    }

    fn indices(&self, t: &[u32]) -> Tensor<(usize,), usize, Dev> {
        self.dev
            .tensor_from_vec(t.iter().map(|&t| t as usize).collect(), (t.len(),))
    }
}

impl<E: Float, TT> Ops<E> for Dual<'_, E, TT>
where
    Dev: Device<E>,
    TT: Tape<E, Dev> + Merge<TT> + Merge<NoneTape>,
    Taped<E>: Merge<TT>,
{
    type Act = DualAct<E, TT>;

    fn images(&mut self, pixels: &[f32], features: usize) -> Self::Act {
        let n = pixels.len() / features;
        let x: Vec<E> = E::from_f32s(pixels);
        DualAct {
            primal: self
                .dev
                .tensor_from_vec(x, (n, features))
                .put_tape(Taped::<E>::default()),
            tangent: None,
        }
    }

    fn embed_pair(&mut self, table: BlockId, a: &[u32], b: &[u32]) -> Self::Act {
        // Slice the table once; its second use is a same-id clone.
        let tab = self.block2(table);
        let tab2 = tab.with_empty_tape();
        let ea: T2<E, Taped<E>> = tab.gather(self.indices(a));
        let eb: T2<E, Taped<E>> = tab2.gather(self.indices(b));
        let primal = (ea, eb).concat_along(Axis::<1>);
        let vt = self.vblock2(table);
        let va: T2<E> = vt.clone().gather(self.indices(a));
        let vb: T2<E> = vt.gather(self.indices(b));
        let tangent = (va, vb).concat_along(Axis::<1>).put_tape(TT::default());
        DualAct {
            primal,
            tangent: Some(tangent),
        }
    }

    fn linear(&mut self, x: Self::Act, w: BlockId, b: BlockId) -> Self::Act {
        let n = x.primal.shape().0;
        let out = self.layout.block(w).shape[0];
        let wt = self.block2(w).permute::<(usize, usize), Axes2<1, 0>>();
        let wt_t: T2<E, TT> = wt.retaped();
        let vt = self.vblock2(w).permute::<(usize, usize), Axes2<1, 0>>();
        let c = self.vblock(b).broadcast_like::<_, Axis<0>>(&(n, out));
        // ż = ẋ Wᵀ + x Vᵀ + c
        let tangent = match x.tangent {
            Some(xd) => xd.matmul(wt_t) + (x.primal.retaped::<TT>().matmul(vt) + c),
            // x does not depend on θ: x Vᵀ + c is a constant.
            None => (x.primal.retaped::<NoneTape>().matmul(vt) + c).put_tape(TT::default()),
        };
        let bias = self.block(b).broadcast_like::<_, Axis<0>>(&(n, out));
        let primal = x.primal.matmul(wt) + bias;
        DualAct {
            primal,
            tangent: Some(tangent),
        }
    }

    fn conv2d(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        self.conv(x, geom, w, b, false)
    }

    fn conv2d_relu(&mut self, x: Self::Act, geom: &ConvGeom, w: BlockId, b: BlockId) -> Self::Act {
        self.conv(x, geom, w, b, true)
    }

    fn relu(&mut self, x: Self::Act) -> Self::Act {
        match x.tangent {
            Some(t) => {
                let (primal, tangent) = relu_dual(x.primal, t);
                DualAct {
                    primal,
                    tangent: Some(tangent),
                }
            }
            None => DualAct {
                primal: x.primal.relu(),
                tangent: None,
            },
        }
    }
}

impl<E: Float, TT> Dual<'_, E, TT>
where
    Dev: Device<E>,
    TT: Tape<E, Dev>,
    Taped<E>: Merge<TT>,
{
    /// The conv layer (with a fused ReLU when `relu`).
    fn conv(&mut self, x: DualAct<E, TT>, geom: &ConvGeom, w: BlockId, b: BlockId, relu: bool) -> DualAct<E, TT> {
        // z = conv(x, W, b), ż = conv(ẋ, W, 0) + conv(x, V, c) in one fused
        // op (one im2col of x); with ẋ = None, ż is a constant.
        let (wr, br) = (self.layout.block(w).range(), self.layout.block(b).range());
        let n = x.primal.shape().0;
        let mut slot = self.cache.map(|c| c.slot(self.convs));
        if let Some(reason) = slot.as_ref().and_then(|s| s.mismatch(n, geom, relu)) {
            // Run this layer uncached; `finish` reports the mix-up.
            slot = None;
            self.cache_error.get_or_insert(HvpError::CacheMismatch {
                conv: self.convs,
                reason,
            });
        }
        self.convs += 1;
        let (primal, tangent) = conv2d_dual(
            x.primal,
            x.tangent,
            self.block(w),
            &self.v[wr],
            self.block(b),
            &self.v[br],
            geom,
            relu,
            slot.as_ref(),
        );
        DualAct {
            primal,
            tangent: Some(tangent),
        }
    }
}

/// Fused ReLU of a (primal, tangent) pair: `a = max(z, 0)`,
/// `ȧ = 1[z > 0] · ż`, with one backward op on `a`'s tape: with
/// `G = ∂L/∂a`, `Ġ = ∂L/∂ȧ`, `∂L/∂z += 1[z > 0] · G` and (when `TT` records
/// a tape) `∂L/∂ż += 1[z > 0] · Ġ`. The mask is a constant (ReLU's second
/// derivative vanishes almost everywhere). `ȧ` gets an empty tape; its
/// gradient is complete before this op runs, since its consumers are
/// recorded later.
fn relu_dual<E: Float, TT>(z: T2<E, Taped<E>>, zdot: T2<E, TT>) -> (T2<E, Taped<E>>, T2<E, TT>)
where
    Dev: Device<E>,
    TT: Tape<E, Dev>,
    Taped<E>: Merge<TT>,
{
    let shape = *z.shape();
    let (z, tz) = z.split_tape();
    let (zd, tzd) = zdot.split_tape();
    let mut tape = tz.merge(tzd);
    let mut a = host_vec(&z);
    let mask: Vec<bool> = a.iter().map(|&v| v > E::zero()).collect();
    let mut ad = host_vec(&zd);
    for ((a, ad), &m) in a.iter_mut().zip(ad.iter_mut()).zip(&mask) {
        if !m {
            *a = E::zero();
            *ad = E::zero();
        }
    }
    let dev = z.device().clone();
    let a = dev.tensor_from_vec(a, shape);
    let ad = dev.tensor_from_vec(ad, shape);
    let (zg, zdg, ag, adg) = (z.ghost(), zd.ghost(), a.ghost(), ad.ghost());
    let tangent_taped = TT::OWNS_TAPE;
    tape.add_backward_op(move |grads| {
        let ga = take_grad::<E>(grads.get_or_alloc_mut(&ag)?);
        masked_add(cpu_vec::<E>(grads.get_or_alloc_mut(&zg)?), &ga, &mask);
        *cpu_vec::<E>(grads.get_or_alloc_mut(&ag)?) = ga;
        if tangent_taped {
            let gad = take_grad::<E>(grads.get_or_alloc_mut(&adg)?);
            masked_add(cpu_vec::<E>(grads.get_or_alloc_mut(&zdg)?), &gad, &mask);
            *cpu_vec::<E>(grads.get_or_alloc_mut(&adg)?) = gad;
        }
        Ok(())
    });
    (a.put_tape(tape), ad.put_tape(TT::default()))
}

/// `dst += 1[mask] · src`.
fn masked_add<E: Float>(dst: &mut [E], src: &[E], mask: &[bool]) {
    for ((d, &s), &m) in dst.iter_mut().zip(src).zip(mask) {
        if m {
            *d += s;
        }
    }
}
