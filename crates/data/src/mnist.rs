//! Loading MNIST (or any 28x28 IDX image set) into an [`ImageSet`].
//!
//! A data directory holds the four standard IDX files, each either
//! gzip-compressed (`NAME.gz`, tried first) or raw (`NAME`):
//!
//! | split | images | labels |
//! | --- | --- | --- |
//! | [`Split::Train`] | `train-images-idx3-ubyte` | `train-labels-idx1-ubyte` |
//! | [`Split::Test`]  | `t10k-images-idx3-ubyte`  | `t10k-labels-idx1-ubyte`  |
//!
//! The repository ships MNIST in `fixtures/mnist` ([`default_dir`]). With
//! [`Verify::MnistChecksums`] the SHA-256 of each *decompressed* file is
//! checked against [`MNIST_SHA256`] (hashing the decompressed bytes means the
//! original gzip files from any mirror verify too, whatever their gzip
//! header). Other IDX data sets with the same layout (Fashion-MNIST, KMNIST,
//! ...) load with [`Verify::None`] and can stand in for the digit role.
//!
//! Pixels are converted to `f32` as `byte / 255.0`, so values lie in
//! `[0, 1]`. Images must be 28x28 and labels `< 10`; anything else is a typed
//! [`DataError`] naming the file.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{idx, DataError, ImageSet, CLASSES, SIDE};

/// Which half of the data set to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training images (`train-*`).
    Train,
    /// The 10,000 test images (`t10k-*`).
    Test,
}

impl Split {
    /// Base names (without `.gz`) of the `(images, labels)` files.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// Whether to verify file contents against known checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Verify the SHA-256 of the decompressed files against [`MNIST_SHA256`]
    /// (use for the shipped MNIST).
    MnistChecksums,
    /// No checksum verification (any other IDX data set).
    None,
}

/// SHA-256 (lower-case hex) of the *decompressed* MNIST IDX files, by base name.
pub const MNIST_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Number of images in each MNIST split: `(train, test)`.
pub const MNIST_COUNTS: (usize, usize) = (60_000, 10_000);

/// `<workspace root>/fixtures/mnist`, located from this crate's manifest dir.
pub fn default_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest.parent().and_then(Path::parent) {
        Some(root) => root.join("fixtures").join("mnist"),
        None => manifest.join("../../fixtures/mnist"),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn expected_sha(name: &str) -> Option<&'static str> {
    MNIST_SHA256.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

const RESTORE_HINT: &str = "The shipped MNIST lives in fixtures/mnist and is tracked in git: \
restore it with `git checkout -- fixtures/mnist` (and check fixtures/mnist/SHA256SUMS). \
To use a different IDX data set (e.g. Fashion-MNIST) instead, pass --digits-dir DIR; \
checksums are only verified for the shipped MNIST.";

/// Finds `{dir}/{name}.gz` or `{dir}/{name}`.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError::Missing {
            path: gz,
            hint: format!(
                "Neither {name}.gz nor {name} exists in {}. {RESTORE_HINT}",
                dir.display()
            ),
        })
    }
}

/// Reads (and gunzips) `{dir}/{name}[.gz]`, verifying its checksum if asked.
fn read_verified(dir: &Path, name: &str, verify: Verify) -> Result<(PathBuf, Vec<u8>), DataError> {
    let path = locate(dir, name)?;
    let bytes = idx::read_file(&path)?;
    if verify == Verify::MnistChecksums {
        if let Some(expected) = expected_sha(name) {
            let actual = sha256_hex(&bytes);
            if actual != expected {
                return Err(DataError::ChecksumMismatch {
                    path,
                    expected: expected.to_string(),
                    actual,
                    hint: format!(
                        "The file is corrupt or is not the original MNIST. {RESTORE_HINT} \
                         (or load it with Verify::None)."
                    ),
                });
            }
        }
    }
    Ok((path, bytes))
}

