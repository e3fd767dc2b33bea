//! Text output in upstream's formats (`ls`, `show`, `log`, `summary
//! --view`, `--raw`): kept in the library so every front end prints the
//! same bytes the real `ostree` does.

use crate::gvariant::{self, Value};
use crate::object::{self, mode, Checksum, Xattrs};
use crate::summary::Summary;
use crate::{Error, Repo, Result};

/// An entry of a committed tree.
pub enum Entry {
    /// A directory: (dirtree, dirmeta).
    Dir(Checksum, Checksum),
    /// A file or symlink: content checksum.
    File(Checksum),
}

/// Finds `path` (absolute, `/`-separated) in `commit`.
pub fn lookup(repo: &Repo, commit: &Checksum, path: &str) -> Result<Entry> {
    let c = repo.load_commit(commit)?;
    let mut cur = Entry::Dir(c.root_tree, c.root_meta);
    for comp in path.split('/').filter(|s| !s.is_empty()) {
        let Entry::Dir(t, _) = cur else {
            return Err(Error::Invalid(format!("Not a directory: {path}")));
        };
        let tree = repo.load_dirtree(&t)?;
        cur = if let Some((_, tc, mc)) = tree.dirs.iter().find(|(n, ..)| n == comp) {
            Entry::Dir(*tc, *mc)
        } else if let Some((_, fc)) = tree.files.iter().find(|(n, _)| n == comp) {
            Entry::File(*fc)
        } else {
            return Err(Error::NotFound(format!(
                "No such file or directory: {path}"
            )));
        };
    }
    Ok(cur)
}

/// Like [`lookup`], but follows symlinks inside the commit (relative to
/// the link's directory, or from the root when absolute), as `ostree cat`
/// does. Gives up after 40 links.
pub fn lookup_follow(repo: &Repo, commit: &Checksum, path: &str) -> Result<Entry> {
    let mut path = path.to_string();
    for _ in 0..40 {
        let e = lookup(repo, commit, &path)?;
        let Entry::File(c) = &e else { return Ok(e) };
        let obj = repo.open_content(c)?;
        if !mode::is_lnk(obj.header.mode) {
            return Ok(e);
        }
        let target = &obj.header.symlink_target;
        path = if target.starts_with('/') {
            target.clone()
        } else {
            let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let mut parts: Vec<&str> = parent.split('/').filter(|s| !s.is_empty()).collect();
            for comp in target.split('/') {
                match comp {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    c => parts.push(c),
                }
            }
            format!("/{}", parts.join("/"))
        };
    }
    Err(Error::Invalid(format!(
        "Too many levels of symbolic links: {path}"
    )))
}

/// `ls` columns.
#[derive(Debug, Clone, Copy, Default)]
pub struct LsFlags {
    /// `-C`: checksums.
    pub checksum: bool,
    /// `-X`: xattrs.
    pub xattrs: bool,
    /// NUL-terminate lines instead of newline.
    pub nul: bool,
}

/// Xattrs as `g_variant_print` shows them (`ls -X`).
pub fn xattrs_text(x: &Xattrs) -> String {
    let v = Value::Array(
        gvariant::Type::parse("(ayay)").expect("static type"),
        x.iter()
            .map(|(n, v)| Value::Struct(vec![Value::Bytes(n.clone()), Value::Bytes(v.clone())]))
            .collect(),
    );
    gvariant::print(&v, true)
}

/// One `ls` line for `e` at `path`.
pub fn ls_line(repo: &Repo, e: &Entry, path: &str, f: &LsFlags, out: &mut String) -> Result<()> {
    let path = if path.is_empty() { "/" } else { path };
    match e {
        Entry::Dir(t, m) => {
            let dm = repo.load_dirmeta(m)?;
            out.push_str(&format!(
                "d{:05o} {} {} {:>6} ",
                dm.mode & 0o7777,
                dm.uid,
                dm.gid,
                0
            ));
            if f.checksum {
                out.push_str(&format!("{} {} ", object::to_hex(t), object::to_hex(m)));
            }
            if f.xattrs {
                out.push_str(&format!("{{ {} }} ", xattrs_text(&dm.xattrs)));
            }
            out.push_str(path);
        }
        Entry::File(c) => {
            let obj = repo.open_content(c)?;
            let h = &obj.header;
            let kind = if mode::is_lnk(h.mode) { 'l' } else { '-' };
            out.push_str(&format!(
                "{kind}{:05o} {} {} {:>6} ",
                h.mode & 0o7777,
                h.uid,
                h.gid,
                obj.size
            ));
            if f.checksum {
                out.push_str(&format!("{} ", object::to_hex(c)));
            }
            if f.xattrs {
                out.push_str(&format!("{{ {} }} ", xattrs_text(&h.xattrs)));
            }
            out.push_str(path);
            if mode::is_lnk(h.mode) {
                out.push_str(&format!(" -> {}", h.symlink_target));
            }
        }
    }
    out.push(if f.nul { '\0' } else { '\n' });
    Ok(())
}

