//! The fused (primal, tangent) convolution for forward-over-reverse
//! curvature products: `z = conv(x, W, b)`, `ż = conv(ẋ, W, 0) + conv(x, V, c)`
//! sharing one im2col of `x`, optionally followed by the ReLU pair
//! `a = max(z, 0)`, `ȧ = 1[z > 0]·ż`. Backward, with `G = ∂L/∂z`,
//! `Ġ = ∂L/∂ż`: `∂L/∂W = Σ G·colsᵀ + Ġ·colsᵈᵀ`, `∂L/∂b = Σ G`,
//! `∂L/∂x = col2im(Wᵀ·G + Vᵀ·Ġ)`, `∂L/∂ẋ = col2im(Wᵀ·Ġ)`. The
//! [`DualConvCache`] keeps the `v`-independent parts (`z`, the mask, `cols`,
//! `∂L/∂ẋ`) across products at one θ and batch.

use super::geometry::ConvGeom;
use super::kernel::{chunked_backward, chunked_forward, chunked_im2col, chunked_tangent, Activation, Forward};
use super::op::add_into;
use crate::{cpu_slice, cpu_vec, host_vec, take_grad, Dev, Float, Taped, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::{Merge, Tape};
use std::sync::{Arc, OnceLock};

/// The parts of one conv layer's dual pass ([`conv2d_dual`]) that do
/// not depend on the direction `v`, kept across curvature products at one
/// fixed θ and one fixed batch:
///
/// * the primal output `z` (or `a = max(z, 0)`) and the ReLU mask
///   `1[z > 0]`, which spares the forward the `W·cols` GEMM;
/// * `cols = im2col(x)`, which spares the forward and the backward an
///   im2col each;
/// * `∂L/∂ẋ = col2im(Wᵀ·Ġ)`, with `Ġ = ∂L/∂ż`. In a Hessian-vector product
///   `L = L̇ = Σ (softmax(z_out) − y)·ż_out` is linear in the tangents with
///   coefficients set by θ and the batch alone, so every tangent's
///   gradient (`Ġ` at every layer) is the ordinary backprop gradient of the
///   loss and does not depend on `v`; this spares the backward the `Wᵀ·Ġ`
///   GEMM and its col2im.
///
/// A cache fills on the first product that passes it (the "recording"
/// pass, which costs what an uncached product costs) and is read by every
/// later one. It is the caller's job to use one cache for one (θ, batch,
/// call site) only: `gensplit_hvp::HessianOperator` owns one per batch and
/// conv call. Memory: [`Self::bytes`].
#[derive(Debug, Default)]
pub struct DualConvCache<E: Float> {
    primal: OnceLock<CachedPrimal<E>>,
    dxdot: OnceLock<Vec<E>>,
}

/// The cached primal output of a conv layer and its ReLU mask.
#[derive(Debug)]
struct CachedPrimal<E: Float> {
    a: T2<E>,
    mask: Option<Vec<bool>>,
    /// im2col of the input `x`, chunk after chunk (chunk `ci`'s
    /// `[C·k·k, m·Ho·Wo]` matrix starts at `ci·CHUNK·C·k·k·Ho·Wo`).
    cols: Vec<E>,
}

impl<E: Float> DualConvCache<E> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            primal: OnceLock::new(),
            dxdot: OnceLock::new(),
        }
    }

    /// Bytes held (values and masks).
    pub fn bytes(&self) -> usize {
        let p = self.primal.get().map_or(0, |p| {
            (p.a.shape().num_elements() + p.cols.len()) * std::mem::size_of::<E>() + p.mask.as_ref().map_or(0, Vec::len)
        });
        p + self.dxdot.get().map_or(0, |d| d.len() * std::mem::size_of::<E>())
    }

    /// Whether the primal output is recorded.
    pub fn has_primal(&self) -> bool {
        self.primal.get().is_some()
    }

    /// Whether `∂L/∂ẋ` is recorded.
    pub fn has_tangent_grad(&self) -> bool {
        self.dxdot.get().is_some()
    }

    /// Why this cache cannot serve a [`conv2d_dual`] call on `n` samples of
    /// geometry `g` with the given ReLU choice (`None`: it can — it is empty
    /// or was recorded by such a call). [`conv2d_dual`] panics on a
    /// mismatch; callers check with this first (`gensplit_hvp::Dual` turns
    /// it into an error).
    pub fn mismatch(&self, n: usize, g: &ConvGeom, relu: bool) -> Option<String> {
        let p = self.primal.get()?;
        let want = (n, g.checked_out_features()?);
        if p.a.shape() != &want {
            return Some(format!(
                "recorded output is {:?}, this call makes {:?} (another batch or layer)",
                p.a.shape(),
                want
            ));
        }
        if p.mask.is_some() != relu {
            return Some(format!(
                "recorded {} a fused ReLU, this call is {} (another call site)",
                if p.mask.is_some() { "with" } else { "without" },
                if relu { "with one" } else { "without" }
            ));
        }
        None
    }
}

