//! Reader for the IDX file format used by MNIST (and Fashion-MNIST, KMNIST, ...).
//!
//! Format (all integers big-endian `u32`):
//!
//! * images: magic `0x00000803`, `count`, `rows`, `cols`, then
//!   `count * rows * cols` unsigned bytes (row-major, 0 = background);
//! * labels: magic `0x00000801`, `count`, then `count` unsigned bytes.
//!
//! Files may be gzip-compressed; [`read_file`] and [`decode`] detect gzip by
//! its `1f 8b` header and decompress, otherwise the bytes are used as is.
//!
//! The parsers never panic and never allocate based on a declared size before
//! checking it against the number of bytes actually present: a header that
//! declares more data than the file holds gives [`DataError::Truncated`], one
//! that declares less gives [`DataError::CountMismatch`] (trailing data is
//! rejected, since it almost always means a wrong or concatenated file).
//! Every file is capped at [`MAX_DECOMPRESSED`] bytes: a raw file larger
//! than that gives [`DataError::TooLarge`] before it is read, a gzip file
//! that decompresses to more gives the same error without decompressing the
//! rest, and a header that declares more gives [`DataError::DeclaredTooLarge`].

use std::io::Read;
use std::path::Path;

use crate::DataError;

/// Magic number of an IDX images file (unsigned bytes, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX labels file (unsigned bytes, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest IDX file (raw, or gzip after decompression) the reader accepts,
/// and the largest size a header may declare: 1 GiB (MNIST train images are
/// 47 MB), so a gzip bomb, a huge file or a lying header yields a typed
/// error, not an OOM.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// The contents of an IDX images file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes, image-major then row-major.
    pub pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads `n` header words after checking that they are present.
fn header<const N: usize>(bytes: &[u8], path: &Path) -> Result<[u32; N], DataError> {
    let mut out = [0u32; N];
    for (k, slot) in out.iter_mut().enumerate() {
        *slot = be_u32(bytes, 4 * k).ok_or_else(|| DataError::Truncated {
            path: path.to_path_buf(),
            expected: 4 * N as u64,
            got: bytes.len() as u64,
        })?;
    }
    Ok(out)
}

/// Checks that the body after a `header_len`-byte header holds exactly
/// `items * item_size` bytes (computed in `u128`, so no overflow).
fn check_body(
    bytes: &[u8],
    path: &Path,
    header_len: usize,
    items: u64,
    item_size: u64,
    what: &'static str,
) -> Result<(), DataError> {
    let need = header_len as u128 + items as u128 * item_size as u128;
    if need > MAX_DECOMPRESSED as u128 {
        return Err(DataError::DeclaredTooLarge {
            path: path.to_path_buf(),
            declared: u64::try_from(need).unwrap_or(u64::MAX),
            limit: MAX_DECOMPRESSED,
        });
    }
    let have = bytes.len() as u128;
    if have < need {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected: u64::try_from(need).unwrap_or(u64::MAX),
            got: bytes.len() as u64,
        });
    }
    if have > need {
        let body = (bytes.len() - header_len) as u64;
        let actual = body.checked_div(item_size).unwrap_or(body);
        return Err(DataError::CountMismatch {
            path: path.to_path_buf(),
            what,
            declared: items,
            actual,
        });
    }
    Ok(())
}

/// Parses an (uncompressed) IDX images file. `path` is only used in errors.
///
/// Any `rows`/`cols` are accepted here; [`crate::mnist::load`] additionally
/// requires 28x28.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages, DataError> {
    let [magic, count, rows, cols] = header::<4>(bytes, path)?;
    if magic != IMAGES_MAGIC {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: IMAGES_MAGIC,
            found: magic,
        });
    }
    let image_size = rows as u64 * cols as u64;
    check_body(bytes, path, 16, count as u64, image_size, "images")?;
    Ok(IdxImages {
        count: count as usize,
        rows: rows as usize,
        cols: cols as usize,
        pixels: bytes[16..].to_vec(),
    })
}

/// Parses an (uncompressed) IDX labels file. `path` is only used in errors.
/// Label values are not range-checked here (see [`crate::mnist::load`]).
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DataError> {
    let [magic, count] = header::<2>(bytes, path)?;
    if magic != LABELS_MAGIC {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: LABELS_MAGIC,
            found: magic,
        });
    }
    check_body(bytes, path, 8, count as u64, 1, "labels")?;
    Ok(bytes[8..].to_vec())
}

