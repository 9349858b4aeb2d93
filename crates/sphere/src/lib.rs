//! # gensplit-sphere
//!
//! Unsupervised sphere search: find the modules of a trained network from
//! its training loss alone. Starting at a minimum θ*, push the weights out
//! on spheres of growing radius `r` in a search space `δ = B c`, `‖c‖ = r`,
//! minimising a loss at each radius; when the cheapest way to move a fixed
//! distance is to delete ONE redundant module completely (its vote is lost,
//! the others still carry the margin), the solution concentrates, a
//! label-free order parameter jumps, and the module becomes visible.
//! Deflation (searching again orthogonal to the breaks found) enumerates
//! the modules.
//!
//! * [`space`]: search spaces — orthonormal eigen-slices, whitened
//!   slices, and "shrink" coordinates over parameter groups (hidden units)
//!   or over a weight block's components (principal, rotated, or unmixed
//!   by independent component / subspace analysis).
//! * [`objective`]: losses of the logits (cross-entropy with a temperature,
//!   a fixed-margin loss) differentiated through any model over
//!   `gensplit_models::Ops`, and the [`Objective`] trait for your own.
//! * [`search`]: the Riemannian optimizer on the sphere with linear and box
//!   constraints, seeded starts, warm starts along the radius schedule and
//!   an observer.
//! * [`order`]: order parameters (participation ratio, concentration over
//!   groups, curvature of L(r)) and the transition detector.
//! * [`mod@enumerate`]: deflation (enumerating modules one break at a time).
//!
//! The search never reads labels beyond the training loss; scoring against
//! ground truth (for modular addition, the Fourier frequencies) is the
//! caller's business (`xtask`'s `sphere_*` stages).
//!
//! ## What works on modular addition, and why the rest fails
//!
//! The test bed is the modular-addition MLP (`(a + b) mod 59`, embedding 16,
//! 128 hidden units), whose modules are known: each key Fourier frequency of
//! the embedding, with the hidden units that read it, is one parallel
//! module. Removing one frequency from the logits keeps the training
//! accuracy at 100% and raises the training loss from about 2e-6 to between
//! 5e-5 and 3e-2 (the report's excluded losses): the modules are redundant
//! votes, which is what a sphere search needs. What the `sphere_modadd`
//! stages measured (full table in the report):
//!
//! * **Eigen-spaces fail** (top-20 Hessian or Gauss–Newton eigenvectors, at
//!   the saturated minimum or right after grokking, with the CE, a tempered
//!   CE, a margin loss, the loss minus its quadratic model, a later slice,
//!   the gradient's complement): no single break. The move that deletes a
//!   module is not in those spans. At a saturated minimum the curvature is
//!   that of the hardest examples' margins, and the top function-space
//!   directions change the logits at a module's output frequency through
//!   terms that depend on a or b alone ("sensitivity, not content"): a
//!   probe here found the top-30 Gauss–Newton span holds only 0.1–0.3% of
//!   the norm of each module-deleting direction. On a sphere in such a span
//!   the cheapest moves trade margin between examples, and every frequency
//!   decays together or not at all.
//! * **Hidden-unit shrink fails**: with one coordinate per unit (incoming,
//!   bias, outgoing weights; box `[0, 1]`), the loss is about linear in each
//!   unit's damage at a saturated minimum, so the search deletes the least
//!   useful units of every module and no module is singled out.
//! * **Embedding-component shrink works** (`Coords::block_components` on
//!   the embedding, the components that hold 90% of its energy, box
//!   `[0, 1]`, warm starts): the principal components of the token
//!   embedding are (mixtures of) Fourier modes, about two per module, found
//!   without knowing that tokens form a cycle. The search spends its whole
//!   budget on ONE module from the smallest radius on (deleting part of a
//!   module costs margin only through that module's vote), deletes it by
//!   `r ≈ √2`, and only then must spill damage into the others: the order
//!   parameter (how many hidden units the change touches) jumps right after
//!   the break, which is the label-free transition. Two details matter. The
//!   90% energy cut: with the small noise components included, the search
//!   first deletes them for free and, at the larger radius that follows,
//!   a uniform shrink of every module is about as cheap as deleting one
//!   (a probe here: all five frequencies at ~60% survival). And warm starts:
//!   with a fresh random start at every radius the search lands in the
//!   uniform-shrink basin more often.
//! * **Enumeration: the second round needs a linear loss and decoupled
//!   directions.** After the weakest module is frozen, the plain CE (convex
//!   in each module's vote at a saturated minimum: the smallest margins
//!   dominate) prefers a uniform shrink of every remaining component to
//!   deleting one more module (network 1: all four remaining frequencies at
//!   49–67%, no transition). A tempered CE (T = 32) is about linear in the
//!   votes, so the minimum on the sphere in the box is a vertex: whole
//!   coordinates go one at a time. But principal components of modules
//!   with close singular values are arbitrary mixtures of those modules, so
//!   a vertex of the principal-component box deletes parts of two modules.
//!   Rotating the components by their first-order shrink costs
//!   ([`Coords::block_components_rotated`]) separates modules whose votes
//!   differ, not those whose votes are close (recall 0.6 and 0.4 before).
//! * **What enumerates every module: independent subspace analysis of the
//!   embedding** ([`Coords::block_subspaces_ica`]). Within the principal
//!   span, rotate the token-space directions to the least Gaussian signals
//!   over the tokens ([`ica_rotation`]: largest `Σ (κ − 3)²`; a module's
//!   signal is a sinusoid of the token, κ = 1.5, a mix of two κ = 2.25),
//!   then group directions whose squared signals correlate
//!   ([`dependent_groups`]: a cos/sin pair's squares sum to a constant,
//!   correlation −1; different frequencies, 0). One shrink coordinate per
//!   group deletes one module exactly, so the tempered CE's vertex at
//!   `r = 1` is one whole module, the order parameter is flat up to it and
//!   jumps at the next radius. Nothing here reads labels or frequencies:
//!   the unmixing reads θ only, the search the training loss. Measured
//!   (full configuration, `xtask`'s report): 5 of 5 starts single-break on
//!   both networks (network 1: frequencies 8, 18, 19, 21, 25, one per start;
//!   network 2: 12, 15, 29), all 5 flagged at the next radius; the
//!   enumeration removes one key frequency per round (the broken one at
//!   ≤ 1% of its signal, every other ≥ 99%), recall 1.0 on both networks,
//!   no frequency twice. The fifth round is forced: four of the five
//!   coordinates are frozen, and the single break there shows that the
//!   last coordinate is a module too. The ICA directions without the
//!   grouping ([`Coords::block_components_ica`]) split each module in two
//!   halves, and the order parameter then also jumps between "half" and
//!   "whole" module, which confuses the break detection.
//!
//! ## Example: three planted redundant modules
//!
//! A lookup network for `(a + b) mod 3` with three complete copies of the
//! table ("modules") voting with strengths 2, 3 and 4: every module alone
//! classifies every pair. In shrink coordinates over the three modules'
//! hidden units, the loss on the sphere of radius 1 is lowest when the
//! whole damage sits on the weakest module, and deflation then finds the
//! other two.
//!
//! ```
//! use gensplit_models::Model;
//! use gensplit_sphere::{planted, search, unit_groups, Avoid, Coords, LogitLoss, ModelObjective, SphereParams};
//! let (model, theta, data) = planted::lookup_modules(3, &[2.0, 3.0, 4.0]);
//! let units = unit_groups(model.layout(), "fc1", "fc2").unwrap();
//! // one coordinate per module: the union of its 9 units' weights
//! let modules: Vec<Vec<usize>> = units.chunks(9).map(|c| c.concat()).collect();
//! let coords = Coords::shrink(&theta, &modules).unwrap();
//! let obj = ModelObjective::new(&model, &data, LogitLoss::CE, 0).unwrap();
//! let params = SphereParams { radii: vec![0.5, 1.0], bounds: Some((0.0, 1.0)), starts: 2, ..Default::default() };
//! let paths = search(&obj, &theta, &coords, &params, &Avoid::default(), &mut |_| {}).unwrap();
//! let c = &paths[0].points[1].c; // radius 1: the weakest module is deleted
//! assert!(c[0] > 0.99 && c[1] < 0.01 && c[2] < 0.01, "{c:?}");
//! // deflation: search again with the deleted module held at zero
//! let avoid = Avoid { frozen: vec![0], ..Default::default() };
//! let again = search(&obj, &theta, &coords, &params, &avoid, &mut |_| {}).unwrap();
//! let c2 = &again[0].points[1].c;
//! assert!(c2[1] > 0.99 && c2[0] < 0.01, "{c2:?}");
//! ```

// NaN-rejecting comparisons (`!(x > 0.0)`) are intended throughout.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod enumerate;
pub mod error;
pub mod objective;
pub mod order;
pub mod planted;
pub mod search;
pub mod space;

pub use enumerate::{concentrated_break, enumerate, Break, EnumStop, EnumerateParams, Enumeration};
pub use error::SphereError;
pub use objective::{LogitLoss, ModelObjective, Objective};
pub use order::{
    detect_transition, group_concentration, loss_curvature, participation_ratio, sharpest_transition, Concentration,
    Transition,
};
pub use search::{search, Avoid, Event, RadiusPoint, SphereParams, StartPath};
pub use space::{dependent_groups, ica_rotation, kurtosis, unit_groups, Coords};
