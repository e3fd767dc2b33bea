//! Commit signatures with the `ostree sign` engines: `ed25519` (keys and
//! signatures as upstream: base64 32-byte public keys, 64-byte secret keys
//! = seed ‖ public, signatures over the commit object bytes) and `dummy`
//! (upstream's test engine: the "signature" is the key string itself).
//!
//! Signatures live in the commit's detached metadata under
//! `ostree.sign.<engine>` as `aay`; signing appends, as upstream does.

use crate::gvariant::{self, Type, Value};
use crate::object::{Checksum, ObjectType};
use crate::{Error, Repo, Result};
use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};

/// A signing engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignEngine {
    /// ed25519 (libsodium-compatible key formats).
    Ed25519,
    /// Upstream's test engine; callers should gate it like upstream does
    /// (`OSTREE_DUMMY_SIGN_ENABLED=1`).
    Dummy,
}

impl SignEngine {
    /// Parses `--sign-type` values.
    pub fn parse(name: &str) -> Result<SignEngine> {
        match name {
            "ed25519" => Ok(SignEngine::Ed25519),
            "dummy" => Ok(SignEngine::Dummy),
            _ => Err(Error::Invalid(format!(
                "Requested signature type is not implemented: {name}"
            ))),
        }
    }

    /// Engine name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SignEngine::Ed25519 => "ed25519",
            SignEngine::Dummy => "dummy",
        }
    }

    /// The detached-metadata key holding this engine's signatures.
    pub fn metadata_key(self) -> &'static str {
        match self {
            SignEngine::Ed25519 => "ostree.sign.ed25519",
            SignEngine::Dummy => "ostree.sign.dummy",
        }
    }

    /// Signs `data` with a secret key given as upstream's text form.
    pub fn sign(self, secret: &str, data: &[u8]) -> Result<Vec<u8>> {
        match self {
            SignEngine::Dummy => Ok(secret.as_bytes().to_vec()),
            SignEngine::Ed25519 => {
                let raw = decode_key(secret, 64, "secret")?;
                let kp: [u8; 64] = raw.try_into().expect("length checked");
                let key = ed25519_dalek::SigningKey::from_keypair_bytes(&kp)
                    .map_err(|e| Error::Invalid(format!("Invalid ed25519 secret key: {e}")))?;
                Ok(key.sign(data).to_bytes().to_vec())
            }
        }
    }

    /// True if `sig` is a valid signature of `data` by `public`.
    pub fn verify(self, public: &str, data: &[u8], sig: &[u8]) -> Result<bool> {
        match self {
            SignEngine::Dummy => Ok(sig == public.as_bytes()),
            SignEngine::Ed25519 => {
                let raw = decode_key(public, 32, "public")?;
                let pk: [u8; 32] = raw.try_into().expect("length checked");
                // 32 bytes that are not a curve point cannot verify anything;
                // libsodium reports that as a failed verification, not an error.
                let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
                    return Ok(false);
                };
                let Ok(sig) = <[u8; 64]>::try_from(sig) else {
                    return Ok(false);
                };
                Ok(key
                    .verify(data, &ed25519_dalek::Signature::from_bytes(&sig))
                    .is_ok())
            }
        }
    }
}

fn decode_key(text: &str, len: usize, what: &str) -> Result<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Error::Invalid(format!("Invalid ed25519 {what} key: not base64")))?;
    if raw.len() != len {
        return Err(Error::Invalid(format!(
            "Invalid ed25519 {what} key: {} bytes, expected {len}",
            raw.len()
        )));
    }
    Ok(raw)
}

fn vardict_type() -> Type {
    Type::parse("a{sv}").expect("static type")
}

/// Reads a commit's detached metadata as key/value pairs (empty if none).
pub fn detached_metadata(repo: &Repo, commit: &Checksum) -> Result<Vec<(String, Value)>> {
    match repo.read_commit_detached_metadata(commit)? {
        None => Ok(Vec::new()),
        Some(b) => {
            let v = gvariant::decode(&vardict_type(), &b)
                .map_err(|e| Error::Corrupt(format!("detached metadata: {e}")))?;
            gvariant::vardict_entries(&v)
                .ok_or_else(|| Error::Corrupt("detached metadata: not a{sv}".into()))
        }
    }
}

