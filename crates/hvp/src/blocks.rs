//! Per-block curvature: the Hessian (or Gauss–Newton matrix) restricted to
//! named parameter blocks, and the off-diagonal block between two sets of
//! blocks, as matrix-free operators of the restricted dimension.
//!
//! ## The math
//!
//! θ ∈ ℝⁿ is cut into the named blocks of the model's
//! [`ParamLayout`] (the CNN's `conv1.weight`, `conv1.bias`, …, `conv3.bias`,
//! `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias`; the modular MLP's
//! `embed`, `fc1.weight`, `fc1.bias`, `fc2.weight`, `fc2.bias`). For a set A
//! of θ's coordinates (a union of blocks, [`BlockSelection`]) let
//! `E_A ∈ ℝ^{n×|A|}` embed ℝ^|A| into ℝⁿ by zero-padding (its columns are the
//! unit vectors `e_i`, `i ∈ A`, in θ order); `E_Aᵀ` picks A's coordinates.
//! For two sets A, B the block of the curvature matrix H (Hessian or
//! Gauss–Newton, whatever the wrapped operator applies) is
//!
//! `H_AB = E_Aᵀ H E_B  ∈ ℝ^{|A|×|B|}`,
//!
//! the rows A and columns B of H. A product never materialises H or the rest
//! of θ's coordinates: `H_AB x = (H E_B x)_A`, i.e. zero-pad `x` to θ's
//! length, take **one full curvature-vector product**, and keep the rows in
//! A. So a restricted product costs the same as a full one (the curvature of
//! a block still depends on every layer's activations), and operators over
//! different blocks can share one [`HessianOperator`] and its primal cache.
//!
//! * `H_AA` is symmetric (H is), so [`BlockOperator`] is a
//!   [`LinearOperator`] of dimension |A|: Lanczos, SLQ and Hutchinson run on
//!   it unchanged. By Cauchy interlacing its eigenvalues lie within H's
//!   extreme eigenvalues; with the Gauss–Newton matrix it is positive
//!   semidefinite.
//! * `H_AB` (A ≠ B) is rectangular and not symmetric: [`OffDiagonal`]
//!   applies `H_AB x` and, through H's symmetry, `H_ABᵀ y = H_BA y`
//!   ([`OffDiagonal::apply_transpose`]), so `xᵀ H_AB y = yᵀ H_BA x`.
//!
//! Over a partition of θ into sets `A₁, …, A_m` the full product splits as
//! `(H v)_{A_i} = Σ_j H_{A_i A_j} v_{A_j}`.
//!
//! ## Patterns
//!
//! A selection is given by patterns: an exact block name (`conv1.weight`),
//! or a prefix followed by a trailing `*` (`fc2.*` matches every block whose
//! name starts with `fc2.`, i.e. `fc2.weight` and `fc2.bias`; `conv*` every
//! conv block; `*` everything). A pattern that matches no block is an error
//! ([`BlockError::UnknownBlock`]) that lists the available blocks. The
//! selection is the union of the matched blocks (a block matched twice counts
//! once), kept in θ order.
//!
//! ```
//! use gensplit_eigen::{lanczos, LanczosParams, LinearOperator, NoObserver, Which};
//! use gensplit_hvp::{BlockOperator, BlockSelection, Curvature, HessianOperator};
//! use gensplit_models::{DataInputs, Dataset, Model, ModMlp, ModMlpConfig};
//!
//! let model = ModMlp::new(&ModMlpConfig { p: 5, embed: 3, hidden: 8 }).unwrap();
//! let theta: Vec<f64> = model.init(0);
//! let (a, b): (Vec<u32>, Vec<u32>) = (0..25).map(|i| (i / 5, i % 5)).unzip();
//! let labels = a.iter().zip(&b).map(|(x, y)| (x + y) % 5).collect();
//! let data = Dataset { inputs: DataInputs::Tokens { a, b }, labels };
//! let h = HessianOperator::new(&model, theta, &data, 0, Curvature::Hessian).unwrap();
//!
//! // The Hessian restricted to the output layer (weight and bias).
//! let fc2 = BlockSelection::new(model.layout(), &["fc2.*"]).unwrap();
//! assert_eq!(fc2.len(), 5 * 8 + 5);
//! let h_fc2 = BlockOperator::new(&h, fc2).unwrap();
//! assert_eq!(h_fc2.dim(), 45);
//! let params = LanczosParams { k: 1, which: Which::LargestAlgebraic, tol: 1e-8, ..Default::default() };
//! let top = lanczos(&h_fc2, &params, &mut NoObserver).unwrap();
//! assert!(top.values[0] > 0.0);
//!
//! // The same through the operator's shortcut; unknown names are errors.
//! assert_eq!(h.block(&["fc2.weight", "fc2.bias"]).unwrap().dim(), 45);
//! assert!(h.block(&["fc3.*"]).is_err());
//! ```

