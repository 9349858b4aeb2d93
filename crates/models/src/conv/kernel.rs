//! Convolution passes on plain buffers, a chunk of [`CHUNK`] samples per
//! GEMM. Per sample, with `cols = im2col(x)`: forward `Y = W·cols + b`;
//! backward, with `G = ∂L/∂Y`: `∂L/∂W = Σ_n G_n·cols_nᵀ`,
//! `∂L/∂b = Σ_{n,i,j} G_n`, `∂L/∂x_n = col2im(Wᵀ·G_n)`; and the tangent
//! `ż = W·colsᵈ + V·cols + c` with `colsᵈ = im2col(ẋ)`. A chunk's im2col
//! matrices sit side by side (`[C·k², m·Ho·Wo]`), so each product is one
//! GEMM per chunk; partial weight gradients are summed in chunk order, so
//! results do not depend on the thread count.

use super::gemm::matmul;
use super::geometry::ConvGeom;
use super::im2col::Patcher;
use crate::Float;
use rayon::prelude::*;
use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Samples per parallel work item and per GEMM (fixed, for determinism).
pub const CHUNK: usize = 8;

/// Forward pass on plain buffers: `y = conv(x, W, b)`, `[n, O·Ho·Wo]`.
pub fn forward_raw<E: Float>(g: &ConvGeom, x: &[E], w: &[E], b: &[E], n: usize) -> Vec<E> {
    chunked_forward(g, x, None, w, None, b, n, Activation::Identity).z
}

/// What [`chunked_forward`] applies to `z = W·cols + b` on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `z` itself.
    Identity,
    /// `a = max(z, 0)`, recording the mask `1[z > 0]` a backward pass or a
    /// tangent needs.
    Relu,
    /// `a = max(z, 0)` without the mask (inference: nothing reads it).
    ReluNoMask,
}

impl Activation {
    /// [`Activation::Relu`] when `relu`, else [`Activation::Identity`].
    pub(crate) fn relu_if(relu: bool) -> Self {
        if relu {
            Self::Relu
        } else {
            Self::Identity
        }
    }
}

/// Gradients of one conv call: `(dx, dw, db)`.
pub struct ConvGrads<E> {
    /// ∂L/∂x, `[n, C·H·W]` (`None` when not requested).
    pub dx: Option<Vec<E>>,
    /// ∂L/∂W, `[O·C·k·k]`.
    pub dw: Vec<E>,
    /// ∂L/∂b, `[O]`.
    pub db: Vec<E>,
}

/// Backward pass on plain buffers (recomputing im2col from `x`), with
/// `dy = ∂L/∂y`.
pub fn backward_raw<E: Float>(g: &ConvGeom, x: &[E], w: &[E], dy: &[E], n: usize, want_dx: bool) -> ConvGrads<E> {
    let mut dx = want_dx.then(|| vec![E::zero(); n * g.in_features()]);
    let (dw, db) = dual_backward_raw(g, x, None, w, &[], dy, None, n, dx.as_deref_mut(), None);
    ConvGrads { dx, dw, db }
}

/// Fused forward of a convolution and its tangent, on plain buffers.
///
/// With `cols = im2col(x)` and `colsᵈ = im2col(ẋ)` per sample:
/// `z = W·cols + b` and `ż = W·colsᵈ + V·cols + c` (`ż = V·cols + c` when
/// `xdot` is `None`, i.e. ẋ = 0). One im2col of `x` serves both outputs.
/// Returns `(z, ż)`, each `[n, O·Ho·Wo]`.
#[allow(clippy::too_many_arguments)]
pub fn dual_forward_raw<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    b: &[E],
    c: &[E],
    n: usize,
) -> (Vec<E>, Vec<E>) {
    assert_eq!(v.len(), g.weight_len());
    assert_eq!(c.len(), g.c_out);
    let out = chunked_forward(g, x, xdot, w, Some((v, c)), b, n, Activation::Identity);
    (out.z, out.zd.expect("tangent requested"))
}

