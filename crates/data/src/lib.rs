//! Datasets for gensplit.
//!
//! gensplit studies networks trained on data that two different rules
//! explain equally well. This crate builds those data sets, deterministically
//! from a seed:
//!
//! * [`idx`]: a panic-free reader for the IDX format (raw or gzip);
//! * [`mnist`]: loads MNIST (shipped in `fixtures/mnist`, SHA-256 verified)
//!   or any other 28x28 IDX data set (e.g. Fashion-MNIST) into an [`ImageSet`];
//! * [`patterns`]: coarse random 6x6 binary patterns, one small codebook of
//!   prototypes per class, rendered as 28x28 images;
//! * [`mixed`]: pixel-wise average of a digit and a pattern carrying the same
//!   label -- the "two rules" training set;
//! * [`modular`]: modular addition `(a + b) mod p` with a seeded train/test
//!   split of all `p*p` pairs.
//!
//! Images are `f32` in `[0, 1]` (MNIST bytes divided by 255), stored
//! row-major, 784 values per image. Labels are `u8` in `0..=9`. All
//! randomness comes from [`rand_chacha::ChaCha8Rng`], which is portable and
//! stable across `rand` versions, so the same seed gives identical bytes on
//! every machine.
//!
//! # Example
//!
//! ```
//! use gensplit_data::{mixed, modular, patterns, PIXELS};
//!
//! // Patterns for labels 0..9, then an average with themselves (stand-in for digits).
//! let cb = patterns::Codebook::new(&patterns::PatternConfig::default()).unwrap();
//! let labels: Vec<u8> = (0..10).collect();
//! let pats = patterns::generate(&cb, &labels, patterns::Stream::Train);
//! assert_eq!(pats.len(), 10);
//! assert_eq!(pats.images.len(), 10 * PIXELS);
//! assert!(pats.images.iter().all(|&v| v == 0.0 || v == 1.0));
//! let mix = mixed::average(&pats, &pats).unwrap();
//! assert_eq!(mix, pats);
//!
//! // Modular addition mod 59, half the pairs for training.
//! let data = modular::generate(&modular::ModAddConfig::default()).unwrap();
//! assert_eq!(data.train.len() + data.test.len(), 59 * 59);
//! assert!(data.train.a.iter().zip(&data.train.b).zip(&data.train.labels)
//!     .all(|((a, b), y)| (a + b) % 59 == *y));
//! ```

mod error;
pub mod idx;
pub mod mixed;
pub mod mnist;
pub mod modular;
pub mod patterns;

pub use error::DataError;

/// Side length of an image in pixels (MNIST: 28).
pub const SIDE: usize = 28;
/// Pixels per image (`SIDE * SIDE` = 784).
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes (digits 0..=9).
pub const CLASSES: usize = 10;

/// A set of 28x28 grayscale images with labels.
///
/// Invariant (checked by [`ImageSet::new`] and by every loader in this
/// crate): `images.len() == labels.len() * PIXELS`, pixel values in `[0, 1]`,
/// labels in `0..CLASSES`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageSet {
    /// `n * 784` pixel values, image-major then row-major, in `[0, 1]`.
    pub images: Vec<f32>,
    /// `n` labels in `0..=9`.
    pub labels: Vec<u8>,
}

impl ImageSet {
    /// Builds a set after checking the shape (`images.len() == labels.len() * PIXELS`)
    /// and that labels are `< CLASSES`.
    pub fn new(images: Vec<f32>, labels: Vec<u8>) -> Result<ImageSet, DataError> {
        let set = ImageSet { images, labels };
        set.check()?;
        Ok(set)
    }

    /// Checks the invariant: `images.len() == labels.len() * PIXELS` and all
    /// labels `< CLASSES` (pixel ranges are not checked).
    pub fn check(&self) -> Result<(), DataError> {
        if self.images.len() != self.labels.len() * PIXELS {
            return Err(DataError::ShapeMismatch {
                what: "ImageSet pixels (labels * 784)",
                expected: self.labels.len() * PIXELS,
                got: self.images.len(),
            });
        }
        if let Some((index, &value)) = self.labels.iter().enumerate().find(|(_, &l)| l as usize >= CLASSES) {
            return Err(DataError::InvalidConfig {
                field: "labels",
                reason: format!("label #{index} is {value}, expected 0..=9"),
            });
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` if the set holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`; [`ImageSet::get_image`] is the checked
    /// alternative.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The 784 pixels of image `i`, or `None` when `i >= self.len()`.
    pub fn get_image(&self, i: usize) -> Option<&[f32]> {
        let lo = i.checked_mul(PIXELS)?;
        self.images.get(lo..lo.checked_add(PIXELS)?)
    }

    /// The images at `idx` (in that order, repeats allowed);
    /// [`DataError::IndexOutOfRange`] for an index `>= self.len()`.
    pub fn try_subset(&self, idx: &[usize]) -> Result<ImageSet, DataError> {
        if let Some(&i) = idx.iter().find(|&&i| i >= self.len() || self.get_image(i).is_none()) {
            return Err(DataError::IndexOutOfRange {
                what: "image",
                index: i,
                len: self.len(),
            });
        }
        Ok(self.subset(idx))
    }

    /// The images at `idx` (in that order, repeats allowed).
    ///
    /// # Panics
    /// If an index is `>= self.len()`; [`ImageSet::try_subset`] is the
    /// checked alternative.
    pub fn subset(&self, idx: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(idx.len() * PIXELS);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        ImageSet { images, labels }
    }

    /// The first `min(n, len)` images.
    pub fn first(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            images: self.images[..n * PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// Number of images per class (index = label).
    pub fn label_counts(&self) -> [usize; CLASSES] {
        let mut c = [0; CLASSES];
        for &l in &self.labels {
            if let Some(slot) = c.get_mut(l as usize) {
                *slot += 1;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        let images = (0..3 * PIXELS).map(|i| (i / PIXELS) as f32 / 2.0).collect();
        ImageSet::new(images, vec![4, 7, 1]).unwrap()
    }

    #[test]
    fn accessors() {
        let s = tiny();
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert!(s.image(2).iter().all(|&v| v == 1.0));
        let sub = s.subset(&[2, 0, 2]);
        assert_eq!(sub.labels, vec![1, 4, 1]);
        assert_eq!(sub.image(1), s.image(0));
        assert_eq!(s.first(2).labels, vec![4, 7]);
        assert_eq!(s.first(100), s);
        assert!(s.first(0).is_empty());
        assert_eq!(s.label_counts()[7], 1);
    }

    #[test]
    fn new_checks_shape_and_labels() {
        assert!(matches!(
            ImageSet::new(vec![0.0; 10], vec![1]),
            Err(DataError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            ImageSet::new(vec![0.0; PIXELS], vec![10]),
            Err(DataError::InvalidConfig { .. })
        ));
    }
}