use crate::HessianOperator;
use dfdx::prelude::Device;
use gensplit_eigen::LinearOperator;
use gensplit_models::{Dev, Float, Model, ParamLayout};
use std::ops::Range;

/// Errors of block selections and restricted operators.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// A pattern matches no block of the layout.
    #[error("no parameter block matches `{pattern}`; available blocks: {}", available.join(", "))]
    UnknownBlock {
        /// The pattern as given.
        pattern: String,
        /// Every block name of the layout, in θ order.
        available: Vec<String>,
    },
    /// A pattern is empty or has a `*` that is not its last character.
    #[error("invalid block pattern `{pattern}`: use an exact block name or a prefix followed by a trailing `*`")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
    },
    /// No pattern was given, or the matched blocks hold no parameters.
    #[error("the block selection is empty")]
    EmptySelection,
    /// The two sets of an off-diagonal block share blocks.
    #[error("the row and column sets of an off-diagonal block overlap in {}", blocks.join(", "))]
    Overlap {
        /// The shared block names, in θ order.
        blocks: Vec<String>,
    },
    /// The selection was resolved on a layout of another size than the
    /// operator's dimension.
    #[error("the selection's layout has {layout} parameters, the operator acts on {operator}")]
    DimensionMismatch {
        /// Parameters of the selection's layout.
        layout: usize,
        /// Dimension of the wrapped operator.
        operator: usize,
    },
    /// A vector handed to a block product has the wrong length.
    #[error("`{arg}` of {op} has {got} entries, expected {expected}")]
    VectorLength {
        /// The product (`BlockOperator::apply`, `OffDiagonal::apply`, ...).
        op: &'static str,
        /// Which argument (`x` or `y`).
        arg: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
}

/// [`BlockError::VectorLength`] unless `x` and `y` have the lengths given.
fn check_lengths(op: &'static str, x: &[f64], nx: usize, y: &[f64], ny: usize) -> Result<(), BlockError> {
    for (arg, got, expected) in [("x", x.len(), nx), ("y", y.len(), ny)] {
        if got != expected {
            return Err(BlockError::VectorLength { op, arg, expected, got });
        }
    }
    Ok(())
}

/// A set of whole parameter blocks (a set A of θ's coordinates), resolved
/// from a [`ParamLayout`] and name patterns (see the [module docs](self)).
///
/// Coordinates are kept in θ order: position `k` of a restricted vector is
/// the `k`-th selected coordinate of θ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSelection {
    /// Selected block names, in θ order.
    names: Vec<String>,
    /// Their index ranges in θ, sorted and disjoint.
    ranges: Vec<Range<usize>>,
    /// |A|.
    len: usize,
    /// n, the layout's parameter count.
    full_len: usize,
}