/// Per-thread work buffers for one chunk of samples.
struct Work<E> {
    pt: Patcher<E>,
    /// im2col of the chunk's `x`, `[C·k·k, m·Ho·Wo]` (sample s in columns `s·Ho·Wo..`).
    cols: Vec<E>,
    /// The same for `ẋ`.
    cols_d: Vec<E>,
    /// GEMM outputs / output gradients in the same column order, `[2·O, m·Ho·Wo]`.
    out: Vec<E>,
}

impl<E: Float> Work<E> {
    fn new(g: &ConvGeom) -> Self {
        Self {
            pt: Patcher::new(g),
            cols: Vec::new(),
            cols_d: Vec::new(),
            out: Vec::new(),
        }
    }
}

/// Most [`Work`] buffers a thread keeps between calls.
const POOL_MAX: usize = 16;

thread_local! {
    /// This thread's idle [`Work`] buffers (any element type and geometry).
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// [`Work`] buffers borrowed from the calling thread's pool (a new set when
/// the pool has none of this element type and geometry) and returned to it
/// on drop. Rayon calls a parallel loop's `init` once per piece it splits
/// off, often once per chunk: without the pool every piece allocated and
/// zeroed megabytes of columns. Every buffer is written before it is read
/// (the padded input's border is never written, so it stays zero), so reuse
/// changes no result.
struct Scratch<E: Float>(Option<Work<E>>);

impl<E: Float> Scratch<E> {
    fn get(g: &ConvGeom) -> Self {
        let found = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let i = p
                .iter()
                .position(|b| b.downcast_ref::<Work<E>>().is_some_and(|w| w.pt.geom() == g))?;
            p.swap_remove(i).downcast::<Work<E>>().ok()
        });
        Self(Some(found.map_or_else(|| Work::new(g), |b| *b)))
    }
}

impl<E: Float> Deref for Scratch<E> {
    type Target = Work<E>;
    fn deref(&self) -> &Work<E> {
        self.0.as_ref().expect("present until drop")
    }
}

impl<E: Float> DerefMut for Scratch<E> {
    fn deref_mut(&mut self) -> &mut Work<E> {
        self.0.as_mut().expect("present until drop")
    }
}

impl<E: Float> Drop for Scratch<E> {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            // `try_with`: during thread teardown the pool may be gone.
            let _ = POOL.try_with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    if p.len() < POOL_MAX {
                        p.push(Box::new(w));
                    }
                }
            });
        }
    }
}

/// Resizes `buf` to `len` (contents unspecified; callers overwrite).
fn sized<E: Float>(buf: &mut Vec<E>, len: usize) -> &mut [E] {
    buf.resize(len, E::zero());
    &mut buf[..len]
}

/// The samples of chunk `ci`: `lo..hi`.
fn chunk_range(ci: usize, n: usize) -> (usize, usize) {
    (ci * CHUNK, ((ci + 1) * CHUNK).min(n))
}

/// Outputs of [`chunked_forward`].
pub(crate) struct Forward<E> {
    /// `z` (or `relu(z)`), `[n, O·Ho·Wo]`.
    pub(crate) z: Vec<E>,
    /// `ż` (or `1[z > 0]·ż`), when a tangent was asked for.
    pub(crate) zd: Option<Vec<E>>,
    /// `1[z > 0]`, when the ReLU was fused.
    pub(crate) mask: Option<Vec<bool>>,
}