/// Signs `commit` with `secret` and appends the signature.
pub fn sign_commit(repo: &Repo, commit: &Checksum, engine: SignEngine, secret: &str) -> Result<()> {
    let data = repo.read_metadata(ObjectType::Commit, commit)?;
    let sig = engine.sign(secret, &data)?;
    let mut meta = detached_metadata(repo, commit)?;
    let key = engine.metadata_key();
    let mut sigs = match meta.iter().find(|(k, _)| k == key) {
        Some((_, Value::Array(_, items))) => items.clone(),
        Some(_) => {
            return Err(Error::Corrupt(format!(
                "detached metadata: {key} is not aay"
            )))
        }
        None => Vec::new(),
    };
    sigs.push(Value::Bytes(sig));
    let value = Value::Array(Type::parse("ay").expect("static type"), sigs);
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => meta.push((key.to_string(), value)),
    }
    let tx = repo.begin()?;
    tx.write_commit_detached_metadata(commit, Some(&gvariant::vardict(&meta).to_bytes()))?;
    tx.commit()
}

/// The first of `public_keys` that verifies a signature of `engine` on
/// `commit`, if any.
pub fn verify_commit(
    repo: &Repo,
    commit: &Checksum,
    engine: SignEngine,
    public_keys: &[String],
) -> Result<Option<String>> {
    let data = repo.read_metadata(ObjectType::Commit, commit)?;
    let meta = detached_metadata(repo, commit)?;
    let Some((_, Value::Array(_, sigs))) = meta.iter().find(|(k, _)| k == engine.metadata_key())
    else {
        return Ok(None);
    };
    for pk in public_keys {
        for s in sigs {
            if let Value::Bytes(sig) = s {
                if engine.verify(pk, &data, sig)? {
                    return Ok(Some(pk.clone()));
                }
            }
        }
    }
    Ok(None)
}

/// Reads a keys file: one base64 key per line, blank lines ignored.
pub fn read_keys_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("Can't open file '{}' with keys", path.display()), e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Trusted minus revoked keys of the well-known layout under `dir`:
/// `trusted.ed25519`, `trusted.ed25519.d/*`, `revoked.ed25519`,
/// `revoked.ed25519.d/*` (upstream's `/etc/ostree` and `/usr/share/ostree`).
pub fn keys_from_dir(dir: &std::path::Path, engine: SignEngine) -> Result<Vec<String>> {
    let collect = |kind: &str| -> Result<Vec<String>> {
        let mut out = Vec::new();
        let single = dir.join(format!("{kind}.{}", engine.name()));
        if single.is_file() {
            out.extend(read_keys_file(&single)?);
        }
        let d = dir.join(format!("{kind}.{}.d", engine.name()));
        if let Ok(rd) = std::fs::read_dir(&d) {
            let mut files: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                out.extend(read_keys_file(&f)?);
            }
        }
        Ok(out)
    };
    let revoked = collect("revoked")?;
    Ok(collect("trusted")?
        .into_iter()
        .filter(|k| !revoked.contains(k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_roundtrip_with_libsodium_key_layout() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = b64.encode(sk.to_keypair_bytes());
        let public = b64.encode(sk.verifying_key().to_bytes());
        let sig = SignEngine::Ed25519.sign(&secret, b"commit bytes").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(SignEngine::Ed25519
            .verify(&public, b"commit bytes", &sig)
            .unwrap());
        assert!(!SignEngine::Ed25519
            .verify(&public, b"other bytes", &sig)
            .unwrap());
        assert!(SignEngine::Ed25519.sign("not base64!", b"x").is_err());
        assert!(SignEngine::Ed25519.verify(&secret, b"x", &sig).is_err());
    }
}
