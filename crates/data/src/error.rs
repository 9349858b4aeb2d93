//! The crate's error type.
//!
//! Every variant that comes from a file names that file (as a [`PathBuf`])
//! and says what is wrong with it, so a message printed by a binary is
//! actionable on its own. Variants about in-memory data (shape mismatches,
//! invalid configuration) name the offending field or index instead.

use std::path::PathBuf;

/// Errors returned by this crate. None of the loaders panic on bad input;
/// they return one of these instead.
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    /// Reading the file failed at the OS level.
    #[error("{}: cannot read file: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The file starts with the gzip magic (`1f 8b`) but does not decompress.
    #[error("{}: corrupt gzip data: {reason}", .path.display())]
    BadGzip {
        /// The file.
        path: PathBuf,
        /// What the decompressor reported.
        reason: String,
    },

    /// The file (after decompression, for gzip) is larger than the loader
    /// accepts.
    #[error("{}: file (decompressed) exceeds the limit of {limit} bytes", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// The IDX header declares more data than the loader accepts (checked
    /// before anything of that size is read or allocated).
    #[error("{}: IDX header declares {declared} bytes, more than the limit of {limit}", .path.display())]
    DeclaredTooLarge {
        /// The file.
        path: PathBuf,
        /// Bytes the header implies (header included; saturated at `u64::MAX`).
        declared: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// The file is shorter than its header (or the IDX header) requires.
    #[error("{}: truncated IDX file: expected {expected} bytes, got {got}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Number of bytes the header implies (header included).
        expected: u64,
        /// Number of bytes actually present.
        got: u64,
    },

    /// The IDX magic number is not the one expected for this kind of file.
    #[error(
        "{}: bad IDX magic: expected {expected:#010x}, found {found:#010x} \
         (is this an images file where a labels file was expected, or vice versa?)",
        .path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// Expected magic (`0x00000803` images, `0x00000801` labels).
        expected: u32,
        /// Magic found in the file.
        found: u32,
    },

    /// The file holds more bytes than its header declares (trailing data).
    #[error(
        "{}: IDX header declares {declared} {what} but the file holds data for {actual}",
        .path.display()
    )]
    CountMismatch {
        /// The file.
        path: PathBuf,
        /// What is being counted ("items", "bytes", ...).
        what: &'static str,
        /// Count declared by the header.
        declared: u64,
        /// Count implied by the file length.
        actual: u64,
    },

    /// The images have the wrong size (the loaders require 28x28).
    #[error(
        "{}: images are {rows}x{cols}, expected {expected_rows}x{expected_cols}",
        .path.display()
    )]
    BadDimensions {
        /// The file.
        path: PathBuf,
        /// Rows declared by the file.
        rows: u32,
        /// Columns declared by the file.
        cols: u32,
        /// Required rows.
        expected_rows: u32,
        /// Required columns.
        expected_cols: u32,
    },

    /// The images and labels files hold different numbers of items.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        .images_path.display(),
        .labels_path.display()
    )]
    LabelImageMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },

    /// A label is outside `0..CLASSES`.
    #[error("{}: label #{index} is {value}, expected 0..=9", .path.display())]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// Index of the offending label.
        index: usize,
        /// Its value.
        value: u8,
    },

    /// The SHA-256 of the decompressed file is not the expected one.
    #[error(
        "{}: SHA-256 mismatch (of the decompressed bytes): expected {expected}, got {actual}. {hint}",
        .path.display()
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
        /// What to do about it.
        hint: String,
    },

    /// A required file does not exist.
    #[error("{}: file not found. {hint}", .path.display())]
    Missing {
        /// The path that was looked for (the first candidate name).
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },

    /// Two in-memory data sets (or a data set and its own shape) disagree.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// What was being compared.
        what: &'static str,
        /// Expected size.
        expected: usize,
        /// Actual size.
        got: usize,
    },

    /// Two data sets that must carry the same labels do not.
    #[error("label mismatch at index {index}: digit label {digit}, pattern label {pattern}")]
    LabelMismatch {
        /// Index of the first differing label.
        index: usize,
        /// Label in the digit set.
        digit: u8,
        /// Label in the pattern set.
        pattern: u8,
    },

    /// An index into a data set (or a codebook) is out of range.
    #[error("{what} index {index} is out of range (there are {len})")]
    IndexOutOfRange {
        /// What was indexed (`image`, `class`, `prototype`).
        what: &'static str,
        /// The index.
        index: usize,
        /// How many there are.
        len: usize,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}