/// Forward on plain buffers, a chunk of [`CHUNK`] samples per GEMM: the
/// chunk's im2col matrices sit side by side (`[C·k·k, m·Ho·Wo]`), so
/// `[W; V]·cols` is one GEMM with `m·Ho·Wo` columns; the result is copied
/// back to per-sample NCHW rows with the bias added. With `tangent =
/// Some((V, c))` also returns `ż = W·colsᵈ + V·cols + c` (`ẋ = 0` when
/// `xdot` is `None`). With [`Activation::Relu`], returns `a = max(z, 0)`,
/// `ȧ = 1[z > 0]·ż` and the mask instead; with [`Activation::ReluNoMask`]
/// (no tangent), `a` alone.
#[allow(clippy::too_many_arguments)]
pub(crate) fn chunked_forward<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    tangent: Option<(&[E], &[E])>,
    b: &[E],
    n: usize,
    act: Activation,
) -> Forward<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch, o) = (g.in_features(), g.out_features(), g.patch(), g.c_out);
    assert_eq!(x.len(), n * fin);
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(b.len(), o);
    assert!(
        !(tangent.is_some() && act == Activation::ReluNoMask),
        "a tangent through a ReLU needs its mask"
    );
    // [W; V] stacked, so one GEMM gives both W·cols and V·cols.
    let wv: Vec<E> = match tangent {
        Some((v, _)) => w.iter().chain(v).copied().collect(),
        None => w.to_vec(),
    };
    let rows = wv.len() / patch;
    let nch = n.div_ceil(CHUNK);
    let mut z = vec![E::zero(); n * fout];
    let mut zd = tangent.map(|_| vec![E::zero(); n * fout]);
    let mut mask = (act == Activation::Relu).then(|| vec![false; n * fout]);
    let zd_chunks = opt_chunks(zd.as_deref_mut(), fout * CHUNK, nch);
    let mask_chunks = opt_chunks(mask.as_deref_mut(), fout * CHUNK, nch);
    z.par_chunks_mut(fout * CHUNK)
        .zip(zd_chunks)
        .zip(mask_chunks)
        .enumerate()
        .for_each_init(
            || Scratch::get(g),
            |wk, (ci, ((zc, zdc), mut mc))| {
                let wk: &mut Work<E> = wk;
                let (lo, hi) = chunk_range(ci, n);
                let l = (hi - lo) * hw;
                let cols = sized(&mut wk.cols, patch * l);
                wk.pt.im2col_chunk(&x[lo * fin..hi * fin], cols);
                let out = sized(&mut wk.out, rows * l);
                matmul(rows, l, patch, out, false, &wv, patch, 1, cols, l, 1);
                let post = match (mc.as_deref_mut(), act) {
                    (Some(mc), _) => Post::Relu(mc),
                    (None, Activation::ReluNoMask) => Post::ReluOnly,
                    (None, _) => Post::Plain,
                };
                unpack_rows(&out[..o * l], b, zc, hw, fout, post);
                if let (Some((_, c)), Some(zdc)) = (tangent, zdc) {
                    let (_, outd) = out.split_at_mut(o * l);
                    if let Some(xd) = xdot {
                        let cols_d = sized(&mut wk.cols_d, patch * l);
                        wk.pt.im2col_chunk(&xd[lo * fin..hi * fin], cols_d);
                        matmul(o, l, patch, outd, true, w, patch, 1, cols_d, l, 1);
                    }
                    unpack_masked(outd, c, zdc, hw, fout, mc.as_deref());
                }
            },
        );
    Forward { z, zd, mask }
}

/// im2col of every sample of `x`, chunk after chunk as the GEMMs read it
/// (chunk `ci`'s `[C·k·k, m·Ho·Wo]` matrix at offset `ci·CHUNK·C·k·k·Ho·Wo`).
pub(crate) fn chunked_im2col<E: Float>(g: &ConvGeom, x: &[E], n: usize) -> Vec<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, patch) = (g.in_features(), g.patch());
    assert_eq!(x.len(), n * fin);
    let mut cols = vec![E::zero(); n * patch * hw];
    cols.par_chunks_mut(patch * hw * CHUNK).enumerate().for_each_init(
        || Patcher::new(g),
        |pt, (ci, cc)| {
            let (lo, hi) = chunk_range(ci, n);
            pt.im2col_chunk(&x[lo * fin..hi * fin], cc);
        },
    );
    cols
}

