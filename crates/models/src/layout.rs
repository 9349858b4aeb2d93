//! Flat parameter layout: the shared coordinate system.
//!
//! A model's parameters are one vector θ ∈ ℝⁿ. A [`ParamLayout`] is an ordered
//! list of named blocks; block `i` occupies `θ[offset_i .. offset_i + len_i]`
//! and is read row-major with its `shape` (conv weights as
//! `[out, in, kh, kw]`, linear weights as `[out, in]`, biases as `[out]`,
//! embeddings as `[vocab, dim]`). Blocks are contiguous and in order.

use serde::{Deserialize, Serialize};

/// Index of a block in a [`ParamLayout`].
pub type BlockId = usize;

/// One named parameter block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Name, e.g. `conv1.weight`.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat vector.
    pub offset: usize,
}

impl Block {
    /// Number of elements (product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for a block with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The block's index range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Ordered, contiguous parameter blocks of one model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamLayout {
    blocks: Vec<Block>,
    len: usize,
}

impl ParamLayout {
    /// An empty layout.
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a block and returns its id.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> BlockId {
        let block = Block {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.len,
        };
        self.len += block.len();
        self.blocks.push(block);
        self.blocks.len() - 1
    }
    /// Total number of parameters n.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// All blocks, in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }
    /// One block.
    pub fn block(&self, id: BlockId) -> &Block {
        &self.blocks[id]
    }
    /// Looks a block up by name.
    pub fn find(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }
    /// The slice of `theta` that holds block `id`.
    pub fn view<'a, E>(&self, theta: &'a [E], id: BlockId) -> &'a [E] {
        &theta[self.blocks[id].range()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_contiguous() {
        let mut l = ParamLayout::new();
        let a = l.push("a", &[2, 3]);
        let b = l.push("b", &[4]);
        assert_eq!(l.len(), 10);
        assert_eq!(l.block(a).range(), 0..6);
        assert_eq!(l.block(b).range(), 6..10);
        assert_eq!(l.find("b").unwrap().offset, 6);
        let theta: Vec<u32> = (0..10).collect();
        assert_eq!(l.view(&theta, b), &[6, 7, 8, 9]);
    }
}
