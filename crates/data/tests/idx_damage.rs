//! The IDX reader on damaged copies of the real MNIST test files (raw and
//! gzip): random truncations and byte flips give a typed error (or, for
//! flips that leave the data intact, the original data), never a panic, and
//! with checksum verification never wrong data.

use gensplit_data::idx;
use gensplit_data::mnist::{self, Split, Verify};
use gensplit_data::DataError;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FILES: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

/// The shipped gzip files and their decompressed bytes, read once.
fn originals() -> &'static [(Vec<u8>, Vec<u8>); 2] {
    static O: OnceLock<[(Vec<u8>, Vec<u8>); 2]> = OnceLock::new();
    O.get_or_init(|| {
        FILES.map(|name| {
            let path = mnist::default_dir().join(format!("{name}.gz"));
            let gz = std::fs::read(&path).unwrap();
            let raw = idx::decode(gz.clone(), &path).unwrap();
            (gz, raw)
        })
    })
}

fn tmp(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "gensplit-idx-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(prop::sample::Index),
    /// XOR at these offsets (distinct offsets, nonzero masks).
    Flip(Vec<(prop::sample::Index, u8)>),
    /// Flips inside the first 16 bytes (the IDX or gzip header).
    HeaderFlip(Vec<(usize, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4).prop_map(Damage::Flip),
        prop::collection::vec((0usize..16, 1u8..=255), 1..3).prop_map(Damage::HeaderFlip),
    ]
}

fn apply(bytes: &[u8], d: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut flip = |i: usize, x: u8, seen: &mut std::collections::BTreeSet<usize>| {
        if seen.insert(i) {
            out[i] ^= x;
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    match d {
        Damage::Truncate(at) => {
            let mut out = bytes.to_vec();
            out.truncate(at.index(bytes.len()));
            return out;
        }
        Damage::Flip(f) => f.iter().for_each(|(at, x)| flip(at.index(bytes.len()), *x, &mut seen)),
        Damage::HeaderFlip(f) => f.iter().for_each(|(at, x)| flip(*at, *x, &mut seen)),
    }
    out
}

fn parse(which: usize, bytes: &[u8], path: &Path) -> Result<usize, DataError> {
    if which == 0 {
        idx::parse_images(bytes, path).map(|i| i.count)
    } else {
        idx::parse_labels(bytes, path).map(|l| l.len())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn damaged_real_files_give_typed_errors(which in 0usize..2, gzip in any::<bool>(), d in damage()) {
        let (gz, raw) = &originals()[which];
        let original = if gzip { gz } else { raw };
        let bad = apply(original, &d);
        prop_assume!(&bad != original);
        let dir = tmp("damage");
        let name = if gzip { format!("{}.gz", FILES[which]) } else { FILES[which].to_string() };
        let path = dir.join(&name);
        std::fs::write(&path, &bad).unwrap();

        // 1. the reader alone: typed errors naming the file, never a panic
        let read = idx::read_file(&path).and_then(|b| parse(which, &b, &path).map(|n| (n, b)));
        match (&read, &d) {
            (Err(e), _) => prop_assert!(e.to_string().contains(&name), "{}", e),
            // a truncated file never parses (IDX sizes are exact, gzip has a trailer)
            (Ok(_), Damage::Truncate(_)) => prop_assert!(false, "truncated {} parsed", name),
            // gzip: only flips outside the checksummed data (e.g. the header's
            // mtime) can leave it readable, and then the data is intact
            (Ok((_, b)), _) if gzip => prop_assert_eq!(b, raw),
            // raw: flipped pixel or label bytes are undetectable here (the
            // parser already checked the header against the length)
            (Ok(_), _) => {}
        }

        // 2. through the MNIST loader with checksums: wrong data never loads
        let other = 1 - which;
        let (ogz, _) = &originals()[other];
        std::fs::write(dir.join(format!("{}.gz", FILES[other])), ogz).unwrap();
        match mnist::load(&dir, Split::Test, Verify::MnistChecksums) {
            Ok(set) => {
                let decoded = idx::read_file(&path).unwrap();
                prop_assert_eq!(&decoded, raw, "damaged data loaded");
                prop_assert_eq!(set.len(), 10_000);
            }
            Err(e) => prop_assert!(e.to_string().contains(&name), "{}", e),
        }
        // ... and without: a typed error or a well-formed set, never a panic
        if let Ok(set) = mnist::load(&dir, Split::Test, Verify::None) {
            prop_assert_eq!(set.len(), 10_000);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn raw_files_over_the_cap_are_refused_before_reading() {
    let dir = tmp("cap");
    let path = dir.join("big-idx3-ubyte");
    let (_, raw) = &originals()[1];
    std::fs::write(&path, raw).unwrap();
    let e = idx::read_file_capped(&path, raw.len() as u64 - 1).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("big-idx3-ubyte"), "{e}");
    assert_eq!(idx::read_file_capped(&path, raw.len() as u64).unwrap(), *raw);
    // a sparse file just over the global cap is refused without reading 1 GiB
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(idx::MAX_DECOMPRESSED + 1).unwrap();
    drop(f);
    let e = idx::read_file(&path).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::TooLarge {
                limit: idx::MAX_DECOMPRESSED,
                ..
            }
        ),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
