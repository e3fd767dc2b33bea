//! Boot Loader Specification type #1 entries (`/boot/loader/entries/*.conf`)
//! and systemd's boot counting in their file names (`NAME+LEFT[-DONE].conf`).

use crate::{Error, Result};

/// One BLS entry: `key value` lines in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootEntry {
    lines: Vec<(String, String)>,
}

impl BootEntry {
    /// Parses entry text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<BootEntry> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (k, v) = match t.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((k, v)) => (k, v.trim()),
                None => (t, ""),
            };
            if k.is_empty() {
                return Err(Error::Corrupt(format!("{name}:{}: empty key", i + 1)));
            }
            lines.push((k.to_string(), v.to_string()));
        }
        Ok(BootEntry { lines })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (`initrd` may repeat).
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Sets `key`, replacing its first occurrence in place or appending.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.lines.iter_mut().find(|(k, _)| k == key) {
            Some(l) => l.1 = value.to_string(),
            None => self.lines.push((key.to_string(), value.to_string())),
        }
    }

    /// Appends a line even if `key` already exists.
    pub fn push(&mut self, key: &str, value: &str) {
        self.lines.push((key.to_string(), value.to_string()));
    }

    /// Serializes as `key value` lines.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.lines {
            s.push_str(k);
            s.push(' ');
            s.push_str(v);
            s.push('\n');
        }
        s
    }
}

/// A parsed entry file name: `STEM[+LEFT[-DONE]].conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    /// The name without counter and `.conf` (`ostree-2-fedora-coreos`).
    pub stem: String,
    /// Boot tries left and done, when the entry is being counted.
    pub counter: Option<(u32, u32)>,
}

impl EntryName {
    /// Parses a file name; `None` if it is not a `.conf` file.
    pub fn parse(file_name: &str) -> Option<EntryName> {
        let base = file_name.strip_suffix(".conf")?;
        if let Some((stem, ctr)) = base.rsplit_once('+') {
            let parsed = match ctr.split_once('-') {
                Some((l, d)) => l.parse().ok().zip(d.parse().ok()),
                None => ctr.parse().ok().map(|l| (l, 0)),
            };
            if let Some(c) = parsed {
                return Some(EntryName {
                    stem: stem.to_string(),
                    counter: Some(c),
                });
            }
        }
        Some(EntryName {
            stem: base.to_string(),
            counter: None,
        })
    }

    /// The file name: `+LEFT` while nothing was tried yet, `+LEFT-DONE`
    /// afterwards (systemd-boot's spelling).
    pub fn file_name(&self) -> String {
        match self.counter {
            None => format!("{}.conf", self.stem),
            Some((l, 0)) => format!("{}+{l}.conf", self.stem),
            Some((l, d)) => format!("{}+{l}-{d}.conf", self.stem),
        }
    }

    /// An entry whose tries are spent: boot loaders sort it last.
    pub fn is_bad(&self) -> bool {
        matches!(self.counter, Some((0, _)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_roundtrip() {
        let t = "title Fedora CoreOS 40 (ostree:fcos:0)\nversion 2\n# c\noptions root=x rw ostree=/ostree/boot.1/fcos/ab/0\nlinux /ostree/fcos-ab/vmlinuz-6\ninitrd /a\ninitrd /b\n";
        let e = BootEntry::parse(t, "x.conf").unwrap();
        assert_eq!(e.get("title"), Some("Fedora CoreOS 40 (ostree:fcos:0)"));
        assert_eq!(e.get_all("initrd"), ["/a", "/b"]);
        assert_eq!(e.to_text(), t.replace("# c\n", ""));
    }

    #[test]
    fn counter_names() {
        let n = EntryName::parse("ostree-2-fcos+3.conf").unwrap();
        assert_eq!(n.stem, "ostree-2-fcos");
        assert_eq!(n.counter, Some((3, 0)));
        assert_eq!(n.file_name(), "ostree-2-fcos+3.conf");
        let n = EntryName::parse("ostree-2-fcos+0-3.conf").unwrap();
        assert!(n.is_bad());
        assert_eq!(n.file_name(), "ostree-2-fcos+0-3.conf");
        let n = EntryName::parse("ostree-1-a+b.conf").unwrap();
        assert_eq!((n.stem.as_str(), n.counter), ("ostree-1-a+b", None));
        assert!(EntryName::parse("README").is_none());
    }
}