impl BlockSelection {
    /// Resolves `patterns` (exact block names or trailing-`*` prefixes)
    /// against `layout`; the selection is the union of the matched blocks.
    ///
    /// Errors: [`BlockError::InvalidPattern`], [`BlockError::UnknownBlock`]
    /// (listing the available blocks), [`BlockError::EmptySelection`] when no
    /// pattern is given or the blocks hold no parameters.
    pub fn new<S: AsRef<str>>(layout: &ParamLayout, patterns: &[S]) -> Result<Self, BlockError> {
        let blocks = layout.blocks();
        let mut chosen = vec![false; blocks.len()];
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let prefix = match pattern.find('*') {
                None => None,
                Some(i) if i + 1 == pattern.len() => Some(&pattern[..i]),
                Some(_) => {
                    return Err(BlockError::InvalidPattern {
                        pattern: pattern.into(),
                    })
                }
            };
            if pattern.is_empty() {
                return Err(BlockError::InvalidPattern {
                    pattern: pattern.into(),
                });
            }
            let mut matched = false;
            for (c, b) in chosen.iter_mut().zip(blocks) {
                let hit = match prefix {
                    Some(p) => b.name.starts_with(p),
                    None => b.name == pattern,
                };
                if hit {
                    *c = true;
                    matched = true;
                }
            }
            if !matched {
                return Err(BlockError::UnknownBlock {
                    pattern: pattern.into(),
                    available: blocks.iter().map(|b| b.name.clone()).collect(),
                });
            }
        }
        let selected = blocks.iter().zip(&chosen).filter(|(_, &c)| c).map(|(b, _)| b);
        let (names, ranges): (Vec<String>, Vec<Range<usize>>) = selected
            .filter(|b| !b.is_empty())
            .map(|b| (b.name.clone(), b.range()))
            .unzip();
        let len = ranges.iter().map(|r| r.len()).sum();
        if len == 0 {
            return Err(BlockError::EmptySelection);
        }
        Ok(Self {
            names,
            ranges,
            len,
            full_len: layout.len(),
        })
    }

    /// Every block of `layout` (A = all of θ).
    pub fn all(layout: &ParamLayout) -> Result<Self, BlockError> {
        Self::new(layout, &["*"])
    }

    /// The layout's blocks grouped by layer: consecutive blocks whose names
    /// share the part before the last `.` (`conv1.weight` and `conv1.bias`)
    /// form one group, labelled by the pattern that selects it (`conv1.*`);
    /// a name without a `.` (`embed`) is a group of its own, labelled by the
    /// name. The groups partition θ (blocks without parameters are left
    /// out). For the reference CNN: `conv1.*`, `conv2.*`, `conv3.*`, `fc1.*`,
    /// `fc2.*`; for the modular MLP: `embed`, `fc1.*`, `fc2.*`.
    pub fn layers(layout: &ParamLayout) -> Vec<(String, BlockSelection)> {
        let mut groups: Vec<(String, BlockSelection)> = Vec::new();
        for b in layout.blocks().iter().filter(|b| !b.is_empty()) {
            let label = match b.name.rfind('.') {
                Some(i) => format!("{}*", &b.name[..=i]),
                None => b.name.clone(),
            };
            match groups.last_mut() {
                Some((l, sel)) if *l == label && label.ends_with('*') => {
                    sel.names.push(b.name.clone());
                    sel.ranges.push(b.range());
                    sel.len += b.len();
                }
                _ => groups.push((
                    label,
                    BlockSelection {
                        names: vec![b.name.clone()],
                        ranges: vec![b.range()],
                        len: b.len(),
                        full_len: layout.len(),
                    },
                )),
            }
        }
        groups
    }

    /// |A|: the number of selected coordinates (the restricted dimension).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a selection holds at least one parameter.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// n: the parameter count of the layout the selection was resolved on.
    pub fn full_len(&self) -> usize {
        self.full_len
    }

    /// The selected block names, in θ order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The selected blocks' index ranges in θ, one per name of
    /// [`Self::names`], sorted and disjoint.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// The selected coordinates of θ, in order (the columns of `E_A`).
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    /// True when coordinate `i` of θ is selected.
    pub fn contains(&self, i: usize) -> bool {
        self.ranges.iter().any(|r| r.contains(&i))
    }

    /// The block names both selections hold, in θ order (empty when they
    /// are disjoint).
    pub fn shared_blocks(&self, other: &BlockSelection) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.ranges)
            .filter(|(_, r)| other.ranges.iter().any(|o| o.start < r.end && r.start < o.end))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `E_Aᵀ v`: the selected coordinates of a full-length vector.
    ///
    /// # Panics
    /// When `full.len() != self.full_len()`.
    pub fn restrict<T: Copy>(&self, full: &[T]) -> Vec<T> {
        assert_eq!(full.len(), self.full_len, "BlockSelection::restrict: wrong length");
        let mut out = Vec::with_capacity(self.len);
        for r in &self.ranges {
            out.extend_from_slice(&full[r.clone()]);
        }
        out
    }

    /// `E_A x`: a full-length vector holding `x` at the selected coordinates
    /// and zeros elsewhere.
    ///
    /// # Panics
    /// When `x.len() != self.len()`.
    pub fn embed(&self, x: &[f64]) -> Vec<f64> {
        let mut full = vec![0.0; self.full_len];
        self.scatter(x, &mut full);
        full
    }

    /// Writes `x` into the selected coordinates of `full`, leaving the others
    /// unchanged.
    ///
    /// # Panics
    /// When `x.len() != self.len()` or `full.len() != self.full_len()`.
    pub fn scatter<T: Copy>(&self, x: &[T], full: &mut [T]) {
        assert_eq!(x.len(), self.len, "BlockSelection::scatter: x has the wrong length");
        assert_eq!(
            full.len(),
            self.full_len,
            "BlockSelection::scatter: full has the wrong length"
        );
        let mut k = 0;
        for r in &self.ranges {
            full[r.clone()].copy_from_slice(&x[k..k + r.len()]);
            k += r.len();
        }
    }

    /// `‖v_A‖² / ‖v‖²`: the share of a full-length vector's squared norm
    /// that lies in the selection (0 for the zero vector). Over a partition
    /// of θ the shares sum to 1.
    ///
    /// # Panics
    /// When `full.len() != self.full_len()`.
    pub fn norm_share<T: Copy + Into<f64>>(&self, full: &[T]) -> f64 {
        assert_eq!(full.len(), self.full_len, "BlockSelection::norm_share: wrong length");
        let sq = |s: &[T]| s.iter().map(|&x| x.into() * x.into()).sum::<f64>();
        let total = sq(full);
        if total == 0.0 {
            return 0.0;
        }
        self.ranges.iter().map(|r| sq(&full[r.clone()])).sum::<f64>() / total
    }

    /// `(H E_B x)_A` where `self` is B and `rows` is A: one full product.
    fn product<Op: LinearOperator + ?Sized>(&self, op: &Op, x: &[f64], rows: &BlockSelection, y: &mut [f64]) {
        let full_x = self.embed(x);
        let mut full_y = vec![0.0; self.full_len];
        op.apply(&full_x, &mut full_y);
        let mut k = 0;
        for r in &rows.ranges {
            y[k..k + r.len()].copy_from_slice(&full_y[r.clone()]);
            k += r.len();
        }
    }
}