/// Returns `true` if `bytes` start with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses `bytes` if they are gzip (by header), else returns them as is.
/// Corrupt or truncated gzip gives [`DataError::BadGzip`]; output larger than
/// [`MAX_DECOMPRESSED`] gives [`DataError::TooLarge`]. `path` is for errors.
pub fn decode(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    let decoder = flate2::read::MultiGzDecoder::new(bytes.as_slice());
    decoder
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::BadGzip {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_DECOMPRESSED,
        });
    }
    Ok(out)
}

/// Reads a file and gunzips it if it is gzip (detected by the `1f 8b` header).
/// A file larger than [`MAX_DECOMPRESSED`] gives [`DataError::TooLarge`]
/// without being read.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    read_file_capped(path, MAX_DECOMPRESSED)
}

/// [`read_file`] with a smaller cap on the file's size (bytes on disk; the
/// decompressed size stays capped at [`MAX_DECOMPRESSED`]).
pub fn read_file_capped(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let limit = limit.min(MAX_DECOMPRESSED);
    if file.metadata().map_err(io)?.len() > limit {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let mut bytes = Vec::new();
    // read at most one byte past the cap: a file that grows while it is
    // read is caught as well as one that is too large from the start
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    decode(bytes, path)
}

/// Encodes an IDX images file (uncompressed); the inverse of [`parse_images`].
/// Used by tests and tools that write small IDX fixtures.
///
/// # Panics
/// If `pixels.len() != count * rows * cols` or a size does not fit in `u32`.
pub fn encode_images(count: usize, rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    assert_eq!(pixels.len(), count * rows * cols, "pixel count");
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC as usize, count, rows, cols] {
        out.extend_from_slice(&u32::try_from(v).expect("fits in u32").to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes an IDX labels file (uncompressed); the inverse of [`parse_labels`].
///
/// # Panics
/// If `labels.len()` does not fit in `u32`.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&u32::try_from(labels.len()).expect("fits in u32").to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn p() -> &'static Path {
        Path::new("test.idx")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn images_roundtrip_and_errors() {
        let px: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let enc = encode_images(2, 3, 4, &px);
        let img = parse_images(&enc, p()).unwrap();
        assert_eq!((img.count, img.rows, img.cols), (2, 3, 4));
        assert_eq!(img.pixels, px);

        // truncated body
        let e = parse_images(&enc[..enc.len() - 1], p()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    expected: 40,
                    got: 39,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("test.idx"));
        // truncated header
        assert!(matches!(parse_images(&enc[..7], p()), Err(DataError::Truncated { .. })));
        // trailing data
        let mut long = enc.clone();
        long.push(0);
        assert!(matches!(
            parse_images(&long, p()),
            Err(DataError::CountMismatch { declared: 2, .. })
        ));
        // labels file given as images
        let lab = encode_labels(&[1, 2, 3]);
        let e = parse_images(&lab, p()).unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. } | DataError::BadMagic { .. }));
        let mut wrong = enc.clone();
        wrong[3] = 0x01;
        assert!(matches!(
            parse_images(&wrong, p()),
            Err(DataError::BadMagic {
                expected: IMAGES_MAGIC,
                found: 0x801,
                ..
            })
        ));
    }

    #[test]
    fn huge_declared_count_does_not_allocate() {
        let mut enc = encode_images(1, 28, 28, &[0; 784]);
        enc[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        enc[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        enc[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = parse_images(&enc, p()).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::DeclaredTooLarge {
                    limit: MAX_DECOMPRESSED,
                    ..
                }
            ),
            "{e}"
        );
        let mut lab = encode_labels(&[1]);
        lab[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse_labels(&lab, p()),
            Err(DataError::DeclaredTooLarge { .. })
        ));
        // just under the cap: a plain truncation, just over: the cap
        let side = 1u32 << 10; // 2^10 x 2^10 images
        let mut enc = encode_images(1, 1, 1, &[0]);
        enc[8..12].copy_from_slice(&side.to_be_bytes());
        enc[12..16].copy_from_slice(&side.to_be_bytes());
        let under = (((MAX_DECOMPRESSED - 16) / (1 << 20)) as u32).to_be_bytes();
        enc[4..8].copy_from_slice(&under);
        assert!(matches!(parse_images(&enc, p()), Err(DataError::Truncated { .. })));
        enc[4..8].copy_from_slice(&1025u32.to_be_bytes());
        let e = parse_images(&enc, p()).unwrap_err();
        assert!(
            e.to_string().contains("test.idx") && e.to_string().contains("limit"),
            "{e}"
        );
    }

    #[test]
    fn labels_roundtrip_and_errors() {
        let enc = encode_labels(&[0, 9, 3]);
        assert_eq!(parse_labels(&enc, p()).unwrap(), vec![0, 9, 3]);
        assert!(matches!(
            parse_labels(&enc[..10], p()),
            Err(DataError::Truncated { .. })
        ));
        assert!(matches!(
            parse_labels(&encode_images(1, 1, 1, &[0]), p()),
            Err(DataError::BadMagic { .. })
        ));
        assert_eq!(parse_labels(&encode_labels(&[]), p()).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn gzip_detect_and_corruption() {
        let raw = encode_labels(&[1, 2, 3]);
        let gz = gzip(&raw);
        assert!(is_gzip(&gz) && !is_gzip(&raw));
        assert_eq!(decode(gz.clone(), p()).unwrap(), raw);
        assert_eq!(decode(raw.clone(), p()).unwrap(), raw);
        // truncated gzip stream
        let e = decode(gz[..gz.len() / 2].to_vec(), p()).unwrap_err();
        assert!(matches!(e, DataError::BadGzip { .. }), "{e}");
        // just the magic
        assert!(matches!(decode(vec![0x1f, 0x8b], p()), Err(DataError::BadGzip { .. })));
        // corrupted trailer (crc)
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff;
        assert!(matches!(decode(bad, p()), Err(DataError::BadGzip { .. })));
    }

    #[test]
    fn read_file_missing_is_io_error_naming_path() {
        let e = read_file(Path::new("/nonexistent/dir/x.gz")).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/dir/x.gz"));
    }

    fn valid_images() -> impl Strategy<Value = (usize, usize, usize, Vec<u8>)> {
        (0usize..4, 0usize..5, 0usize..5).prop_flat_map(|(n, r, c)| {
            (
                Just(n),
                Just(r),
                Just(c),
                proptest::collection::vec(any::<u8>(), n * r * c),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_valid_images_roundtrip((n, r, c, px) in valid_images()) {
            let enc = encode_images(n, r, c, &px);
            let img = parse_images(&enc, p()).unwrap();
            prop_assert_eq!((img.count, img.rows, img.cols), (n, r, c));
            prop_assert_eq!(&img.pixels, &px);
            let gz = gzip(&enc);
            prop_assert_eq!(decode(gz, p()).unwrap(), enc);
        }

        #[test]
        fn prop_valid_labels_roundtrip(labels in proptest::collection::vec(any::<u8>(), 0..50)) {
            let enc = encode_labels(&labels);
            prop_assert_eq!(parse_labels(&enc, p()).unwrap(), labels);
        }

        #[test]
        fn prop_truncation_is_typed_error((n, r, c, px) in valid_images(), cut in any::<prop::sample::Index>()) {
            let enc = encode_images(n, r, c, &px);
            let len = cut.index(enc.len()); // strictly shorter
            let res = parse_images(&enc[..len], p());
            let ok = matches!(res, Err(DataError::Truncated { .. }));
            prop_assert!(ok, "{:?}", res);
            let gz = gzip(&enc);
            let glen = cut.index(gz.len());
            // truncated gzip: typed error (or, for a cut inside the header
            // magic, raw bytes that then fail to parse) -- never a panic
            if let Ok(bytes) = decode(gz[..glen].to_vec(), p()) {
                let _ = parse_images(&bytes, p());
            }
        }

        #[test]
        fn prop_header_flips_never_panic(
            (n, r, c, px) in valid_images(),
            flips in proptest::collection::vec((0usize..16, any::<u8>()), 1..4),
        ) {
            let mut enc = encode_images(n, r, c, &px);
            for (at, x) in flips { enc[at] ^= x; }
            match parse_images(&enc, p()) {
                Ok(img) => prop_assert_eq!(16 + img.count * img.rows * img.cols, enc.len()),
                Err(e) => prop_assert!(e.to_string().contains("test.idx")),
            }
            let _ = parse_labels(&enc, p());
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), gz in any::<bool>()) {
            let mut bytes = bytes;
            if gz && bytes.len() >= 2 { bytes[0] = 0x1f; bytes[1] = 0x8b; }
            if let Ok(d) = decode(bytes.clone(), p()) {
                let _ = parse_images(&d, p());
                let _ = parse_labels(&d, p());
            }
            let _ = parse_images(&bytes, p());
            let _ = parse_labels(&bytes, p());
        }
    }
}
