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
