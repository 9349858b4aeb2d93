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
        Self::with_code(stage, version, None, config, inputs)
    }
    /// Key of a stage run whose description also holds the fingerprints of
    /// the code that computes it (component name → SHA-256 hex, see
    /// [`crate::fingerprint`]).
    pub fn with_code<C: Serialize>(
        stage: &str,
        version: u32,
        code: Option<&std::collections::BTreeMap<String, String>>,
        config: &C,
        inputs: &[Key],
    ) -> Result<Key> {
        let mut desc = serde_json::json!({
            "stage": stage,
            "stage_version": version,
            "config": serde_json::to_value(config)?,
            "inputs": inputs.iter().map(Key::hex).collect::<Vec<_>>(),
        });
        if let Some(code) = code {
            desc["code"] = serde_json::to_value(code)?;
        }
        // serde_json::Value maps are sorted (BTreeMap): canonical text.
        let text = serde_json::to_string(&desc)?;
        Ok(Key(Sha256::digest(text.as_bytes()).into()))
    }
}

/// Why a cached artifact could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file exists (or may exist) but reading it failed for a reason
    /// other than its absence: permission denied, an I/O error, a directory
    /// in its place. Not a cache miss: the caller stops with this error.
    #[error("{path}: cannot read cached artifact: {source} (fix its permissions or delete it)")]
    Io {
        /// File.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
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
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating artifact directory {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Path of a stage's artifact with `key`.
    pub fn path(&self, stage: &str, key: &Key) -> PathBuf {
        self.dir.join(format!("{stage}-{}.bin", &key.hex()[..16]))
    }
    /// Loads an artifact: `Ok(None)` when absent, `Err` when present but
    /// unusable: [`ArtifactError::Io`] when it cannot be read (the caller
    /// stops), any other variant when it is corrupt (the caller reports it
    /// and recomputes).
    pub fn load<T: DeserializeOwned>(&self, stage: &str, key: &Key) -> Result<Option<T>, ArtifactError> {
        let path = self.path(stage, key);
        match read_artifact(&path)? {
            Some(bytes) => decode(&bytes, key, &path).map(Some),
            None => Ok(None),
        }
    }
    /// Writes an artifact atomically (temp file + rename) and, beside it, a
    /// `.meta.json` sidecar with the seconds it took to compute (kept out of
    /// the artifact so that artifacts are bit-identical); returns its path.
    pub fn save<T: Serialize>(&self, stage: &str, key: &Key, value: &T, seconds: f64) -> Result<PathBuf> {
        self.save_encoded(stage, key, &encode(key, value)?, seconds)
    }
    fn save_encoded(&self, stage: &str, key: &Key, bytes: &[u8], seconds: f64) -> Result<PathBuf> {
        let path = self.path(stage, key);
        write_atomic(&path, bytes)?;
        let meta = serde_json::json!({ "stage": stage, "key": key.hex(), "compute_seconds": seconds });
        write_atomic(
            &path.with_extension("meta.json"),
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )?;
        Ok(path)
    }
    /// The SHA-256 (hex) of an artifact's payload, read from its header
    /// (the payload holds no key and no timing: two artifacts with equal
    /// payload hashes hold the same result, whatever code or key made
    /// them). `None` when the file is absent or shorter than its header.
    pub fn payload_sha256(&self, stage: &str, key: &Key) -> Option<String> {
        use std::io::Read;
        let mut head = [0u8; HEADER];
        std::fs::File::open(self.path(stage, key))
            .ok()?
            .read_exact(&mut head)
            .ok()?;
        Some(head[52..84].iter().map(|b| format!("{b:02x}")).collect())
    }
    /// Seconds recorded in the sidecar when the artifact was computed.
    pub fn compute_seconds(&self, stage: &str, key: &Key) -> Option<f64> {
        let text = std::fs::read_to_string(self.path(stage, key).with_extension("meta.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["compute_seconds"].as_f64()
    }
}

/// An artifact's bytes; `None` when there is no such file.
fn read_artifact(path: &Path) -> Result<Option<Vec<u8>>, ArtifactError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ArtifactError::Io {
            path: path.to_path_buf(),
            source,
        }),
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

/// Verifies a file's container (header, length, payload checksum) without
/// decoding the payload; returns the key stored in it.
pub fn verify_file(path: &Path) -> Result<Key, ArtifactError> {
    let bytes = std::fs::read(path).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut stored = [0u8; 32];
    if let Some(k) = bytes.get(12..44) {
        stored.copy_from_slice(k);
    }
    let key = Key(stored);
    check(&bytes, &key, path)?;
    Ok(key)
}

/// Checks the container format; returns the payload.
fn check<'a>(bytes: &'a [u8], key: &Key, path: &Path) -> Result<&'a [u8], ArtifactError> {
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
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[44..52]);
    if (bytes.len() - HEADER) as u64 != u64::from_le_bytes(len) {
        return Err(ArtifactError::Truncated { path, len: bytes.len() });
    }
    let payload = &bytes[HEADER..];
    if Sha256::digest(payload).as_slice() != &bytes[52..84] {
        return Err(ArtifactError::Checksum { path });
    }
    Ok(payload)
}

/// Parses and verifies the container format.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], key: &Key, path: &Path) -> Result<T, ArtifactError> {
    let payload = check(bytes, key, path)?;
    bincode::deserialize(payload).map_err(|e| ArtifactError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