/// Loads one split from `dir`; see the module docs for file names and checks.
pub fn load(dir: &Path, split: Split, verify: Verify) -> Result<ImageSet, DataError> {
    let (img_name, lab_name) = split.file_names();
    let (img_path, img_bytes) = read_verified(dir, img_name, verify)?;
    let (lab_path, lab_bytes) = read_verified(dir, lab_name, verify)?;
    let images = idx::parse_images(&img_bytes, &img_path)?;
    drop(img_bytes);
    if images.rows != SIDE || images.cols != SIDE {
        return Err(DataError::BadDimensions {
            path: img_path,
            rows: images.rows as u32,
            cols: images.cols as u32,
            expected_rows: SIDE as u32,
            expected_cols: SIDE as u32,
        });
    }
    let labels = idx::parse_labels(&lab_bytes, &lab_path)?;
    if labels.len() != images.count {
        return Err(DataError::LabelImageMismatch {
            images_path: img_path,
            labels_path: lab_path,
            images: images.count,
            labels: labels.len(),
        });
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= CLASSES) {
        return Err(DataError::BadLabel {
            path: lab_path,
            index,
            value,
        });
    }
    let pixels = images.pixels.iter().map(|&b| b as f32 / 255.0).collect();
    Ok(ImageSet { images: pixels, labels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::{encode_images, encode_labels};
    use crate::PIXELS;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, unique temp dir (removed on drop).
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "gensplit-data-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_small(dir: &Path, n: usize, rows: usize, labels: &[u8], gz: bool) {
        let img = encode_images(n, rows, rows, &vec![255u8; n * rows * rows]);
        let lab = encode_labels(labels);
        for (name, bytes) in [("t10k-images-idx3-ubyte", img), ("t10k-labels-idx1-ubyte", lab)] {
            if gz {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&bytes).unwrap();
                std::fs::write(dir.join(format!("{name}.gz")), e.finish().unwrap()).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    #[test]
    fn shipped_mnist_loads_and_verifies() {
        let dir = default_dir();
        let test = load(&dir, Split::Test, Verify::MnistChecksums).unwrap();
        assert_eq!(test.len(), MNIST_COUNTS.1);
        assert_eq!(test.images.len(), MNIST_COUNTS.1 * PIXELS);
        // published MNIST test class counts
        assert_eq!(
            test.label_counts(),
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        assert!(test.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(test.images.contains(&1.0));
        // mean intensity of MNIST is about 0.13
        let mean = test.images.iter().map(|&v| v as f64).sum::<f64>() / test.images.len() as f64;
        assert!((0.11..0.15).contains(&mean), "mean {mean}");
        // border pixels of digits are (almost always) dark
        assert_eq!(test.image(0)[0], 0.0);

        let train = load(&dir, Split::Train, Verify::MnistChecksums).unwrap();
        assert_eq!(train.len(), MNIST_COUNTS.0);
        assert_eq!(
            train.label_counts(),
            [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        );
    }

    #[test]
    fn checksum_mismatch_on_modified_copy() {
        let t = TempDir::new();
        let src = default_dir();
        for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            std::fs::copy(src.join(name), t.0.join(name)).unwrap();
        }
        // an intact copy verifies
        assert_eq!(load(&t.0, Split::Test, Verify::MnistChecksums).unwrap().len(), 10_000);
        // change one label (to another valid label) and store the labels raw
        // (the .gz is tried first, so remove it).
        let lab_gz = t.0.join("t10k-labels-idx1-ubyte.gz");
        let mut raw = idx::read_file(&lab_gz).unwrap();
        std::fs::remove_file(&lab_gz).unwrap();
        raw[8] = (raw[8] + 1) % 10;
        std::fs::write(t.0.join("t10k-labels-idx1-ubyte"), &raw).unwrap();
        let e = load(&t.0, Split::Test, Verify::MnistChecksums).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::ChecksumMismatch { .. }), "{msg}");
        assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
        assert!(msg.contains("git checkout -- fixtures/mnist"), "{msg}");
        assert!(msg.contains("--digits-dir"), "{msg}");
        // without verification the modified file loads
        let s = load(&t.0, Split::Test, Verify::None).unwrap();
        assert_eq!(s.labels[0] as usize, raw[8] as usize);
    }

    #[test]
    fn missing_files_error_with_hint() {
        let t = TempDir::new();
        let e = load(&t.0, Split::Train, Verify::MnistChecksums).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Missing { .. }), "{msg}");
        assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
        assert!(msg.contains("--digits-dir"), "{msg}");
    }

    #[test]
    fn other_idx_dirs_load_unverified_raw_and_gzip() {
        for gz in [false, true] {
            let t = TempDir::new();
            write_small(&t.0, 3, 28, &[0, 5, 9], gz);
            let s = load(&t.0, Split::Test, Verify::None).unwrap();
            assert_eq!(s.labels, vec![0, 5, 9]);
            assert!(s.images.iter().all(|&v| v == 1.0));
            // a non-MNIST file fails verification
            assert!(matches!(
                load(&t.0, Split::Test, Verify::MnistChecksums),
                Err(DataError::ChecksumMismatch { .. })
            ));
        }
    }

    #[test]
    fn wrong_dims_bad_labels_and_count_mismatch() {
        let t = TempDir::new();
        write_small(&t.0, 2, 27, &[1, 2], false);
        assert!(matches!(
            load(&t.0, Split::Test, Verify::None),
            Err(DataError::BadDimensions { rows: 27, cols: 27, .. })
        ));
        let t = TempDir::new();
        write_small(&t.0, 2, 28, &[1, 10], false);
        assert!(matches!(
            load(&t.0, Split::Test, Verify::None),
            Err(DataError::BadLabel {
                index: 1,
                value: 10,
                ..
            })
        ));
        let t = TempDir::new();
        write_small(&t.0, 2, 28, &[1, 2, 3], false);
        let e = load(&t.0, Split::Test, Verify::None).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelImageMismatch {
                    images: 2,
                    labels: 3,
                    ..
                }
            ),
            "{e}"
        );
        // images and labels swapped
        let t = TempDir::new();
        write_small(&t.0, 1, 28, &[1], false);
        std::fs::rename(t.0.join("t10k-images-idx3-ubyte"), t.0.join("tmp")).unwrap();
        std::fs::rename(t.0.join("t10k-labels-idx1-ubyte"), t.0.join("t10k-images-idx3-ubyte")).unwrap();
        std::fs::rename(t.0.join("tmp"), t.0.join("t10k-labels-idx1-ubyte")).unwrap();
        assert!(matches!(
            load(&t.0, Split::Test, Verify::None),
            Err(DataError::BadMagic { .. } | DataError::Truncated { .. })
        ));
    }

    #[test]
    fn corrupt_gzip_and_truncated_files_are_typed_errors() {
        let t = TempDir::new();
        write_small(&t.0, 2, 28, &[1, 2], true);
        let gz = t.0.join("t10k-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        let e = load(&t.0, Split::Test, Verify::None).unwrap_err();
        assert!(matches!(e, DataError::BadGzip { .. }), "{e}");
        assert!(e.to_string().contains("t10k-images-idx3-ubyte.gz"));

        let t = TempDir::new();
        write_small(&t.0, 2, 28, &[1, 2], false);
        let raw = t.0.join("t10k-images-idx3-ubyte");
        let bytes = std::fs::read(&raw).unwrap();
        std::fs::write(&raw, &bytes[..bytes.len() - 100]).unwrap();
        let e = load(&t.0, Split::Test, Verify::None).unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("t10k-images-idx3-ubyte"));
    }

    #[test]
    fn default_dir_points_at_fixtures() {
        let d = default_dir();
        assert!(d.ends_with("fixtures/mnist"));
        assert!(d.join("README.md").is_file());
    }
}
