//! Digit + pattern mixtures: the "two rules" data set.
//!
//! [`average`] combines a digit image and a pattern image with the same label
//! pixel-wise as `(digit + pattern) / 2`, so values stay in `[0, 1]` and both
//! the digit shape and the pattern explain the label equally well.
//! [`average_with_labels`] does the same for *mismatched* pairs (e.g. digit
//! `3` with the pattern of class `7`), used to test which rule a trained
//! network follows; the caller chooses which side's labels the result keeps.

use crate::{DataError, ImageSet, PIXELS};

/// Which input's labels a mismatched mixture keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSource {
    /// Keep the digit labels.
    Digits,
    /// Keep the pattern labels.
    Patterns,
}

fn check_shapes(digits: &ImageSet, patterns: &ImageSet) -> Result<(), DataError> {
    digits.check()?;
    patterns.check()?;
    if digits.len() != patterns.len() {
        return Err(DataError::ShapeMismatch {
            what: "number of pattern images (must equal number of digit images)",
            expected: digits.len(),
            got: patterns.len(),
        });
    }
    Ok(())
}

fn blend(digits: &ImageSet, patterns: &ImageSet, labels: Vec<u8>) -> ImageSet {
    debug_assert_eq!(digits.images.len(), labels.len() * PIXELS);
    let images = digits
        .images
        .iter()
        .zip(&patterns.images)
        .map(|(&d, &p)| (d + p) * 0.5)
        .collect();
    ImageSet { images, labels }
}

/// Pixel-wise `(d + p) / 2` of two sets with the same length and identical labels.
///
/// Errors: [`DataError::ShapeMismatch`] if lengths (or an input's own shape)
/// differ, [`DataError::LabelMismatch`] naming the first index whose labels differ.
pub fn average(digits: &ImageSet, patterns: &ImageSet) -> Result<ImageSet, DataError> {
    check_shapes(digits, patterns)?;
    if let Some((index, (&digit, &pattern))) = digits
        .labels
        .iter()
        .zip(&patterns.labels)
        .enumerate()
        .find(|(_, (d, p))| d != p)
    {
        return Err(DataError::LabelMismatch { index, digit, pattern });
    }
    Ok(blend(digits, patterns, digits.labels.clone()))
}

/// Pixel-wise `(d + p) / 2` of two equally long sets whose labels may differ;
/// the result keeps the labels of `source`.
pub fn average_with_labels(digits: &ImageSet, patterns: &ImageSet, source: LabelSource) -> Result<ImageSet, DataError> {
    check_shapes(digits, patterns)?;
    let labels = match source {
        LabelSource::Digits => digits.labels.clone(),
        LabelSource::Patterns => patterns.labels.clone(),
    };
    Ok(blend(digits, patterns, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: f32, labels: &[u8]) -> ImageSet {
        ImageSet::new(vec![v; labels.len() * PIXELS], labels.to_vec()).unwrap()
    }

    #[test]
    fn averages_pixelwise() {
        let mut d = constant(0.5, &[1, 2]);
        d.images[3] = 1.0;
        let p = constant(0.0, &[1, 2]);
        let m = average(&d, &p).unwrap();
        assert_eq!(m.labels, vec![1, 2]);
        assert_eq!(m.images[3], 0.5);
        assert_eq!(m.images[4], 0.25);
        let one = constant(1.0, &[1, 2]);
        assert!(average(&one, &one).unwrap().images.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn mismatches_are_errors() {
        let d = constant(0.5, &[1, 2]);
        assert!(matches!(
            average(&d, &constant(0.5, &[1])),
            Err(DataError::ShapeMismatch {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            average(&d, &constant(0.5, &[1, 3])),
            Err(DataError::LabelMismatch {
                index: 1,
                digit: 2,
                pattern: 3
            })
        ));
        let broken = ImageSet {
            images: vec![0.0; 5],
            labels: vec![1, 2],
        };
        assert!(average(&d, &broken).is_err());
        let m = average_with_labels(&d, &constant(0.5, &[1, 3]), LabelSource::Patterns).unwrap();
        assert_eq!(m.labels, vec![1, 3]);
        let m = average_with_labels(&d, &constant(0.5, &[1, 3]), LabelSource::Digits).unwrap();
        assert_eq!(m.labels, vec![1, 2]);
        assert!(average_with_labels(&d, &constant(0.5, &[1]), LabelSource::Digits).is_err());
    }
}
