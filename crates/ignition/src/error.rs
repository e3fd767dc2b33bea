//! The one error type of the engine: what failed, and where in the config.

use std::fmt;

/// A stage failure. `path` names the config field whose application failed
/// (`$.storage.files.3.contents.source`), when the failure belongs to one;
/// `message` is the cause, worded like upstream where upstream has a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Config path of the failing field, in vcontext notation.
    pub path: Option<String>,
    /// The cause.
    pub message: String,
}

impl Error {
    /// A failure not tied to one config field (I/O on the cache, bad flags, ...).
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            path: None,
            message: message.into(),
        }
    }

    /// A failure of the config field at `path`.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            path: Some(path.into()),
            message: message.into(),
        }
    }

    /// Attaches `path` unless the error already names a (more precise) one.
    pub(crate) fn or_at(mut self, path: &str) -> Error {
        if self.path.is_none() {
            self.path = Some(path.to_string());
        }
        self
    }

    /// Prefixes the cause with what was being done, keeping the path.
    pub(crate) fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Formats an I/O error without Rust's ` (os error N)` suffix, Go style.
pub(crate) fn io_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => {
            let t = &s[..i];
            let mut c = t.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        }
        None => s,
    }
}

/// `op PATH: cause`, as Go's `*os.PathError` prints.
pub(crate) fn path_err(op: &str, p: &std::path::Path, e: &std::io::Error) -> Error {
    Error::new(format!("{op} {}: {}", p.display(), io_msg(e)))
}
