//! `ostree diff`: compare two commits, or a commit and a directory on disk,
//! by object checksums (content, ownership, mode and xattrs all count).

use crate::commit::checksum_path;
use crate::object::{self, Checksum, DirMeta};
use crate::{sys, Error, Repo, Result};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One side of a diff.
#[derive(Debug, Clone)]
pub enum Side {
    /// A commit in the repository.
    Commit(Checksum),
    /// A directory on disk, checksummed as a commit of it would be.
    Dir(PathBuf),
}

/// How on-disk files are checksummed (`--owner-uid`, `--owner-gid`,
/// `--no-xattrs`).
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Pretend every local file is owned by this uid.
    pub owner_uid: Option<u32>,
    /// Pretend every local file is owned by this gid.
    pub owner_gid: Option<u32>,
    /// Ignore xattrs of local files.
    pub no_xattrs: bool,
}

/// Differences, as paths in upstream's print form (`/path` for commit
/// entries, relative for directory entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Present on both sides with different content or metadata.
    pub modified: Vec<String>,
    /// Only in the first side.
    pub removed: Vec<String>,
    /// Only in the second side (directories listed with all descendants).
    pub added: Vec<String>,
}

enum Node {
    File(Checksum),
    Dir(Checksum, BTreeMap<String, Node>),
}

fn load_commit_tree(repo: &Repo, tree: &Checksum, meta: &Checksum) -> Result<Node> {
    let t = repo.load_dirtree(tree)?;
    let mut children = BTreeMap::new();
    for (n, c) in t.files {
        children.insert(n, Node::File(c));
    }
    for (n, tc, mc) in t.dirs {
        children.insert(n, load_commit_tree(repo, &tc, &mc)?);
    }
    Ok(Node::Dir(*meta, children))
}

fn load_dir(p: &Path, opts: &DiffOptions) -> Result<Node> {
    let md = fs::symlink_metadata(p).map_err(|e| Error::io(format!("lstat {}", p.display()), e))?;
    let xattrs = if opts.no_xattrs {
        Vec::new()
    } else {
        sys::lget_xattrs(p)?
    };
    let dm = DirMeta {
        uid: opts.owner_uid.unwrap_or(md.uid()),
        gid: opts.owner_gid.unwrap_or(md.gid()),
        mode: md.mode(),
        xattrs,
    };
    let mut children = BTreeMap::new();
    for e in fs::read_dir(p).map_err(|e| Error::io(format!("opendir {}", p.display()), e))? {
        let e = e.map_err(|e| Error::io(format!("readdir {}", p.display()), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let ft = e
            .file_type()
            .map_err(|e| Error::io(format!("lstat {}", path.display()), e))?;
        let node = if ft.is_dir() {
            load_dir(&path, opts)?
        } else {
            Node::File(file_checksum(&path, opts)?)
        };
        children.insert(name, node);
    }
    Ok(Node::Dir(
        object::metadata_checksum(&dm.to_bytes()),
        children,
    ))
}

fn file_checksum(p: &Path, opts: &DiffOptions) -> Result<Checksum> {
    if opts.owner_uid.is_none() && opts.owner_gid.is_none() {
        return checksum_path(p, opts.no_xattrs);
    }
    // Ownership overrides change the header: recompute with them applied.
    let md = fs::symlink_metadata(p).map_err(|e| Error::io(format!("lstat {}", p.display()), e))?;
    let xattrs = if opts.no_xattrs {
        Vec::new()
    } else {
        sys::lget_xattrs(p)?
    };
    let (mode, target, payload) = if md.file_type().is_symlink() {
        let t = fs::read_link(p).map_err(|e| Error::io(format!("readlink {}", p.display()), e))?;
        (
            object::mode::S_IFLNK | 0o777,
            t.to_string_lossy().into_owned(),
            None,
        )
    } else {
        (md.mode(), String::new(), Some(p))
    };
    let header = object::FileHeader {
        uid: opts.owner_uid.unwrap_or(md.uid()),
        gid: opts.owner_gid.unwrap_or(md.gid()),
        mode,
        symlink_target: target,
        xattrs,
    };
    let mut h = object::ContentHasher::new(&header);
    if let Some(p) = payload {
        let mut f =
            fs::File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
        let mut w = HashWriter(&mut h);
        std::io::copy(&mut f, &mut w)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    }
    Ok(h.finish())
}

struct HashWriter<'a>(&'a mut object::ContentHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn load(repo: &Repo, side: &Side, opts: &DiffOptions) -> Result<Node> {
    match side {
        Side::Commit(c) => {
            let cm = repo.load_commit(c)?;
            load_commit_tree(repo, &cm.root_tree, &cm.root_meta)
        }
        Side::Dir(p) => load_dir(p, opts),
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() || base.ends_with('/') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
}

fn add_all(node: &Node, path: &str, out: &mut Vec<String>) {
    if let Node::Dir(_, children) = node {
        for (n, c) in children {
            let p = join(path, n);
            out.push(p.clone());
            add_all(c, &p, out);
        }
    }
}

fn compare(a: &Node, b: &Node, pa: &str, pb: &str, out: &mut Diff) {
    let (Node::Dir(_, ca), Node::Dir(_, cb)) = (a, b) else {
        return;
    };
    for (name, na) in ca {
        let path_a = join(pa, name);
        match (na, cb.get(name)) {
            (_, None) => out.removed.push(path_a),
            (Node::File(x), Some(Node::File(y))) => {
                if x != y {
                    out.modified.push(path_a);
                }
            }
            (Node::Dir(ma, _), Some(nb @ Node::Dir(mb, _))) => {
                if ma != mb {
                    out.modified.push(path_a.clone());
                }
                compare(na, nb, &path_a, &join(pb, name), out);
            }
            (_, Some(_)) => out.modified.push(path_a),
        }
    }
    for (name, nb) in cb {
        if !ca.contains_key(name) {
            let p = join(pb, name);
            out.added.push(p.clone());
            add_all(nb, &p, &mut out.added);
        }
    }
}

/// Compares `a` with `b`.
pub fn diff(repo: &Repo, a: &Side, b: &Side, opts: &DiffOptions) -> Result<Diff> {
    let (na, nb) = (load(repo, a, opts)?, load(repo, b, opts)?);
    // Upstream prints commit entries as absolute paths and entries of a
    // local directory relative to it.
    let root = |s: &Side| {
        if matches!(s, Side::Commit(_)) {
            "/"
        } else {
            ""
        }
    };
    let mut out = Diff::default();
    compare(&na, &nb, root(a), root(b), &mut out);
    Ok(out)
}
