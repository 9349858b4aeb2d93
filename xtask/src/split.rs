//! Contiguous splits of an image set (calibration, held-out, scoring
//! samples), checked against the set's length: the ranges come from the
//! user's config, so a split that does not fit is an error naming the
//! config section and the split, never a panic or a silent overlap.

use anyhow::{bail, Result};
use gensplit_data::ImageSet;
use gensplit_models::Dataset;

/// Images `lo..lo + n` of `set` as a dataset. `section` names the config
/// section (`steer`, `sphere_cnn`), `what` the split; `n = 0`, a range past
/// the end and an overflowing `lo + n` are errors.
pub fn range(set: &ImageSet, lo: usize, n: usize, section: &str, what: &str) -> Result<Dataset> {
    if n == 0 {
        bail!("{section} config: {what} needs at least one image, got a size of 0");
    }
    if lo.checked_add(n).is_none_or(|hi| hi > set.len()) {
        bail!(
            "{section} config: {what} needs images {lo}..{} but the set has {} (raise data.test_size or lower the split)",
            lo as u128 + n as u128,
            set.len()
        );
    }
    Ok(Dataset::from_images(&set.subset(&(lo..lo + n).collect::<Vec<_>>())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split bounds come from the user's config: an overflowing `lo + n`
    /// is an error naming the split, not an arithmetic-overflow panic.
    #[test]
    fn ranges_that_do_not_fit_are_errors_naming_the_split() {
        let set = ImageSet::new(vec![0.0; 2 * 784], vec![1, 2]).unwrap();
        let e = range(&set, usize::MAX, 2, "steer", "the held-out split").unwrap_err();
        assert!(e.to_string().contains("steer config: the held-out split"), "{e}");
        assert!(range(&set, 1, 2, "steer", "x").is_err());
        let e = range(&set, 0, 0, "sphere_cnn", "the scoring set").unwrap_err();
        assert!(e.to_string().contains("sphere_cnn config: the scoring set"), "{e}");
        assert_eq!(range(&set, 1, 1, "steer", "x").unwrap().labels, vec![2]);
        assert_eq!(range(&set, 0, 2, "steer", "x").unwrap().labels, vec![1, 2]);
    }
}
