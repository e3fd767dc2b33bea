//! A GLib keyfile (the repository `config`) that preserves comments, order
//! and formatting of untouched lines, so `config set` edits are minimal.

use crate::{Error, Result};

/// One line of a keyfile.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Group(String),
    Entry(String, String),
    Other(String),
}

/// A parsed keyfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyFile {
    lines: Vec<Line>,
}

impl KeyFile {
    /// Parses keyfile text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<KeyFile> {
        let mut lines = Vec::new();
        let mut in_group = false;
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Other(raw.to_string()));
            } else if t.starts_with('[') {
                if !t.ends_with(']') {
                    return Err(Error::Invalid(format!(
                        "{name}:{}: invalid group header '{t}'",
                        i + 1
                    )));
                }
                in_group = true;
                lines.push(Line::Group(t[1..t.len() - 1].to_string()));
            } else if let Some((k, v)) = t.split_once('=') {
                if !in_group {
                    return Err(Error::Invalid(format!(
                        "{name}:{}: key file does not start with a group",
                        i + 1
                    )));
                }
                lines.push(Line::Entry(k.trim().to_string(), unescape(v.trim_start())));
            } else {
                return Err(Error::Invalid(format!(
                    "{name}:{}: key file contains line '{t}' which is not a key-value pair, group, or comment",
                    i + 1
                )));
            }
        }
        Ok(KeyFile { lines })
    }

    /// Looks up `group.key`.
    pub fn get(&self, group: &str, key: &str) -> Option<&str> {
        let mut cur = None;
        let mut found = None;
        for l in &self.lines {
            match l {
                Line::Group(g) => cur = Some(g.as_str()),
                Line::Entry(k, v) if cur == Some(group) && k == key => found = Some(v.as_str()),
                _ => {}
            }
        }
        found
    }

    /// Reads a boolean (`true`/`false`/`1`/`0`); `None` if absent.
    pub fn get_bool(&self, group: &str, key: &str) -> Result<Option<bool>> {
        match self.get(group, key) {
            None => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(v) => Err(Error::Invalid(format!(
                "Key file contains key “{key}” which has a value that cannot be interpreted: {v}"
            ))),
        }
    }

    /// True if the group exists.
    pub fn has_group(&self, group: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Group(g) if g == group))
    }

    /// Sets `group.key = value`, creating the group at the end if needed.
    pub fn set(&mut self, group: &str, key: &str, value: &str) {
        let mut in_group = false;
        let mut last_in_group = None;
        for (i, l) in self.lines.iter_mut().enumerate() {
            match l {
                Line::Group(g) => {
                    in_group = g == group;
                    if in_group {
                        last_in_group = Some(i);
                    }
                }
                Line::Entry(k, v) if in_group && k == key => {
                    *v = value.to_string();
                    return;
                }
                Line::Entry(..) if in_group => last_in_group = Some(i),
                _ => {}
            }
        }
        let entry = Line::Entry(key.to_string(), value.to_string());
        match last_in_group {
            Some(i) => self.lines.insert(i + 1, entry),
            None => {
                if !self.lines.is_empty() {
                    self.lines.push(Line::Other(String::new()));
                }
                self.lines.push(Line::Group(group.to_string()));
                self.lines.push(entry);
            }
        }
    }

    /// Removes `group.key`; returns whether it existed.
    pub fn remove(&mut self, group: &str, key: &str) -> bool {
        let mut cur: Option<String> = None;
        let before = self.lines.len();
        self.lines.retain(|l| match l {
            Line::Group(g) => {
                cur = Some(g.clone());
                true
            }
            Line::Entry(k, _) => !(cur.as_deref() == Some(group) && k == key),
            _ => true,
        });
        before != self.lines.len()
    }

    /// Removes a whole group (and the blank line before it); returns
    /// whether it existed.
    pub fn remove_group(&mut self, group: &str) -> bool {
        let Some(start) = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Group(g) if g == group))
        else {
            return false;
        };
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| matches!(l, Line::Group(_)))
            .map(|i| start + 1 + i)
            .unwrap_or(self.lines.len());
        self.lines.drain(start..end);
        if start > 0 && matches!(&self.lines[start - 1], Line::Other(o) if o.trim().is_empty()) {
            self.lines.remove(start - 1);
        }
        true
    }

    /// Names of all groups, in file order.
    pub fn groups(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Group(g) => Some(g.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Serializes back to text (GLib style: `key=value`, newline-terminated).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            match l {
                Line::Group(g) => s.push_str(&format!("[{g}]\n")),
                Line::Entry(k, v) => s.push_str(&format!("{k}={}\n", escape(v))),
                Line::Other(o) => {
                    s.push_str(o);
                    s.push('\n');
                }
            }
        }
        s
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn escape(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_edit() {
        let text = "[core]\nrepo_version=1\nmode=archive-z2\n\n[remote \"origin\"]\nurl=http://x\n";
        let mut k = KeyFile::parse(text, "config").unwrap();
        assert_eq!(k.to_text(), text);
        assert_eq!(k.get("core", "mode"), Some("archive-z2"));
        assert_eq!(k.get("remote \"origin\"", "url"), Some("http://x"));
        k.set("core", "fsync", "false");
        assert_eq!(k.get_bool("core", "fsync").unwrap(), Some(false));
        assert!(k
            .to_text()
            .starts_with("[core]\nrepo_version=1\nmode=archive-z2\nfsync=false\n"));
        assert!(k.remove("core", "fsync"));
        assert_eq!(k.to_text(), text);
        k.set("foo", "bar", " x");
        assert!(k.to_text().ends_with("\n[foo]\nbar=\\sx\n"));
    }

    #[test]
    fn bad_line_names_location() {
        let e = KeyFile::parse("[core]\nnonsense\n", "repo/config").unwrap_err();
        assert!(e.to_string().contains("repo/config:2"), "{e}");
    }
}
