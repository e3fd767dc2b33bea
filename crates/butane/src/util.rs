//! Small rules Butane shares between sugars: data URLs, systemd unit-name
//! escaping, local file access below `--files-dir`, and the decimal-mode check.

use std::path::{Component, Path, PathBuf};

use base64::Engine;

/// `local file paths are relative to a files directory ...` (common.ErrNoFilesDir).
pub const ERR_NO_FILES_DIR: &str =
    "local file paths are relative to a files directory that must be specified with -d/--files-dir";
/// common.ErrFilesDirEscape.
pub const ERR_FILES_DIR_ESCAPE: &str = "local file path traverses outside the files directory";

/// Percent-escapes like vincent-petithory/dataurl `Escape`: every byte outside
/// `A-Za-z0-9-_.!~*'()` becomes `%XX` with uppercase hex.
pub fn escape(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Butane's `MakeDataURL`: the shortest of percent-encoding, base64 and (when
/// the user set no compression) gzip+base64, which must beat the others by more
/// than the length of `"gzip"`. Returns the URL and the `compression` value to
/// store (`None`: keep the user's).
pub fn make_data_url(data: &[u8], user_compression: Option<&str>) -> (String, Option<String>) {
    let plain = format!("data:,{}", escape(data));
    let b64 = format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let mut best = if b64.len() < plain.len() { b64 } else { plain };
    if user_compression.is_some_and(|c| !c.is_empty()) {
        return (best, None);
    }
    let gz = format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(crate::godeflate::gzip(data))
    );
    let mut compression = String::new();
    if gz.len() + "gzip".len() < best.len() {
        best = gz;
        compression = "gzip".into();
    }
    (best, Some(compression))
}

