//! Detached ed25519 signatures over metadata files and graph responses.
//!
//! Fedora's update metadata is unsigned (fedora-coreos-tracker#213); ferrocore signs
//! the exact bytes served or written, so an agent can refuse a graph or stream file
//! that a mirror or proxy altered. Keys and signatures are single-line base64 text:
//! a secret key file holds 64 bytes (seed then public key, the libsodium layout, so
//! a public key file can never be mistaken for a secret one), a public key file the
//! 32-byte key, a signature the 64-byte signature (`<file>.sig` next to a signed file).

use crate::{fsutil, Error, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, Verifier};
use std::path::{Path, PathBuf};

/// A secret signing key.
pub struct SigningKey(ed25519_dalek::SigningKey);

/// A public verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

fn decode_fixed<const N: usize>(what: &str, text: &str) -> Result<[u8; N]> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| Error::Signature(format!("{what}: invalid base64: {e}")))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        Error::Signature(format!("{what}: expected {N} bytes, got {}", b.len()))
    })
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|err| Error::Io {
        path: path.to_owned(),
        err,
    })
}

impl SigningKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Parses a base64 secret key (seed followed by its public key).
    pub fn from_base64(text: &str) -> Result<SigningKey> {
        let pair = decode_fixed::<64>("secret key", text)?;
        ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
            .map(SigningKey)
            .map_err(|_| Error::Signature("secret key: public half does not match the seed".into()))
    }

    /// Reads a secret key file.
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        Self::from_base64(&read_text(path)?).map_err(|e| in_file(path, e))
    }

    /// The secret key as base64 (the secret key file contents, without newline).
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_keypair_bytes())
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs `data`; returns the base64 signature.
    pub fn sign(&self, data: &[u8]) -> String {
        B64.encode(self.0.sign(data).to_bytes())
    }

    /// Writes `<path>.sig` (atomically) for the current contents of `path`.
    pub fn sign_file(&self, path: &Path) -> Result<PathBuf> {
        let data = std::fs::read(path).map_err(|err| Error::Io {
            path: path.to_owned(),
            err,
        })?;
        let sig_path = signature_path(path);
        fsutil::write_atomic(&sig_path, format!("{}\n", self.sign(&data)).as_bytes())?;
        Ok(sig_path)
    }
}

impl VerifyingKey {
    /// Parses a base64 public key.
    pub fn from_base64(text: &str) -> Result<VerifyingKey> {
        let bytes = decode_fixed::<32>("public key", text)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(VerifyingKey)
            .map_err(|e| Error::Signature(format!("public key: {e}")))
    }

    /// Reads a public key file.
    pub fn from_file(path: &Path) -> Result<VerifyingKey> {
        Self::from_base64(&read_text(path)?).map_err(|e| in_file(path, e))
    }

    /// The key as base64 (the public key file contents, without newline).
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    /// Checks a base64 signature over `data`.
    pub fn verify(&self, data: &[u8], signature_b64: &str) -> Result<()> {
        let sig = decode_fixed::<64>("signature", signature_b64)?;
        self.0
            .verify(data, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| Error::Signature("signature does not match the data and key".into()))
    }

    /// Checks `path` against `<path>.sig`.
    pub fn verify_file(&self, path: &Path) -> Result<()> {
        let data = std::fs::read(path).map_err(|err| Error::Io {
            path: path.to_owned(),
            err,
        })?;
        let sig_path = signature_path(path);
        self.verify(&data, &read_text(&sig_path)?)
            .map_err(|e| in_file(path, e))
    }
}

/// Prefixes a signature error with the file it concerns.
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Signature(m) => Error::Signature(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// `<path>.sig`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = SigningKey::generate();
        let pubkey = VerifyingKey::from_base64(&key.verifying_key().to_base64()).unwrap();
        let again = SigningKey::from_base64(&key.to_base64()).unwrap();
        let sig = again.sign(b"graph");
        pubkey.verify(b"graph", &sig).unwrap();
        assert!(pubkey.verify(b"graph!", &sig).is_err());
        let other = SigningKey::generate().verifying_key();
        assert!(other.verify(b"graph", &sig).is_err());
        assert!(pubkey.verify(b"graph", "not base64!").is_err());
        assert!(SigningKey::from_base64("AAAA").is_err());
        // A public key is not accepted as a secret key, nor a mismatched pair.
        assert!(SigningKey::from_base64(&key.verifying_key().to_base64()).is_err());
        let mut pair = B64.decode(key.to_base64()).unwrap();
        pair[40] ^= 1;
        assert!(SigningKey::from_base64(&B64.encode(pair)).is_err());
    }

    #[test]
    fn sign_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stable.json");
        std::fs::write(&f, b"{}\n").unwrap();
        let key = SigningKey::generate();
        let sig = key.sign_file(&f).unwrap();
        assert_eq!(sig, dir.path().join("stable.json.sig"));
        key.verifying_key().verify_file(&f).unwrap();
        std::fs::write(&f, b"{ }\n").unwrap();
        let err = key.verifying_key().verify_file(&f).unwrap_err().to_string();
        assert!(err.contains("stable.json"), "{err}");
    }
}