/// Where the backward pass finds the ReLU mask and (from a cache) the
/// input's im2col.
enum PrimalSrc<E: Float> {
    Own(Option<Vec<bool>>),
    Cached(Arc<DualConvCache<E>>),
}

impl<E: Float> PrimalSrc<E> {
    fn get(&self) -> Option<&[bool]> {
        match self {
            PrimalSrc::Own(m) => m.as_deref(),
            PrimalSrc::Cached(c) => c.primal.get().and_then(|p| p.mask.as_deref()),
        }
    }

    /// The cached im2col of the input, if any.
    fn cols(&self) -> Option<&[E]> {
        match self {
            PrimalSrc::Own(_) => None,
            PrimalSrc::Cached(c) => c.primal.get().map(|p| &p.cols[..]),
        }
    }
}

/// Fused convolution with its tangent, for forward-over-reverse curvature
/// products (`gensplit_hvp::Dual`): given the primal input `x`, its tangent
/// `ẋ` (`None` = identically zero, and `x` then does not depend on θ), the
/// taped weight and bias blocks `W`, `b` and the constant direction blocks
/// `V`, `c` at their place, returns
///
/// ```text
/// z = conv(x, W, b),    ż = conv(ẋ, W, 0) + conv(x, V, c)
/// ```
///
/// sharing one im2col of `x` ([`dual_forward_raw`](super::dual_forward_raw)). The backward op (one,
/// recorded on `z`'s tape; `ż` gets an empty tape of type `TT`, and its
/// gradient is complete before this op runs since every consumer of `ż` is
/// recorded later) propagates, with `G = ∂L/∂z`, `Ġ = ∂L/∂ż` ([`dual_backward_raw`](super::dual_backward_raw)):
/// `∂L/∂W = Σ G·colsᵀ + Ġ·colsᵈᵀ`, `∂L/∂b = Σ G`,
/// `∂L/∂x = col2im(Wᵀ·G + Vᵀ·Ġ)`, `∂L/∂ẋ = col2im(Wᵀ·Ġ)`. `Ġ` is used only
/// when `TT` records a tape and `ẋ` is given; with `ẋ = None`, `ż` is a
/// constant and `x` gets no gradient (it is data). Equal, up to rounding, to
/// the three separate [`conv2d`](super::conv2d) calls.
///
/// With `relu`, returns the pair after a ReLU instead, `a = max(z, 0)` and
/// `ȧ = 1[z > 0]·ż` (the tangent rule of ReLU, whose mask is a constant),
/// fused as in [`conv2d_relu_with`](super::conv2d_relu_with): the incoming `∂L/∂a`, `∂L/∂ȧ` are
/// masked while being repacked for the GEMMs.
///
/// **Cache.** For repeated products at a fixed θ and batch, pass a
/// [`DualConvCache`] (`None`: no cache). With an empty cache the op
/// computes exactly the above and records the `v`-independent parts; with a
/// filled cache the forward computes only `ż = V·cols + W·colsᵈ + c` from
/// the recorded `cols` (2 GEMM units instead of 3 for a layer with ẋ, 1
/// instead of 2 for the first layer), and the backward skips `Wᵀ·Ġ` and
/// adds the recorded `∂L/∂ẋ` instead (4 units instead of 5). Products from
/// a filled cache are deterministic and agree with uncached ones up to
/// rounding (bit for bit in the tests, where the GEMMs reduce in the same
/// order).
///
/// # Panics
/// When a filled cache holds a primal of another batch size or another
/// ReLU choice (a caller bug, not a data error; check first with
/// [`DualConvCache::mismatch`], as `gensplit_hvp::Dual` does), or when the
/// shapes do not fit the geometry (as for [`conv2d`](super::conv2d)).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn conv2d_dual<E, TT>(
    x: T2<E, Taped<E>>,
    xdot: Option<T2<E, TT>>,
    w: T1<E, Taped<E>>,
    v: &[E],
    b: T1<E, Taped<E>>,
    c: &[E],
    g: &ConvGeom,
    relu: bool,
    cache: Option<&Arc<DualConvCache<E>>>,
) -> (T2<E, Taped<E>>, T2<E, TT>)
where
    E: Float,
    Dev: Device<E>,
    TT: Tape<E, Dev>,
    Taped<E>: Merge<TT>,
{
    let n = x.shape().0;
    assert_eq!(x.shape().1, g.in_features(), "conv2d_dual: input features");
    let (x, tx) = x.split_tape();
    let (w, tw) = w.split_tape();
    let (b, tb) = b.split_tape();
    let tape = <Taped<E> as Merge<Taped<E>>>::merge(tx, tw);
    let mut tape = <Taped<E> as Merge<Taped<E>>>::merge(tape, tb);
    let xd = xdot.map(|t| {
        assert_eq!(t.shape(), x.shape(), "conv2d_dual: tangent shape");
        let (t, tt) = t.split_tape();
        tape = std::mem::take(&mut tape).merge(tt);
        t
    });
    let hit = cache.and_then(|cc| cc.primal.get().map(|p| (cc, p)));
    // From a filled cache, x is needed only through its recorded im2col.
    let xv = if hit.is_some() { Vec::new() } else { host_vec(&x) };
    let wv = host_vec(&w);
    let xdv = xd.as_ref().map(host_vec);
    let dev = x.device().clone();
    let (z, zd, mask) = match hit {
        Some((cc, p)) => {
            assert_eq!(
                p.a.shape(),
                &(n, g.out_features()),
                "conv2d_dual: cached primal of another batch"
            );
            assert_eq!(
                p.mask.is_some(),
                relu,
                "conv2d_dual: cached primal of another call site"
            );
            let zd = chunked_tangent(g, &p.cols, xdv.as_deref(), &wv, v, c, p.mask.as_deref(), n);
            // A clone shares the recorded buffer (and its tensor id, which
            // is unique within each product's graph).
            (p.a.clone(), zd, PrimalSrc::Cached(cc.clone()))
        }
        None => {
            let bv = host_vec(&b);
            let Forward { z, zd, mask } = chunked_forward(
                g,
                &xv,
                xdv.as_deref(),
                &wv,
                Some((v, c)),
                &bv,
                n,
                Activation::relu_if(relu),
            );
            let z = dev.tensor_from_vec(z, (n, g.out_features()));
            let mask = match cache {
                Some(cc) => {
                    // A lost race leaves the other recording, of equal bits.
                    let cols = chunked_im2col(g, &xv, n);
                    let _ = cc.primal.set(CachedPrimal {
                        a: z.clone(),
                        mask,
                        cols,
                    });
                    PrimalSrc::Cached(cc.clone())
                }
                None => PrimalSrc::Own(mask),
            };
            (z, zd.expect("tangent requested"), mask)
        }
    };
    let zd = dev.tensor_from_vec(zd, (n, g.out_features()));
    let (xg, wg, bg, zg, zdg) = (x.ghost(), w.ghost(), b.ghost(), z.ghost(), zd.ghost());
    let xdg = xd.map(|t| t.ghost());
    let tangent_taped = TT::OWNS_TAPE && xdg.is_some();
    let vv = v.to_vec();
    let g = *g;
    let cache = cache.cloned();
    tape.add_backward_op(move |grads| {
        let gz = take_grad::<E>(grads.get_or_alloc_mut(&zg)?);
        let gzd = if tangent_taped {
            Some(take_grad::<E>(grads.get_or_alloc_mut(&zdg)?))
        } else {
            None
        };
        // dẋ goes to a moved-out buffer so that dx can be borrowed in place.
        let mut dxd = match (&xdg, tangent_taped) {
            (Some(xdg), true) => Some(take_grad::<E>(grads.get_or_alloc_mut(xdg)?)),
            _ => None,
        };
        // With a cache, col2im(Wᵀ·Ġ) is recorded once (into a zeroed
        // buffer) and then added, on the recording pass and later alike.
        let cached_dxd = cache.as_ref().filter(|_| dxd.is_some());
        let mut record = match cached_dxd {
            Some(cc) if !cc.has_tangent_grad() => Some(vec![E::zero(); n * g.in_features()]),
            _ => None,
        };
        let dxd_target = match (cached_dxd, record.as_deref_mut()) {
            (Some(_), rec) => rec,
            (None, _) => dxd.as_deref_mut(),
        };
        let dxg = if xdg.is_some() {
            Some(cpu_slice::<E>(grads.get_or_alloc_mut(&xg)?))
        } else {
            None
        };
        let (dw, db) = chunked_backward(
            &g,
            &xv,
            xdv.as_deref(),
            &wv,
            &vv,
            &gz,
            gzd.as_deref(),
            mask.get(),
            mask.cols(),
            n,
            dxg,
            dxd_target,
        );
        if let (Some(cc), Some(d)) = (cached_dxd, dxd.as_deref_mut()) {
            if let Some(rec) = record {
                let _ = cc.dxdot.set(rec);
            }
            add_into(d, cc.dxdot.get().expect("recorded above"));
        }
        *cpu_vec::<E>(grads.get_or_alloc_mut(&zg)?) = gz;
        if let Some(gzd) = gzd {
            *cpu_vec::<E>(grads.get_or_alloc_mut(&zdg)?) = gzd;
        }
        if let (Some(xdg), Some(dxd)) = (&xdg, dxd) {
            *cpu_vec::<E>(grads.get_or_alloc_mut(xdg)?) = dxd;
        }
        add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&wg)?), &dw);
        add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&bg)?), &db);
        Ok(())
    });
    (z.put_tape(tape), zd.put_tape(TT::default()))
}
