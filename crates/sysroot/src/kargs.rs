//! Kernel command line arguments with upstream's edit semantics
//! (`ostree-kernel-args.c`): order is kept, a key may repeat
//! (`console=tty0 console=ttyS0`), replacing a key collapses it to one value.

use crate::{Error, Result};
use std::fmt;

/// An ordered kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelArgs {
    args: Vec<(String, Option<String>)>,
}

fn split_arg(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (arg.to_string(), None),
    }
}

/// Splits a command line on whitespace outside double quotes, as the kernel
/// does (`foo="a b"` is one argument).
pub fn split_cmdline(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        if ch == '"' {
            quoted = !quoted;
            cur.push(ch);
        } else if ch.is_whitespace() && !quoted {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(ch);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl KernelArgs {
    /// Parses a command line (an empty string gives no arguments).
    pub fn parse(s: &str) -> KernelArgs {
        KernelArgs {
            args: split_cmdline(s).iter().map(|a| split_arg(a)).collect(),
        }
    }

    /// The first value of `key` (`Some(None)` for a bare flag).
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// Appends `arg` (`key` or `key=value`), keeping existing values.
    pub fn append(&mut self, arg: &str) {
        self.args.push(split_arg(arg));
    }

    /// Sets `key` to exactly this value (`--karg`; the value is everything
    /// after the first `=`, so `root=LABEL=x` works): the first occurrence
    /// is replaced in place, further ones are dropped; absent keys are
    /// appended.
    pub fn replace(&mut self, arg: &str) {
        let (k, v) = split_arg(arg);
        match self.args.iter().position(|(kk, _)| *kk == k) {
            Some(pos) => {
                self.args[pos].1 = v;
                let mut i = 0;
                self.args.retain(|(kk, _)| {
                    i += 1;
                    i - 1 == pos || *kk != k
                });
            }
            None => self.args.push((k, v)),
        }
    }

    /// Deletes `key=value` exactly, or `key` when it has a single value
    /// (`--karg-delete`); ambiguity and absence are errors.
    pub fn delete(&mut self, arg: &str) -> Result<()> {
        let (k, v) = split_arg(arg);
        let matching: Vec<usize> = self
            .args
            .iter()
            .enumerate()
            .filter(|(_, (kk, vv))| *kk == k && (v.is_none() || *vv == v))
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [] => Err(Error::Invalid(format!(
                "Failed to find kernel argument '{arg}'"
            ))),
            [i] => {
                self.args.remove(*i);
                Ok(())
            }
            _ if v.is_none() => Err(Error::Invalid(format!(
                "Unable to delete argument '{k}' with multiple values"
            ))),
            _ => {
                self.args.remove(matching[0]);
                Ok(())
            }
        }
    }

    /// Appends `arg` unless exactly this `key[=value]` is present.
    pub fn append_if_missing(&mut self, arg: &str) {
        let a = split_arg(arg);
        if !self.args.contains(&a) {
            self.args.push(a);
        }
    }

    /// Deletes `arg` like [`KernelArgs::delete`] when it is present.
    pub fn delete_if_present(&mut self, arg: &str) -> Result<()> {
        let (k, v) = split_arg(arg);
        if self
            .args
            .iter()
            .any(|(kk, vv)| *kk == k && (v.is_none() || *vv == v))
        {
            self.delete(arg)?;
        }
        Ok(())
    }

    /// Removes every occurrence of `key`; returns whether any existed.
    pub fn remove_key(&mut self, key: &str) -> bool {
        let n = self.args.len();
        self.args.retain(|(k, _)| k != key);
        n != self.args.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The arguments as `key[=value]` strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect()
    }
}

impl fmt::Display for KernelArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vec().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_quotes_and_order() {
        let k = KernelArgs::parse(r#"root=LABEL=r  quiet foo="a b" console=tty0 console=ttyS0"#);
        assert_eq!(
            k.to_vec(),
            [
                "root=LABEL=r",
                "quiet",
                "foo=\"a b\"",
                "console=tty0",
                "console=ttyS0"
            ]
        );
        assert_eq!(k.get("root"), Some(Some("LABEL=r")));
        assert_eq!(k.get("quiet"), Some(None));
    }

    #[test]
    fn replace_collapses_and_keeps_position() {
        let mut k = KernelArgs::parse("a=1 console=tty0 b console=ttyS0");
        k.replace("console=hvc0");
        assert_eq!(k.to_string(), "a=1 console=hvc0 b");
        k.replace("new=x");
        assert_eq!(k.to_string(), "a=1 console=hvc0 b new=x");
        k.replace("a=LABEL=x");
        assert_eq!(k.to_string(), "a=LABEL=x console=hvc0 b new=x");
    }

    #[test]
    fn delete_rules() {
        let mut k = KernelArgs::parse("console=tty0 console=ttyS0 quiet x=1");
        assert!(k
            .delete("console")
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        k.delete("console=tty0").unwrap();
        k.delete("quiet").unwrap();
        assert!(k.delete("nope").is_err());
        assert_eq!(k.to_string(), "console=ttyS0 x=1");
        k.delete_if_present("nope").unwrap();
        k.delete_if_present("x=1").unwrap();
        k.append_if_missing("console=ttyS0");
        k.append_if_missing("console=tty1");
        assert_eq!(k.to_string(), "console=ttyS0 console=tty1");
    }
}