/// go-systemd `UnitNamePathEscape`.
pub fn unit_name_path_escape(p: &str) -> String {
    let cleaned = clean_slash_path(p);
    let trimmed = cleaned.trim_matches('/');
    if trimmed.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    let mut in_slashes = false;
    let mut start = true;
    for &c in trimmed.as_bytes() {
        if c == b'/' {
            in_slashes = true;
            continue;
        } else if in_slashes {
            out.push('-');
            in_slashes = false;
        }
        if c.is_ascii_alphanumeric() || c == b':' || c == b'_' || (c == b'.' && !start) {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
        start = false;
    }
    out
}

/// Go `path.Clean` for slash-separated paths.
pub fn clean_slash_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            x => parts.push(x),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go `path.Join`.
pub fn join_slash(base: &str, rel: &str) -> String {
    if rel.is_empty() || rel == "." {
        return clean_slash_path(base);
    }
    clean_slash_path(&format!("{base}/{rel}"))
}

/// Lexically cleans a filesystem path the way Go's `filepath.Clean` does.
fn clean_fs(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(clean_slash_path(&s))
}

/// Resolves `local` below `files_dir` (coreos/butane base/util `ReadLocalFile`
/// and `EnsurePathWithinFilesDir`): absolute paths are joined too, and `..`
/// may not leave the directory. The returned path keeps the files-dir prefix
/// exactly as given, because Go's error messages show it.
pub fn local_path(local: &str, files_dir: Option<&str>) -> Result<PathBuf, String> {
    let Some(dir) = files_dir.filter(|d| !d.is_empty()) else {
        return Err(ERR_NO_FILES_DIR.into());
    };
    let joined = clean_fs(&PathBuf::from(format!("{dir}/{local}")));
    ensure_within(&joined, dir)?;
    Ok(joined)
}

/// Fails with `ERR_FILES_DIR_ESCAPE` when `p` is not `dir` or below it.
pub fn ensure_within(p: &Path, dir: &str) -> Result<(), String> {
    let abs = |x: &Path| -> PathBuf {
        let base = if x.is_absolute() {
            x.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(x)
        };
        clean_fs(&base)
    };
    let (p, d) = (abs(p), abs(Path::new(dir)));
    let rel_ok = p.starts_with(&d)
        && !p
            .strip_prefix(&d)
            .map(|r| r.components().any(|c| c == Component::ParentDir))
            .unwrap_or(true);
    if rel_ok {
        Ok(())
    } else {
        Err(ERR_FILES_DIR_ESCAPE.into())
    }
}

/// Reads a local file, with Go's `open <path>: <reason>` error text.
pub fn read_local(local: &str, files_dir: Option<&str>) -> Result<Vec<u8>, String> {
    let p = local_path(local, files_dir)?;
    std::fs::read(&p).map_err(|e| go_io_error("open", &p, &e))
}

/// Formats an I/O error as Go's `*PathError` does (`open x: no such file or directory`).
pub fn go_io_error(op: &str, p: &Path, e: &std::io::Error) -> String {
    let reason = match e.raw_os_error() {
        Some(code) => {
            let s = std::io::Error::from_raw_os_error(code).to_string();
            // Rust appends " (os error N)"; Go prints the bare strerror, lowercase first letter.
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    format!("{op} {}: {reason}", p.display())
}

/// Butane's `CheckForDecimalMode`: true when `mode` looks like an octal mode
/// written without its leading zero.
pub fn is_decimal_mode_mistake(mode: i64, directory: bool) -> bool {
    if !(0..=7777).contains(&mode) {
        return false;
    }
    let digits = mode.to_string();
    if !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return false;
    }
    let as_octal = i64::from_str_radix(&digits, 8).unwrap_or(0);
    !is_typical_mode(mode, directory) && is_typical_mode(as_octal, directory)
}

fn is_typical_mode(mode: i64, directory: bool) -> bool {
    // no permissions at all is fine: root ignores mode bits
    if mode == 0 {
        return true;
    }
    let (mut had_r, mut had_w, mut had_x) = (false, false, false);
    // other, group, user: each more specific class must include the less specific
    for perm in [mode & 0o7, (mode >> 3) & 0o7, (mode >> 6) & 0o7] {
        let (r, w, x) = (perm & 4 != 0, perm & 2 != 0, perm & 1 != 0);
        if (!r && had_r) || (!w && had_w) || (!x && had_x) {
            return false;
        }
        if x && had_r && !had_x {
            return false;
        }
        if (w || x) && !r {
            return false;
        }
        had_r |= r;
        had_w |= w;
        had_x |= x;
    }
    if !had_r {
        return false;
    }
    if directory {
        if !had_x || mode & 0o4000 != 0 || (mode & 0o3000 != 0 && !had_w) {
            return false;
        }
    } else {
        if mode & 0o6000 != 0 && (!had_x || mode & 2 != 0) {
            return false;
        }
        if mode & 0o1000 != 0 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn data_url_candidates() {
        assert_eq!(
            make_data_url(b"hello world\n", None),
            ("data:,hello%20world%0A".to_string(), Some(String::new()))
        );
        // binary: base64 beats percent-encoding
        let (u, c) = make_data_url(&[0u8, 1, 2, 255, 254, 253], None);
        assert_eq!(u, "data:;base64,AAEC//79");
        assert_eq!(c.as_deref(), Some(""));
        // repetitive text: gzip wins and is announced
        let data = "all work and no play makes jack a dull boy\n".repeat(50);
        let (u, c) = make_data_url(data.as_bytes(), None);
        assert_eq!(c.as_deref(), Some("gzip"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(u.strip_prefix("data:;base64,").unwrap())
            .unwrap();
        assert_eq!(&raw[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff]);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, data);
        // user compression: never gzip, and keep the user's value
        let (_, c) = make_data_url(data.as_bytes(), Some("gzip"));
        assert_eq!(c, None);
    }

    #[test]
    fn escaping_alphabet() {
        assert_eq!(escape(b"a-_.!~*'()z /%"), "a-_.!~*'()z%20%2F%25");
    }

    #[test]
    fn systemd_escaping() {
        assert_eq!(unit_name_path_escape("/var/lib/data"), "var-lib-data");
        assert_eq!(
            unit_name_path_escape("/dev/disk/by-id/dm-name-x"),
            "dev-disk-by\\x2did-dm\\x2dname\\x2dx"
        );
        assert_eq!(unit_name_path_escape("/"), "-");
        assert_eq!(unit_name_path_escape("/var//.hidden/"), "var-.hidden");
        assert_eq!(unit_name_path_escape("/.a b"), "\\x2ea\\x20b");
    }

    #[test]
    fn decimal_modes() {
        assert!(is_decimal_mode_mistake(644, false));
        assert!(is_decimal_mode_mistake(755, true));
        assert!(!is_decimal_mode_mistake(420, false));
        assert!(!is_decimal_mode_mistake(0o644, false));
        assert!(is_decimal_mode_mistake(600, false));
        assert!(!is_decimal_mode_mistake(888, false));
        assert!(!is_decimal_mode_mistake(0, false));
    }

    #[test]
    fn local_paths_stay_inside() {
        assert_eq!(local_path("x", None).unwrap_err(), ERR_NO_FILES_DIR);
        assert_eq!(
            local_path("../x", Some("files-dir")).unwrap_err(),
            ERR_FILES_DIR_ESCAPE
        );
        assert_eq!(
            local_path("/a/../b", Some("files-dir")).unwrap(),
            PathBuf::from("files-dir/b")
        );
    }
}
