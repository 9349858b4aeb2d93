//! The differentiable dfdx op: `y = conv(x, W, b)` on `x: [n, C·H·W]`,
//! `W: [O·C·k²]`, `b: [O]`, recorded on dfdx's tape from outside dfdx
//! (split the tapes, compute, `add_backward_op`, put the tape back). Its
//! backward adds `∂L/∂W = Σ G·colsᵀ`, `∂L/∂b = Σ G` and (unless the input is
//! data) `∂L/∂x = col2im(Wᵀ·G)`; with a fused ReLU, `a = max(z, 0)` and
//! `∂L/∂z = 1[z > 0]·∂L/∂a`.

use super::geometry::ConvGeom;
use super::kernel::{chunked_backward, chunked_forward, Activation, Forward};
use crate::{cpu_slice, cpu_vec, host_vec, take_grad, Dev, Float, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::{Merge, Tape};

/// The differentiable op: `x: [n, C·H·W]`, `w: [O·C·k·k]`, `b: [O]` →
/// `[n, O·Ho·Wo]`. Gradients flow to every operand that carries a tape
/// (at least `x` must carry the tape if any does: dfdx records the op on
/// `x`'s tape type).
///
/// # Panics
/// When `x` does not have `g.in_features()` columns, `w` or `b` has the
/// wrong length, or the geometry is invalid (check it with
/// [`ConvGeom::validate`]): the models build these shapes from a validated
/// layout, so a mismatch is a caller bug (likewise for [`conv2d_with`] and
/// [`conv2d_relu_with`]).
pub fn conv2d<E, TX, TW, TB>(x: T2<E, TX>, w: T1<E, TW>, b: T1<E, TB>, g: &ConvGeom) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    conv2d_with(x, w, b, g, true)
}

/// [`conv2d`] with a choice: `want_dx = false` skips the input gradient
/// (the `Wᵀ·G` GEMM and col2im) when `x` is data that needs none — the
/// first layer of a network. Its gradient is then left at zero.
///
/// The backward pass recomputes each sample's im2col from the saved `x`
/// rather than storing all of them.
pub fn conv2d_with<E, TX, TW, TB>(x: T2<E, TX>, w: T1<E, TW>, b: T1<E, TB>, g: &ConvGeom, want_dx: bool) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    conv_op(x, w, b, g, want_dx, false)
}

/// `relu(conv2d(x, W, b))` as one op ([`conv2d_with`] followed by a ReLU):
/// the forward writes `a = max(z, 0)` straight from the GEMM output, and the
/// backward masks `∂L/∂a` by `1[z > 0]` while repacking it, so no
/// pre-activation tensor or gradient is ever allocated. Equal to the two
/// ops in sequence (the ReLU's derivative at exactly 0 is taken as 0, as
/// dfdx does).
pub fn conv2d_relu_with<E, TX, TW, TB>(
    x: T2<E, TX>,
    w: T1<E, TW>,
    b: T1<E, TB>,
    g: &ConvGeom,
    want_dx: bool,
) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    conv_op(x, w, b, g, want_dx, true)
}

/// [`conv2d_with`] with an optional fused ReLU.
fn conv_op<E, TX, TW, TB>(
    x: T2<E, TX>,
    w: T1<E, TW>,
    b: T1<E, TB>,
    g: &ConvGeom,
    want_dx: bool,
    relu: bool,
) -> T2<E, TX>
where
    E: Float,
    Dev: Device<E>,
    TX: Tape<E, Dev> + Merge<TW> + Merge<TB>,
    TW: Tape<E, Dev>,
    TB: Tape<E, Dev>,
{
    let n = x.shape().0;
    assert_eq!(x.shape().1, g.in_features(), "conv2d: input features");
    let (x, tx) = x.split_tape();
    let (w, tw) = w.split_tape();
    let (b, tb) = b.split_tape();
    let mut tape = tx.merge(tw).merge(tb);
    let (wv, xv, bv) = (host_vec(&w), host_vec(&x), host_vec(&b));
    // Without a tape nothing reads the ReLU's mask: skip it.
    let act = match (relu, TX::OWNS_TAPE) {
        (false, _) => Activation::Identity,
        (true, true) => Activation::Relu,
        (true, false) => Activation::ReluNoMask,
    };
    let Forward { z: y, mask, .. } = chunked_forward(g, &xv, None, &wv, None, &bv, n, act);
    let dev = x.device().clone();
    let out = dev.tensor_from_vec(y, (n, g.out_features()));
    if TX::OWNS_TAPE {
        let (xg, wg, bg, og) = (x.ghost(), w.ghost(), b.ghost(), out.ghost());
        let g = *g;
        tape.add_backward_op(move |grads| {
            // Borrow G by moving it out of the store (put back below).
            let dy = take_grad::<E>(grads.get_or_alloc_mut(&og)?);
            let dxg = cpu_slice::<E>(grads.get_or_alloc_mut(&xg)?);
            let dxg = want_dx.then_some(dxg);
            let (dw, db) = chunked_backward(&g, &xv, None, &wv, &[], &dy, None, mask.as_deref(), None, n, dxg, None);
            *cpu_vec::<E>(grads.get_or_alloc_mut(&og)?) = dy;
            add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&wg)?), &dw);
            add_into(cpu_slice::<E>(grads.get_or_alloc_mut(&bg)?), &db);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// `a += b` elementwise.
pub(crate) fn add_into<E: Float>(a: &mut [E], b: &[E]) {
    a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
}
