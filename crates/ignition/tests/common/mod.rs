//! Shared helpers: seeding a target root the way the peer script does, running
//! our engine against it, and snapshotting a tree for comparison.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared");

/// Fails the test with a clear reason unless we can change ownership (useradd
/// --root and chown need root).
pub fn require_root() {
    assert!(
        euid() == 0,
        "these tests create users and chown files: run them as root"
    );
}

fn euid() -> u32 {
    // /proc/self/status is readable without unsafe code.
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// The Fedora-like account database of `run-real-ignition.sh` (SEED=1).
pub fn seed(root: &Path) {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let w = |name: &str, text: &str, mode: u32| {
        let p = etc.join(name);
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    w(
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    );
    w(
        "group",
        "root:x:0:\nwheel:x:10:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n",
        0o644,
    );
    w(
        "shadow",
        "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        0o640,
    );
    w(
        "gshadow",
        "root:*::\nwheel:*::\nsudo:*::\nusers:*::\nnogroup:*::\n",
        0o640,
    );
    w(
        "login.defs",
        "UMASK 022\nHOME_MODE 0700\nUSERGROUPS_ENAB yes\nCREATE_HOME yes\nUID_MIN 1000\nUID_MAX 60000\nSYS_UID_MIN 201\nSYS_UID_MAX 999\nGID_MIN 1000\nGID_MAX 60000\nSYS_GID_MIN 201\nSYS_GID_MAX 999\nENCRYPT_METHOD SHA512\n",
        0o644,
    );
}

/// Engine options isolated from the host: empty system config dir, empty
/// kernel command line, cache and state in `work`.
pub fn options(root: &Path, config: &Path, work: &Path) -> ignition_engine::Options {
    std::fs::create_dir_all(work.join("sysconf")).unwrap();
    std::fs::write(work.join("cmdline"), "").unwrap();
    let mut o = ignition_engine::Options::new("file", root);
    o.config_file = Some(config.to_path_buf());
    o.system_config_dir = work.join("sysconf");
    o.config_cache = work.join("ignition.json");
    o.state_file = work.join("state");
    o.neednet = work.join("neednet");
    o.kernel_cmdline = work.join("cmdline");
    o
}

/// One node of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Option<String>,
    pub target: Option<String>,
}

/// Snapshot of `root` with the peer recipe's masks applied: shadow-utils
/// artefacts (`*-` backups, `.pwd.lock`) skipped, the shadow last-change field
/// blanked, the result file reduced to its keys and `userConfigProvided`, and
/// preset lines sorted (2.14.0 writes them in Go map order).
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let md = std::fs::symlink_metadata(root).unwrap();
    out.insert(
        "/".to_string(),
        Node {
            kind: 'd',
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            content: None,
            target: None,
        },
    );
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let mut ents: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ents.sort();
    for p in ents {
        let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
        if rel == "/etc/.pwd.lock"
            || (rel.starts_with("/etc/") && rel.ends_with('-') && rel.matches('/').count() == 2)
        {
            continue;
        }
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            'l'
        } else if ft.is_dir() {
            'd'
        } else {
            'f'
        };
        let content = (kind == 'f').then(|| mask_content(&rel, &std::fs::read(&p).unwrap()));
        let target = (kind == 'l').then(|| std::fs::read_link(&p).unwrap().display().to_string());
        out.insert(
            rel,
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                content,
                target,
            },
        );
        if kind == 'd' {
            walk(root, &p, out);
        }
    }
}

fn mask_content(rel: &str, raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).into_owned();
    match rel {
        "/etc/shadow" => text
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split(':').collect();
                if f.len() > 2 {
                    f[2] = "<lastchg>";
                }
                f.join(":") + "\n"
            })
            .collect(),
        "/etc/.ignition-result.json" => {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let obj = v.as_object().unwrap();
            let keys: Vec<&String> = obj.keys().collect();
            format!(
                "keys={keys:?} userConfigProvided={}",
                obj["userConfigProvided"]
            )
        }
        "/etc/systemd/system-preset/20-ignition.preset" => {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort();
            lines.join("\n")
        }
        _ => text,
    }
}

/// Human-readable differences between two snapshots (empty when equal).
pub fn diff(ours: &BTreeMap<String, Node>, peer: &BTreeMap<String, Node>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, p) in peer {
        match ours.get(k) {
            None => d.push(format!("missing in ours: {k} {p:?}")),
            Some(o) if o != p => d.push(format!("differs: {k}\n    ours: {o:?}\n    peer: {p:?}")),
            _ => {}
        }
    }
    for k in ours.keys() {
        if !peer.contains_key(k) {
            d.push(format!("extra in ours: {k} {:?}", ours[k]));
        }
    }
    d
}

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
}

/// What a handler answers: status, extra headers, body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 server on 127.0.0.1 (one request per connection), so the
/// fetch code meets a real socket. Every request is logged.
pub struct Server {
    pub base: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
}

impl Server {
    pub fn start<F>(handler: F) -> Server
    where
        F: Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Request>::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = BTreeMap::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let req = Request { path, headers };
                let n = {
                    let mut l = log2.lock().unwrap();
                    l.push(req.clone());
                    l.iter().filter(|r| r.path == req.path).count()
                };
                let (status, extra, body) = handler(&req, n);
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        Server { base, log }
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> Vec<Request> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}
