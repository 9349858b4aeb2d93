//! Content-addressed artifact store.
//!
//! An artifact's **key** is the SHA-256 of the canonical JSON of
//! `{stage, stage_version, config, inputs}` where `inputs` are the keys of the
//! upstream artifacts — never paths or modification times. The file
//! `<dir>/<stage>-<first 16 hex of key>.bin` holds:
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `GSPLTART` |
//! | 4 | container format version (u32 LE) |
//! | 32 | key |
//! | 8 | payload length (u64 LE) |
//! | 32 | SHA-256 of the payload |
//! | … | payload: bincode 1.3 of the stage's output |
//!
//! Writes go to a temporary file in the same directory, then `rename`, so a
//! reader never sees half an artifact. A file whose header, key, length or
//! checksum does not match is reported as corrupt and recomputed.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GSPLTART";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 32 + 8 + 32;

/// A 32-byte content key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Full lowercase hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Key of a stage run: hash of the canonical description.
    pub fn of<C: Serialize>(stage: &str, version: u32, config: &C, inputs: &[Key]) -> Result<Key> {
        let desc = serde_json::json!({
            "stage": stage,
            "stage_version": version,
            "config": serde_json::to_value(config)?,
            "inputs": inputs.iter().map(Key::hex).collect::<Vec<_>>(),
        });
        // serde_json::Value maps are sorted (BTreeMap): canonical text.
        let text = serde_json::to_string(&desc)?;
        Ok(Key(Sha256::digest(text.as_bytes()).into()))
    }
}

/// Why a cached artifact could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file is shorter than its header or declared payload.
    #[error("{path}: truncated ({len} bytes)")]
    Truncated {
        /// File.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// Magic number or container version differ.
    #[error("{path}: not a gensplit artifact of format {FORMAT} (bad magic or version)")]
    BadHeader {
        /// File.
        path: PathBuf,
    },
    /// The stored key is not the expected one.
    #[error("{path}: stored key {found} differs from expected {expected}")]
    KeyMismatch {
        /// File.
        path: PathBuf,
        /// Expected key (hex).
        expected: String,
        /// Stored key (hex).
        found: String,
    },
    /// The payload checksum does not match.
    #[error("{path}: payload checksum mismatch (file corrupted)")]
    Checksum {
        /// File.
        path: PathBuf,
    },
    /// The payload does not decode as the stage's output type.
    #[error("{path}: payload does not decode: {reason}")]
    Decode {
        /// File.
        path: PathBuf,
        /// Decoder message.
        reason: String,
    },
}

/// A directory of artifacts.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating artifact directory {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
    }
    /// Path of a stage's artifact with `key`.
    pub fn path(&self, stage: &str, key: &Key) -> PathBuf {
        self.dir.join(format!("{stage}-{}.bin", &key.hex()[..16]))
    }
    /// Loads an artifact: `Ok(None)` when absent, `Err` when present but
    /// unusable (the caller reports it and recomputes).
    pub fn load<T: DeserializeOwned>(&self, stage: &str, key: &Key) -> Result<Option<T>, ArtifactError> {
        let path = self.path(stage, key);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(None);
        };
        decode(&bytes, key, &path).map(Some)
    }
    /// Writes an artifact atomically (temp file + rename) and, beside it, a
    /// `.meta.json` sidecar with the seconds it took to compute (kept out of
    /// the artifact so that artifacts are bit-identical); returns its path.
    pub fn save<T: Serialize>(&self, stage: &str, key: &Key, value: &T, seconds: f64) -> Result<PathBuf> {
        let path = self.path(stage, key);
        write_atomic(&path, &encode(key, value)?)?;
        let meta = serde_json::json!({ "stage": stage, "key": key.hex(), "compute_seconds": seconds });
        write_atomic(
            &path.with_extension("meta.json"),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )?;
        Ok(path)
    }
    /// Seconds recorded in the sidecar when the artifact was computed.
    pub fn compute_seconds(&self, stage: &str, key: &Key) -> Option<f64> {
        let text = std::fs::read_to_string(self.path(stage, key).with_extension("meta.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["compute_seconds"].as_f64()
    }
}

/// Writes `bytes` to a temporary file in the same directory, then renames.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Serializes `value` into the container format.
pub fn encode<T: Serialize>(key: &Key, value: &T) -> Result<Vec<u8>> {
    let payload = bincode::serialize(value).context("serializing artifact payload")?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses and verifies the container format.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], key: &Key, path: &Path) -> Result<T, ArtifactError> {
    let path = path.to_path_buf();
    if bytes.len() < HEADER {
        return Err(ArtifactError::Truncated { path, len: bytes.len() });
    }
    if &bytes[..8] != MAGIC || bytes[8..12] != FORMAT.to_le_bytes() {
        return Err(ArtifactError::BadHeader { path });
    }
    if bytes[12..44] != key.0 {
        let mut found = [0u8; 32];
        found.copy_from_slice(&bytes[12..44]);
        return Err(ArtifactError::KeyMismatch {
            path,
            expected: key.hex(),
            found: Key(found).hex(),
        });
    }
    let len = u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes")) as usize;
    if bytes.len() - HEADER != len {
        return Err(ArtifactError::Truncated { path, len: bytes.len() });
    }
    let payload = &bytes[HEADER..];
    if Sha256::digest(payload).as_slice() != &bytes[52..84] {
        return Err(ArtifactError::Checksum { path });
    }
    bincode::deserialize(payload).map_err(|e| ArtifactError::Decode {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gensplit-artifact-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn roundtrip_and_corruption_detection() {
        let store = Store::open(&tmpdir("rt")).unwrap();
        let key = Key::of("demo", 1, &vec![1u32, 2], &[]).unwrap();
        let value = vec![1.5f32, -2.0, 3.25];
        assert!(store.load::<Vec<f32>>("demo", &key).unwrap().is_none());
        let path = store.save("demo", &key, &value, 1.5).unwrap();
        assert_eq!(store.compute_seconds("demo", &key), Some(1.5));
        assert_eq!(store.load::<Vec<f32>>("demo", &key).unwrap(), Some(value.clone()));
        let good = std::fs::read(&path).unwrap();
        // flip one payload byte -> checksum error
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::Checksum { .. })
        ));
        // truncate -> truncated
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::Truncated { .. })
        ));
        std::fs::write(&path, &good[..10]).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::Truncated { .. })
        ));
        // bad magic
        let mut bad = good.clone();
        bad[0] = b'X';
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::BadHeader { .. })
        ));
        // another key's file under this name
        let other = Key::of("demo", 2, &vec![1u32, 2], &[]).unwrap();
        std::fs::write(&path, encode(&other, &value).unwrap()).unwrap();
        assert!(matches!(
            store.load::<Vec<f32>>("demo", &key),
            Err(ArtifactError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn keys_depend_on_every_part() {
        let k = |s: &str, v: u32, c: u32, i: &[Key]| Key::of(s, v, &c, i).unwrap();
        let base = k("a", 1, 7, &[]);
        assert_eq!(base, k("a", 1, 7, &[]));
        assert_ne!(base, k("b", 1, 7, &[]));
        assert_ne!(base, k("a", 2, 7, &[]));
        assert_ne!(base, k("a", 1, 8, &[]));
        assert_ne!(base, k("a", 1, 7, &[base]));
    }
}