/// Tangent-only forward at a cached primal: `ż = V·cols + W·colsᵈ + c`
/// (`ż = V·cols + c` when `xdot` is `None`), zeroed where the cached ReLU
/// `mask` is false, with `cols` the cached im2col of `x`
/// ([`chunked_im2col`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn chunked_tangent<E: Float>(
    g: &ConvGeom,
    xcols: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    c: &[E],
    mask: Option<&[bool]>,
    n: usize,
) -> Vec<E> {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch, o) = (g.in_features(), g.out_features(), g.patch(), g.c_out);
    assert_eq!(xcols.len(), n * patch * hw);
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(v.len(), g.weight_len());
    assert_eq!(c.len(), o);
    assert!(mask.is_none_or(|m| m.len() == n * fout));
    let mut zd = vec![E::zero(); n * fout];
    zd.par_chunks_mut(fout * CHUNK).enumerate().for_each_init(
        || Scratch::get(g),
        |wk, (ci, zdc)| {
            let wk: &mut Work<E> = wk;
            let (lo, hi) = chunk_range(ci, n);
            let l = (hi - lo) * hw;
            let out = sized(&mut wk.out, o * l);
            matmul(
                o,
                l,
                patch,
                out,
                false,
                v,
                patch,
                1,
                &xcols[lo * patch * hw..][..patch * l],
                l,
                1,
            );
            if let Some(xd) = xdot {
                let cols_d = sized(&mut wk.cols_d, patch * l);
                wk.pt.im2col_chunk(&xd[lo * fin..hi * fin], cols_d);
                matmul(o, l, patch, out, true, w, patch, 1, cols_d, l, 1);
            }
            unpack_masked(out, c, zdc, hw, fout, mask.map(|m| &m[lo * fout..hi * fout]));
        },
    );
    zd
}

/// An optional buffer cut into `piece`-sized chunks (`nch` `None`s when absent).
fn opt_chunks<T>(d: Option<&mut [T]>, piece: usize, nch: usize) -> Vec<Option<&mut [T]>> {
    match d {
        Some(d) => d.chunks_mut(piece).map(Some).collect(),
        None => (0..nch).map(|_| None).collect(),
    }
}

