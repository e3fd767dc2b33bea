//! Report plumbing: Butane reports are `ignition_config::report` values (the
//! same `Entry`/`Report` Ignition uses), with YAML (snake_case) paths. Paths are
//! built as plain vectors while translating and wrapped when recorded.

pub use ignition_config::report::{Entry, Kind, Marker, PathElem, Report};

use crate::yaml::{Node, NodeKind};

/// A path under construction (`$.storage.files.0.path` when printed).
pub type Path = Vec<PathElem>;

/// Builds a path from string parts, numbers becoming indices.
pub fn path(parts: &[&str]) -> Path {
    parts
        .iter()
        .map(|p| match p.parse::<usize>() {
            Ok(i) => PathElem::Index(i),
            Err(_) => PathElem::Key(p.to_string()),
        })
        .collect()
}

/// `$.a.0.b` notation.
pub fn format_path(p: &[PathElem]) -> String {
    ignition_config::report::Path(p.to_vec()).to_string()
}

/// Adding entries with vector paths.
pub trait ReportExt {
    /// Adds an error at `path`.
    fn err(&mut self, path: Path, message: impl Into<String>);
    /// Adds a warning at `path`.
    fn warning(&mut self, path: Path, message: impl Into<String>);
}

impl ReportExt for Report {
    fn err(&mut self, path: Path, message: impl Into<String>) {
        self.error(ignition_config::report::Path(path), message);
    }

    fn warning(&mut self, path: Path, message: impl Into<String>) {
        self.warn(ignition_config::report::Path(path), message);
    }
}

/// An entry with an explicit marker.
pub fn entry(kind: Kind, path: Path, node: &Node, message: String) -> Entry {
    Entry {
        kind,
        path: ignition_config::report::Path(path),
        marker: Some(Marker {
            line: node.line,
            col: node.col,
        }),
        message,
    }
}

/// Fills in missing markers from the YAML tree (vcontext `Correlate`).
pub fn correlate(report: &mut Report, root: &Node) {
    for e in &mut report.entries {
        if e.marker.is_none() {
            e.marker = Some(locate(root, &e.path.0));
        }
    }
}

/// Position of the deepest node along `path` (a missing field reports its parent).
pub fn locate(root: &Node, path: &[PathElem]) -> Marker {
    let mut node = root;
    for elem in path {
        let next = match (&node.kind, elem) {
            (NodeKind::Map(entries), PathElem::Key(k)) => entries
                .iter()
                .rev()
                .find(|(key, _)| key.scalar() == Some(k.as_str()))
                .map(|(_, v)| v),
            (NodeKind::Seq(items), PathElem::Index(i)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    Marker {
        line: node.line,
        col: node.col,
    }
}
