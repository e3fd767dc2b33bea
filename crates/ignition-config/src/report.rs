//! Validation reports in the format of coreos/vcontext (what Ignition and Butane print).

use std::fmt;

/// A list of findings, in the order upstream produces them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The findings.
    pub entries: Vec<Entry>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Severity.
    pub kind: Kind,
    /// Logical location (JSON field names, list indices).
    pub path: Path,
    /// Position in the source text, when known.
    pub marker: Option<Marker>,
    /// The message, worded as upstream words it.
    pub message: String,
}

/// Severity of an [`Entry`]. Only errors are fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Makes the config invalid.
    Error,
    /// Suspicious but accepted.
    Warning,
    /// Informational.
    Info,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Error => "error",
            Kind::Warning => "warning",
            Kind::Info => "info",
        })
    }
}

/// A logical location such as `$.storage.files.0.path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<PathElem>);

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathElem {
    /// An object key.
    Key(String),
    /// A list index.
    Index(usize),
}

impl Path {
    /// The root (`$`).
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path with one more key.
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(PathElem::Key(k.to_string()));
        p
    }

    /// This path with one more index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(PathElem::Index(i));
        p
    }

    /// Builds a path from dotted components (`"storage.files"`), indices
    /// written as numbers.
    pub fn parse_dotted(s: &str) -> Path {
        Path(
            s.split('.')
                .filter(|c| !c.is_empty())
                .map(|c| match c.parse::<usize>() {
                    Ok(i) => PathElem::Index(i),
                    Err(_) => PathElem::Key(c.to_string()),
                })
                .collect(),
        )
    }

    /// Whether this is the root path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for e in &self.0 {
            match e {
                PathElem::Key(k) => write!(f, ".{k}")?,
                PathElem::Index(i) => write!(f, ".{i}")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line/column position (columns count bytes, as vcontext does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Marker {
    /// Line, 1-based (0 when upstream could not place it).
    pub line: usize,
    /// Column in bytes, 1-based (0 when upstream could not place it).
    pub col: usize,
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} col {}", self.line, self.col)
    }
}

impl Report {
    /// An empty report.
    pub fn new() -> Report {
        Report::default()
    }

    /// Whether any entry is an error.
    pub fn is_fatal(&self) -> bool {
        self.entries.iter().any(|e| e.kind == Kind::Error)
    }

    /// Appends the entries of `other`.
    pub fn merge(&mut self, other: Report) {
        self.entries.extend(other.entries);
    }

    /// Adds an entry without a marker.
    pub fn add(&mut self, kind: Kind, path: Path, message: impl Into<String>) {
        self.entries.push(Entry {
            kind,
            path,
            marker: None,
            message: message.into(),
        });
    }

    /// Adds an error.
    pub fn error(&mut self, path: Path, message: impl Into<String>) {
        self.add(Kind::Error, path, message);
    }

    /// Adds a warning.
    pub fn warn(&mut self, path: Path, message: impl Into<String>) {
        self.add(Kind::Warning, path, message);
    }

    /// Whether the report has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for Entry {
    /// `error at $.path, line L col C: message` (vcontext's `Entry.String`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        match (&self.marker, self.path.is_empty()) {
            (Some(m), false) => write!(f, " at {}, {m}", self.path)?,
            (Some(m), true) => write!(f, " at {m}")?,
            (None, false) => write!(f, " at {}", self.path)?,
            (None, true) => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for Report {
    /// One entry per line, each followed by a newline (vcontext's `Report.String`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_like_vcontext() {
        let mut r = Report::new();
        r.error(
            Path::parse_dotted("storage.files.0.path"),
            "path not absolute",
        );
        r.entries[0].marker = Some(Marker { line: 1, col: 61 });
        r.warn(Path::root().key("storage").key("file"), "unused key file");
        assert_eq!(
            r.to_string(),
            "error at $.storage.files.0.path, line 1 col 61: path not absolute\nwarning at $.storage.file: unused key file\n"
        );
        assert!(r.is_fatal());
    }
}