fn check_dim(op_dim: usize, sel: &BlockSelection) -> Result<(), BlockError> {
    if op_dim != sel.full_len {
        return Err(BlockError::DimensionMismatch {
            layout: sel.full_len,
            operator: op_dim,
        });
    }
    Ok(())
}

/// The diagonal block `H_AA = E_Aᵀ H E_A` of a symmetric operator H on ℝⁿ
/// (any [`LinearOperator`]: a [`HessianOperator`] with either
/// [`crate::Curvature`], a reference to one, a projected operator…), as a
/// symmetric [`LinearOperator`] of dimension |A|. Each product costs one
/// product of H.
///
/// [`LinearOperator::constrain`] is the identity (the wrapped operator's
/// constraint is not carried over to the block).
#[derive(Clone, Debug)]
pub struct BlockOperator<Op> {
    op: Op,
    sel: BlockSelection,
}

impl<Op: LinearOperator> BlockOperator<Op> {
    /// Restricts `op` to `sel`.
    /// Error: [`BlockError::DimensionMismatch`] when `op.dim()` is not the
    /// selection's [`BlockSelection::full_len`].
    pub fn new(op: Op, sel: BlockSelection) -> Result<Self, BlockError> {
        check_dim(op.dim(), &sel)?;
        Ok(Self { op, sel })
    }

    /// The selection A.
    pub fn selection(&self) -> &BlockSelection {
        &self.sel
    }

    /// The wrapped full operator.
    pub fn inner(&self) -> &Op {
        &self.op
    }

    /// Unwraps the full operator.
    pub fn into_inner(self) -> Op {
        self.op
    }
}

impl<Op: LinearOperator> BlockOperator<Op> {
    /// `y = H_AA x` like [`LinearOperator::apply`], but checked:
    /// [`BlockError::VectorLength`] when `x` or `y` does not have length |A|.
    pub fn try_apply(&self, x: &[f64], y: &mut [f64]) -> Result<(), BlockError> {
        check_lengths("BlockOperator::apply", x, self.sel.len, y, self.sel.len)?;
        self.sel.product(&self.op, x, &self.sel, y);
        Ok(())
    }
}

impl<Op: LinearOperator> LinearOperator for BlockOperator<Op> {
    fn dim(&self) -> usize {
        self.sel.len
    }

    /// `y = H_AA x = (H E_A x)_A`: one product of the wrapped operator.
    ///
    /// # Panics
    /// When `x` or `y` does not have length |A| (the trait's contract);
    /// [`BlockOperator::try_apply`] is the checked alternative.
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        if let Err(e) = self.try_apply(x, y) {
            panic!("{e}");
        }
    }
}

/// The off-diagonal block `H_AB = E_Aᵀ H E_B` (|A| × |B|) between two
/// disjoint block selections, for a symmetric operator H on ℝⁿ. Rectangular
/// and not symmetric, so not a [`LinearOperator`]: [`OffDiagonal::apply`]
/// maps ℝ^|B| → ℝ^|A| and [`OffDiagonal::apply_transpose`] ℝ^|A| → ℝ^|B|
/// (`H_ABᵀ = H_BA` because H is symmetric). Each product costs one product of
/// H.
#[derive(Clone, Debug)]
pub struct OffDiagonal<Op> {
    op: Op,
    rows: BlockSelection,
    cols: BlockSelection,
}