/// What [`unpack_rows`] does to `z = src + bias` on the way out.
enum Post<'a> {
    /// `z`.
    Plain,
    /// `max(z, 0)`, recording `1[z > 0]` (same layout as `dst`).
    Relu(&'a mut [bool]),
    /// `max(z, 0)` (the same values as [`Post::Relu`], no mask).
    ReluOnly,
    /// `z` where the mask (same layout as `dst`) is true, else 0.
    Masked(&'a [bool]),
}

/// `dst[i] = post(src[o·(m·hw) + s·hw + p] + bias[o])` with
/// `i = s·fout + o·hw + p`, for the `m = dst.len() / fout` samples of a
/// chunk: one contiguous row of `hw` values per (sample, channel), so the
/// inner loops are plain zips.
fn unpack_rows<E: Float>(src: &[E], bias: &[E], dst: &mut [E], hw: usize, fout: usize, mut post: Post<'_>) {
    let l = src.len() / bias.len();
    for (s, ds) in dst.chunks_mut(fout).enumerate() {
        for (oi, (row, &bo)) in ds.chunks_mut(hw).zip(bias).enumerate() {
            let sr = &src[oi * l + s * hw..][..hw];
            let at = s * fout + oi * hw;
            match &mut post {
                Post::Plain => row.iter_mut().zip(sr).for_each(|(d, &v)| *d = v + bo),
                Post::Relu(m) => {
                    for ((d, &v), k) in row.iter_mut().zip(sr).zip(&mut m[at..at + hw]) {
                        let z = v + bo;
                        *k = z > E::zero();
                        *d = if *k { z } else { E::zero() };
                    }
                }
                Post::ReluOnly => row.iter_mut().zip(sr).for_each(|(d, &v)| {
                    let z = v + bo;
                    *d = if z > E::zero() { z } else { E::zero() };
                }),
                Post::Masked(m) => {
                    for ((d, &v), &k) in row.iter_mut().zip(sr).zip(&m[at..at + hw]) {
                        *d = if k { v + bo } else { E::zero() };
                    }
                }
            }
        }
    }
}

/// [`unpack_rows`] zeroing where the chunk's ReLU `mask` is false (`None`:
/// no ReLU).
fn unpack_masked<E: Float>(src: &[E], bias: &[E], dst: &mut [E], hw: usize, fout: usize, mask: Option<&[bool]>) {
    let post = match mask {
        Some(m) => Post::Masked(m),
        None => Post::Plain,
    };
    unpack_rows(src, bias, dst, hw, fout, post);
}

/// The inverse layout move: `dst[o·(m·hw) + s·hw + p] = src[s·fout + o·hw + p]`,
/// zeroed where `mask` (same layout as `src`) is false.
fn pack_rows<E: Float>(src: &[E], dst: &mut [E], o: usize, hw: usize, fout: usize, mask: Option<&[bool]>) {
    let l = dst.len() / o;
    for (s, ss) in src.chunks(fout).enumerate() {
        for (oi, row) in ss.chunks(hw).enumerate() {
            let d = &mut dst[oi * l + s * hw..][..hw];
            match mask {
                Some(m) => {
                    let m = &m[s * fout + oi * hw..][..hw];
                    for ((d, &v), &keep) in d.iter_mut().zip(row).zip(m) {
                        *d = if keep { v } else { E::zero() };
                    }
                }
                None => d.copy_from_slice(row),
            }
        }
    }
}

/// Fused backward of [`dual_forward_raw`], recomputing the im2col matrices
/// from `x` and `ẋ` (cheaper than storing them). With `G = ∂L/∂z` and
/// `Ġ = ∂L/∂ż` (`gzdot`, `None` when ż is not differentiated):
///
/// * returns `(∂L/∂W, ∂L/∂b)` with `∂L/∂W = Σ_n G_n·colsᵀ + Ġ_n·colsᵈᵀ`
///   (the second term only when both `Ġ` and `ẋ` are given) and
///   `∂L/∂b = Σ G`;
/// * `dx += col2im(Wᵀ·G + Vᵀ·Ġ)` when `dx` is given;
/// * `dxdot += col2im(Wᵀ·Ġ)` when `dxdot` and `Ġ` are given.
///
/// `V` and `c` are constants and get no gradient. Work is batched per chunk
/// of [`CHUNK`] samples (one GEMM per product over the whole chunk; `Wᵀ·G +
/// Vᵀ·Ġ` is one GEMM with `[W; V]` and `[G; Ġ]` stacked). Partial sums are
/// per fixed chunk and reduced in chunk order (thread-count independent).
#[allow(clippy::too_many_arguments)]
pub fn dual_backward_raw<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    gz: &[E],
    gzdot: Option<&[E]>,
    n: usize,
    dx: Option<&mut [E]>,
    dxdot: Option<&mut [E]>,
) -> (Vec<E>, Vec<E>) {
    chunked_backward(g, x, xdot, w, v, gz, gzdot, None, None, n, dx, dxdot)
}

