//! The state file kept between stages (IG:internal/state/state.go), in
//! upstream's JSON shape so either implementation can read it, plus a
//! `failure` record of ours (upstream ignores unknown keys).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{path_err, Error, Result};

/// One fetched config, for the result file's `userConfigProvided`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedConfig {
    /// `base` or `user`.
    pub kind: String,
    /// `system`, the provider name, or a referenced URL's path.
    pub source: String,
    /// Fetched through `ignition.config.merge/replace`.
    pub referenced: bool,
}

impl FetchedConfig {
    pub(crate) fn new(kind: &str, source: &str, referenced: bool) -> FetchedConfig {
        FetchedConfig {
            kind: kind.into(),
            source: source.into(),
            referenced,
        }
    }
}

/// Why the last stage failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Stage name.
    pub stage: String,
    /// Config path of the failing field, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    /// The cause.
    pub message: String,
}

/// The state file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Configs fetched by the fetch stages.
    #[serde(rename = "fetchedConfigs", default, deserialize_with = "null_as_empty")]
    pub fetched_configs: Vec<FetchedConfig>,
    /// LUKS key files (data URLs by volume name) recorded by the disks stage
    /// for the files stage to persist under `/etc/luks/`.
    #[serde(rename = "luksPersistKeyFiles", default)]
    pub luks_persist_key_files: Option<serde_json::Map<String, serde_json::Value>>,
    /// Directories made by the mount stage, relative to the root.
    #[serde(rename = "notatedDirectories", default)]
    pub notated_directories: Option<Vec<String>>,
    /// The last stage failure, cleared by the next successful fetch/files run.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<Failure>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<FetchedConfig>, D::Error> {
    Ok(Option::<Vec<FetchedConfig>>::deserialize(d)?.unwrap_or_default())
}

impl State {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(p: &Path) -> Result<State> {
        match std::fs::read(p) {
            Ok(raw) => serde_json::from_slice(&raw)
                .map_err(|e| Error::new(format!("parsing state file {}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(path_err("reading state file", p, &e)),
        }
    }

    /// Writes the state file (0600, parent 0700, atomically).
    pub fn save(&self, p: &Path) -> Result<()> {
        let mut data =
            serde_json::to_vec(self).map_err(|e| Error::new(format!("serializing state: {e}")))?;
        data.push(b'\n');
        if let Some(d) = p.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| path_err("mkdir", d, &e))?;
        }
        write_atomic(p, &data, 0o600)
    }
}

/// Temp file in the same directory, fsync, rename: readers see the old or the
/// new contents, never a mix, even across a crash.
pub(crate) fn write_atomic(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = p.parent().unwrap_or(Path::new("."));
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| path_err("open", &tmp, &e))?;
        f.write_all(data).map_err(|e| path_err("write", &tmp, &e))?;
        // The mode given to open is reduced by the umask; set it exactly.
        crate::passwd::set_mode(&tmp, mode)?;
        f.sync_all().map_err(|e| path_err("fsync", &tmp, &e))?;
        std::fs::rename(&tmp, p).map_err(|e| path_err("rename", p, &e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upstream_state() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state");
        std::fs::write(&p, br#"{"fetchedConfigs":[{"kind":"base","source":"system","referenced":false},{"kind":"user","source":"file","referenced":false}],"luksPersistKeyFiles":null,"notatedDirectories":null}"#).unwrap();
        let s = State::load(&p).unwrap();
        assert_eq!(s.fetched_configs.len(), 2);
        assert_eq!(s.fetched_configs[1].source, "file");
        s.save(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "{\"fetchedConfigs\":[{\"kind\":\"base\",\"source\":\"system\",\"referenced\":false},{\"kind\":\"user\",\"source\":\"file\",\"referenced\":false}],\"luksPersistKeyFiles\":null,\"notatedDirectories\":null}\n"
        );
        assert!(State::load(&t.path().join("none"))
            .unwrap()
            .fetched_configs
            .is_empty());
    }
}