impl<Op: LinearOperator> OffDiagonal<Op> {
    /// The block with rows `rows` (A) and columns `cols` (B) of `op`.
    ///
    /// Errors: [`BlockError::Overlap`] when A and B share a block (use
    /// [`BlockOperator`] for a diagonal block), [`BlockError::DimensionMismatch`]
    /// when a selection does not fit `op`.
    pub fn new(op: Op, rows: BlockSelection, cols: BlockSelection) -> Result<Self, BlockError> {
        check_dim(op.dim(), &rows)?;
        check_dim(op.dim(), &cols)?;
        let blocks = rows.shared_blocks(&cols);
        if !blocks.is_empty() {
            return Err(BlockError::Overlap { blocks });
        }
        Ok(Self { op, rows, cols })
    }

    /// `(|A|, |B|)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows.len, self.cols.len)
    }

    /// The row selection A.
    pub fn rows(&self) -> &BlockSelection {
        &self.rows
    }

    /// The column selection B.
    pub fn cols(&self) -> &BlockSelection {
        &self.cols
    }

    /// The wrapped full operator.
    pub fn inner(&self) -> &Op {
        &self.op
    }

    /// `H_BA = H_ABᵀ` as an operator of its own (rows and columns swapped).
    pub fn transpose(self) -> Self {
        Self {
            op: self.op,
            rows: self.cols,
            cols: self.rows,
        }
    }

    /// `y = H_AB x = (H E_B x)_A`, `x` of length |B|, `y` of length |A|.
    ///
    /// # Panics
    /// When `x` or `y` has the wrong length; [`OffDiagonal::try_apply`] is
    /// the checked alternative.
    pub fn apply(&self, x: &[f64], y: &mut [f64]) {
        if let Err(e) = self.try_apply(x, y) {
            panic!("{e}");
        }
    }

    /// [`OffDiagonal::apply`], with [`BlockError::VectorLength`] for a
    /// vector of the wrong length.
    pub fn try_apply(&self, x: &[f64], y: &mut [f64]) -> Result<(), BlockError> {
        check_lengths("OffDiagonal::apply", x, self.cols.len, y, self.rows.len)?;
        self.cols.product(&self.op, x, &self.rows, y);
        Ok(())
    }

    /// [`OffDiagonal::apply_transpose`], with [`BlockError::VectorLength`]
    /// for a vector of the wrong length.
    pub fn try_apply_transpose(&self, x: &[f64], y: &mut [f64]) -> Result<(), BlockError> {
        check_lengths("OffDiagonal::apply_transpose", x, self.rows.len, y, self.cols.len)?;
        self.rows.product(&self.op, x, &self.cols, y);
        Ok(())
    }

    /// `y = H_ABᵀ x = H_BA x = (H E_A x)_B`, `x` of length |A|, `y` of
    /// length |B|.
    ///
    /// # Panics
    /// When `x` or `y` has the wrong length;
    /// [`OffDiagonal::try_apply_transpose`] is the checked alternative.
    pub fn apply_transpose(&self, x: &[f64], y: &mut [f64]) {
        if let Err(e) = self.try_apply_transpose(x, y) {
            panic!("{e}");
        }
    }
}

impl<M: Model + ?Sized, E: Float> HessianOperator<'_, M, E>
where
    Dev: Device<E>,
{
    /// The curvature restricted to the blocks matching `patterns` (resolved
    /// on the model's layout): `H_AA` as a [`BlockOperator`] borrowing this
    /// operator (so blocks share its primal cache and product counter).
    pub fn block<S: AsRef<str>>(&self, patterns: &[S]) -> Result<BlockOperator<&Self>, BlockError> {
        BlockOperator::new(self, BlockSelection::new(self.model().layout(), patterns)?)
    }

    /// The off-diagonal block `H_AB` with rows matching `rows` (A) and
    /// columns matching `cols` (B), borrowing this operator.
    pub fn off_diagonal<S: AsRef<str>, T: AsRef<str>>(
        &self,
        rows: &[S],
        cols: &[T],
    ) -> Result<OffDiagonal<&Self>, BlockError> {
        let layout = self.model().layout();
        OffDiagonal::new(
            self,
            BlockSelection::new(layout, rows)?,
            BlockSelection::new(layout, cols)?,
        )
    }
}