/// `ls` lines for a directory's entries (files first, then dirs),
/// recursively with `recurse` (`-R`).
pub fn ls_children(
    repo: &Repo,
    tree: &Checksum,
    path: &str,
    recurse: bool,
    f: &LsFlags,
    out: &mut String,
) -> Result<()> {
    let t = repo.load_dirtree(tree)?;
    // Upstream enumerates files before directories, each sorted by name.
    for (n, c) in &t.files {
        ls_line(repo, &Entry::File(*c), &format!("{path}/{n}"), f, out)?;
    }
    for (n, tc, mc) in &t.dirs {
        let sub = format!("{path}/{n}");
        ls_line(repo, &Entry::Dir(*tc, *mc), &sub, f, out)?;
        if recurse {
            ls_children(repo, tc, &sub, recurse, f, out)?;
        }
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS +0000` (upstream's commit date format).
pub fn format_date(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S +0000").to_string())
        .unwrap_or_else(|| format!("@{ts}"))
}

fn indented(text: &str, out: &mut String) {
    for line in text.split_inclusive('\n') {
        out.push_str("    ");
        out.push_str(line);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
}

/// The `show`/`log` block of one commit; returns the parsed commit.
pub fn dump_commit(repo: &Repo, c: &Checksum, out: &mut String) -> Result<object::Commit> {
    let cm = repo.load_commit(c)?;
    out.push_str(&format!("commit {}\n", object::to_hex(c)));
    if let Some(p) = cm.parent {
        out.push_str(&format!("Parent:  {}\n", object::to_hex(&p)));
    }
    let mut content = Vec::with_capacity(64);
    content.extend_from_slice(&cm.root_tree);
    content.extend_from_slice(&cm.root_meta);
    out.push_str(&format!(
        "ContentChecksum:  {}\n",
        object::to_hex(&object::metadata_checksum(&content))
    ));
    out.push_str(&format!("Date:  {}\n", format_date(cm.timestamp)));
    if let Some(Value::Str(v)) = cm.meta("version") {
        out.push_str(&format!("Version: {v}\n"));
    }
    if cm.subject.is_empty() {
        out.push_str("(no subject)\n");
    } else {
        out.push('\n');
        indented(&cm.subject, out);
    }
    if !cm.body.is_empty() {
        out.push('\n');
        indented(&cm.body, out);
    }
    out.push('\n');
    Ok(cm)
}

/// Upstream prints `--raw` after `g_variant_byteswap` on little-endian
/// hosts, so the big-endian ostree fields read naturally.
pub fn byteswap(v: Value) -> Value {
    match v {
        Value::U16(x) => Value::U16(x.swap_bytes()),
        Value::I16(x) => Value::I16(x.swap_bytes()),
        Value::U32(x) => Value::U32(x.swap_bytes()),
        Value::I32(x) => Value::I32(x.swap_bytes()),
        Value::U64(x) => Value::U64(x.swap_bytes()),
        Value::I64(x) => Value::I64(x.swap_bytes()),
        Value::Variant(b) => Value::Variant(Box::new(byteswap(*b))),
        Value::Array(t, items) => Value::Array(t, items.into_iter().map(byteswap).collect()),
        Value::Struct(m) => Value::Struct(m.into_iter().map(byteswap).collect()),
        Value::DictEntry(k, v) => Value::DictEntry(Box::new(byteswap(*k)), Box::new(byteswap(*v))),
        Value::Maybe(t, v) => Value::Maybe(t, v.map(|b| Box::new(byteswap(*b)))),
        other => other,
    }
}

/// `YYYY-MM-DDTHH:MM:SS+00` (summary view dates).
pub fn iso_date(ts: u64) -> String {
    let d = format_date(ts);
    // "YYYY-MM-DD HH:MM:SS +0000" -> "YYYY-MM-DDTHH:MM:SS+00" (GLib's %FT%T%:::z)
    format!("{}T{}+00", &d[..10], &d[11..19])
}

/// `ostree summary --view` text.
pub fn summary_view(s: &Summary) -> String {
    let mut out = String::new();
    let be = |v: &Value| match v {
        Value::U64(x) => Some(u64::from_be_bytes(x.to_le_bytes())),
        _ => None,
    };
    // With collections, refs are shown as `(COLLECTION, REF)`: the main
    // list under the summary's own collection ID, then the collection map.
    let cid = s.metadata.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("ostree.summary.collection-id", Value::Str(c)) => Some(c.clone()),
        _ => None,
    });
    let mut listed: Vec<(String, &crate::summary::SummaryRef)> = s
        .refs
        .iter()
        .map(|r| match &cid {
            Some(c) => (format!("({c}, {})", r.name), r),
            None => (r.name.clone(), r),
        })
        .collect();
    let map: Vec<(String, Vec<crate::summary::SummaryRef>)> = s
        .metadata
        .iter()
        .filter(|(k, _)| k == "ostree.summary.collection-map")
        .filter_map(|(_, v)| match v {
            Value::Array(_, entries) => Some(entries),
            _ => None,
        })
        .flatten()
        .filter_map(|e| match e {
            Value::DictEntry(k, v) => match &**k {
                Value::Str(c) => Some((c.clone(), crate::summary::refs_from_value(v)?)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    for (c, refs) in &map {
        listed.extend(refs.iter().map(|r| (format!("({c}, {})", r.name), r)));
    }
    for (shown, r) in listed {
        out.push_str(&format!(
            "* {shown}\n    Latest Commit ({} bytes):\n      {}\n",
            r.commit_size,
            object::to_hex(&r.checksum)
        ));
        for (k, v) in &r.metadata {
            match (k.as_str(), be(v)) {
                ("ostree.commit.timestamp", Some(t)) => {
                    out.push_str(&format!("    Timestamp ({k}): {}\n", iso_date(t)))
                }
                ("ostree.commit.version", _) => out.push_str(&format!(
                    "    Version ({k}): {}\n",
                    gvariant::print(v, false).trim_matches('\'')
                )),
                _ => out.push_str(&format!("    {k}: {}\n", gvariant::print(v, false))),
            }
        }
        out.push('\n');
    }
    for (k, v) in &s.metadata {
        match k.as_str() {
            "ostree.summary.mode" => out.push_str(&format!(
                "Repository Mode ({k}): {}\n",
                gvariant::print(v, false).trim_matches('\'')
            )),
            "ostree.summary.last-modified" => out.push_str(&format!(
                "Last-Modified ({k}): {}\n",
                be(v).map(iso_date).unwrap_or_default()
            )),
            "ostree.summary.tombstone-commits" => out.push_str(&format!(
                "Has Tombstone Commits ({k}): {}\n",
                if v == &Value::Bool(true) { "Yes" } else { "No" }
            )),
            "ostree.static-deltas" => out.push_str(&format!(
                "Static Deltas ({k}): {}\n",
                gvariant::print(v, false)
            )),
            "ostree.summary.collection-map" => {
                out.push_str(&format!("Collection Map ({k}): (printed above)\n"))
            }
            "ostree.summary.collection-id" => out.push_str(&format!(
                "Collection ID ({k}): {}\n",
                gvariant::print(v, false).trim_matches('\'')
            )),
            _ => out.push_str(&format!("{k}: {}\n", gvariant::print(v, false))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_date(1234567890), "2009-02-13 23:31:30 +0000");
        assert_eq!(format_date(0), "1970-01-01 00:00:00 +0000");
        assert_eq!(iso_date(1234567890), "2009-02-13T23:31:30+00");
        let t = crate::commit::parse_timestamp("2038-01-19T03:14:08Z").unwrap();
        assert_eq!(format_date(t), "2038-01-19 03:14:08 +0000");
    }
}