/// [`dual_backward_raw`] behind a fused ReLU: `gz`, `gzdot` are the
/// gradients of `relu(z)` and `1[z > 0]·ż`, multiplied by `mask = 1[z > 0]`
/// on the way in (`None`: no ReLU).
#[allow(clippy::too_many_arguments)]
pub(crate) fn chunked_backward<E: Float>(
    g: &ConvGeom,
    x: &[E],
    xdot: Option<&[E]>,
    w: &[E],
    v: &[E],
    gz: &[E],
    gzdot: Option<&[E]>,
    mask: Option<&[bool]>,
    xcols: Option<&[E]>,
    n: usize,
    dx: Option<&mut [E]>,
    dxdot: Option<&mut [E]>,
) -> (Vec<E>, Vec<E>) {
    let (ho, wo) = g.out_hw();
    let hw = ho * wo;
    let (fin, fout, patch, o) = (g.in_features(), g.out_features(), g.patch(), g.c_out);
    // x is read only when its im2col is not given.
    match xcols {
        Some(c) => assert_eq!(c.len(), n * patch * hw),
        None => assert_eq!(x.len(), n * fin),
    }
    assert!(xdot.is_none_or(|xd| xd.len() == n * fin));
    assert_eq!(w.len(), g.weight_len());
    assert_eq!(gz.len(), n * fout);
    if let Some(gd) = gzdot {
        assert_eq!(gd.len(), n * fout);
        assert_eq!(v.len(), g.weight_len());
    }
    assert!(mask.is_none_or(|m| m.len() == n * fout));
    let dxdot = if gzdot.is_some() { dxdot } else { None };
    let nch = n.div_ceil(CHUNK);
    /// Per-chunk pieces of an optional gradient buffer of `len` entries.
    fn split<E>(d: Option<&mut [E]>, len: usize, piece: usize, nch: usize) -> Vec<Option<&mut [E]>> {
        match d {
            Some(d) => {
                assert_eq!(d.len(), len, "gradient length");
                d.chunks_mut(piece).map(Some).collect()
            }
            None => (0..nch).map(|_| None).collect(),
        }
    }
    let (dxs, dxds) = (
        split(dx, n * fin, fin * CHUNK, nch),
        split(dxdot, n * fin, fin * CHUNK, nch),
    );
    // [W; V] stacked (rows), matching [G; Ġ] stacked in `out`.
    let wv: Vec<E> = match gzdot {
        Some(_) => w.iter().chain(v).copied().collect(),
        None => w.to_vec(),
    };
    let grows = wv.len() / patch;
    let parts: Vec<(Vec<E>, Vec<E>)> = dxs
        .into_par_iter()
        .zip(dxds)
        .enumerate()
        .map_init(
            || Scratch::get(g),
            |wk, (ci, (mut dxc, mut dxdc))| {
                let wk: &mut Work<E> = wk;
                let mut dw = vec![E::zero(); g.weight_len()];
                let mut db = vec![E::zero(); o];
                let (lo, hi) = chunk_range(ci, n);
                let (m, l) = (hi - lo, (hi - lo) * hw);
                // [G; Ġ] as [grows, m·hw].
                let gs = sized(&mut wk.out, grows * l);
                let mc = mask.map(|m| &m[lo * fout..hi * fout]);
                pack_rows(&gz[lo * fout..hi * fout], &mut gs[..o * l], o, hw, fout, mc);
                if let Some(gd) = gzdot {
                    pack_rows(&gd[lo * fout..hi * fout], &mut gs[o * l..], o, hw, fout, mc);
                }
                for (dbo, row) in db.iter_mut().zip(gs.chunks(l)) {
                    *dbo = row.iter().fold(E::zero(), |a, &v| a + v);
                }
                let cols = sized(&mut wk.cols, patch * l);
                let xc: &[E] = match xcols {
                    Some(c) => &c[lo * patch * hw..][..patch * l],
                    None => {
                        wk.pt.im2col_chunk(&x[lo * fin..hi * fin], cols);
                        cols
                    }
                };
                // dW = G·colsᵀ (+ Ġ·colsᵈᵀ)
                matmul(o, patch, l, &mut dw, false, &gs[..o * l], l, 1, xc, 1, l);
                let cols = sized(&mut wk.cols, patch * l);
                if let (Some(_), Some(xd)) = (gzdot, xdot) {
                    wk.pt.im2col_chunk(&xd[lo * fin..hi * fin], cols);
                    matmul(o, patch, l, &mut dw, true, &gs[o * l..], l, 1, cols, 1, l);
                }
                // The column buffer is free again: reuse it for dcols.
                if let Some(dxc) = dxc.as_deref_mut() {
                    // dcols = [W; V]ᵀ·[G; Ġ] = Wᵀ·G + Vᵀ·Ġ
                    matmul(patch, l, grows, cols, false, &wv, 1, patch, gs, l, 1);
                    for s in 0..m {
                        wk.pt.col2im_add(cols, l, s * hw, &mut dxc[s * fin..(s + 1) * fin]);
                    }
                }
                if let Some(dxdc) = dxdc.as_deref_mut() {
                    // dcolsᵈ = Wᵀ·Ġ
                    matmul(patch, l, o, cols, false, w, 1, patch, &gs[o * l..], l, 1);
                    for s in 0..m {
                        wk.pt.col2im_add(cols, l, s * hw, &mut dxdc[s * fin..(s + 1) * fin]);
                    }
                }
                (dw, db)
            },
        )
        .collect();
    let mut dw = vec![E::zero(); g.weight_len()];
    let mut db = vec![E::zero(); o];
    for (pw, pb) in parts {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}
