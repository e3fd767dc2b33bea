//! Stage 5: the 1:1 mapping from the decoded Butane config (snake_case JSON)
//! to Ignition JSON, plus the base sugar (resources, `contents_local`,
//! `ssh_authorized_keys_local`, mount units, trees). Variant sugar lives in
//! [`crate::fcos`].

use serde_json::{Map, Value};

use crate::merge::{merge, Ts};
use crate::report::{Path, PathElem, Report, ReportExt};
use crate::schema::{self, ign_fields};
use crate::util;
use ignition_config::schema::Ty;

/// Inputs every translation step needs.
pub struct Ctx<'a> {
    /// Ignition 3.x minor version of the output.
    pub minor: u8,
    /// `-d/--files-dir` as given.
    pub files_dir: Option<&'a str>,
    /// The Ignition version string to emit.
    pub ign_version: &'a str,
}

fn key(p: &Path, k: &str) -> Path {
    let mut p = p.clone();
    p.push(PathElem::Key(k.to_string()));
    p
}

fn idx(p: &Path, i: usize) -> Path {
    let mut p = p.clone();
    p.push(PathElem::Index(i));
    p
}

/// Translates the base part of a decoded config. Errors go to the report.
pub fn base(src: &Value, ctx: &Ctx) -> (Value, Ts, Report) {
    let mut t = Translator {
        ctx,
        ts: Ts::default(),
        report: Report::default(),
    };
    let mut out = t.object(src, "Config", &Vec::new(), &Vec::new());
    // `version` is the target version, always (the user's `version` key picks the translator).
    let ign = out
        .entry("ignition")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = ign {
        m.insert("version".into(), Value::String(ctx.ign_version.into()));
    }
    t.ts.add(
        vec![
            PathElem::Key("ignition".into()),
            PathElem::Key("version".into()),
        ],
        vec![PathElem::Key("version".into())],
    );
    let mut cfg = Value::Object(out);
    if t.report.is_fatal() {
        return (cfg, t.ts, t.report);
    }
    let mut ts = t.ts;
    let mut report = t.report;
    add_mount_units(src, &mut cfg, &mut ts);
    process_trees(src, &mut cfg, &mut ts, &mut report, ctx);
    (cfg, ts, report)
}

struct Translator<'a> {
    ctx: &'a Ctx<'a>,
    ts: Ts,
    report: Report,
}

impl Translator<'_> {
    fn object(&mut self, src: &Value, st: &str, jp: &Path, yp: &Path) -> Map<String, Value> {
        self.ts.add(jp.clone(), yp.clone());
        let mut out = Map::new();
        let Some(obj) = src.as_object() else {
            return out;
        };
        for f in ign_fields(st, self.ctx.minor) {
            let sname = schema::snake(f.json);
            if let Some(v) = obj.get(&sname) {
                let (jf, yf) = (key(jp, f.json), key(yp, &sname));
                out.insert(f.json.to_string(), self.value(v, &f.ty, &jf, &yf));
            }
        }
        if schema::is_resource(st) {
            self.resource(obj, &mut out, jp, yp);
        }
        match st {
            "Unit" | "Dropin" => self.contents_local(obj, &mut out, jp, yp),
            "PasswdUser" => self.ssh_keys_local(obj, &mut out, jp, yp),
            _ => {}
        }
        out
    }

    fn value(&mut self, v: &Value, ty: &Ty, jp: &Path, yp: &Path) -> Value {
        match (ty, v) {
            (Ty::Struct(st), _) => Value::Object(self.object(v, st, jp, yp)),
            (Ty::List(inner) | Ty::NamedList(_, inner), Value::Array(items)) => {
                self.ts.add(jp.clone(), yp.clone());
                Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, it)| self.value(it, inner, &idx(jp, i), &idx(yp, i)))
                        .collect(),
                )
            }
            _ => {
                self.ts.add(jp.clone(), yp.clone());
                v.clone()
            }
        }
    }

    /// `inline`/`local` become a data URL in `source` (coreos/butane `translateResource`).
    fn resource(
        &mut self,
        obj: &Map<String, Value>,
        out: &mut Map<String, Value>,
        jp: &Path,
        yp: &Path,
    ) {
        let mut contents = None;
        let mut from = "";
        if let Some(local) = obj.get("local").and_then(Value::as_str) {
            match util::read_local(local, self.ctx.files_dir) {
                Ok(c) => {
                    contents = Some(c);
                    from = "local";
                }
                Err(e) => {
                    self.report.err(key(yp, "local"), e);
                    return;
                }
            }
        }
        if let Some(inline) = obj.get("inline").and_then(Value::as_str) {
            contents = Some(inline.as_bytes().to_vec());
            from = "inline";
        }
        let Some(contents) = contents else { return };
        let user = out
            .get("compression")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (url, compression) = util::make_data_url(&contents, user.as_deref());
        out.insert("source".into(), Value::String(url));
        self.ts.add(key(jp, "source"), key(yp, from));
        if let Some(c) = compression {
            out.insert("compression".into(), Value::String(c));
            self.ts.add(key(jp, "compression"), key(yp, from));
        }
    }

    fn contents_local(
        &mut self,
        obj: &Map<String, Value>,
        out: &mut Map<String, Value>,
        jp: &Path,
        yp: &Path,
    ) {
        let Some(local) = obj.get("contents_local").and_then(Value::as_str) else {
            return;
        };
        if local.is_empty() {
            return;
        }
        match util::read_local(local, self.ctx.files_dir) {
            Ok(c) => {
                out.insert(
                    "contents".into(),
                    Value::String(String::from_utf8_lossy(&c).into_owned()),
                );
                self.ts.add(key(jp, "contents"), key(yp, "contents_local"));
            }
            Err(e) => self.report.err(key(yp, "contents_local"), e),
        }
    }

    fn ssh_keys_local(
        &mut self,
        obj: &Map<String, Value>,
        out: &mut Map<String, Value>,
        jp: &Path,
        yp: &Path,
    ) {
        let Some(files) = obj
            .get("ssh_authorized_keys_local")
            .and_then(Value::as_array)
        else {
            return;
        };
        if files.is_empty() {
            return;
        }
        let yk = key(yp, "ssh_authorized_keys_local");
        let jk = key(jp, "sshAuthorizedKeys");
        if self.ctx.files_dir.is_none_or(str::is_empty) {
            self.report.err(yk, util::ERR_NO_FILES_DIR);
            return;
        }
        let mut keys: Vec<Value> = out
            .get("sshAuthorizedKeys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !out.contains_key("sshAuthorizedKeys") {
            self.ts.add(jk.clone(), yk.clone());
        }
        for (i, f) in files.iter().enumerate() {
            let Some(name) = f.as_str() else { continue };
            match util::read_local(name, self.ctx.files_dir) {
                Ok(data) => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    for line in text.split('\n') {
                        let line = line.strip_suffix('\r').unwrap_or(line);
                        if line.is_empty() {
                            continue;
                        }
                        self.ts.add(idx(&jk, keys.len()), idx(&yk, i));
                        keys.push(Value::String(line.into()));
                    }
                }
                Err(e) => self.report.err(idx(&yk, i), e),
            }
        }
        out.insert("sshAuthorizedKeys".into(), Value::Array(keys));
    }
}

/// Systemd units for `with_mount_unit` filesystems, merged under the user's config.
fn add_mount_units(src: &Value, cfg: &mut Value, ts: &mut Ts) {
    let Some(fss) = src
        .pointer("/storage/filesystems")
        .and_then(Value::as_array)
    else {
        return;
    };
    let luks: Vec<&Value> = src
        .pointer("/storage/luks")
        .and_then(Value::as_array)
        .map(|l| l.iter().collect())
        .unwrap_or_default();
    let mut units = Vec::new();
    let mut rts = Ts::default();
    for (i, fs) in fss.iter().enumerate() {
        if fs.get("with_mount_unit").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let s = |k: &str| {
            fs.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let device = s("device");
        let format = s("format");
        let remote = (device.starts_with("/dev/mapper/")
            || device.starts_with("/dev/disk/by-id/dm-name-"))
            && luks.iter().any(|l| {
                let name = l.get("name").and_then(Value::as_str).unwrap_or_default();
                (device == format!("/dev/mapper/{name}")
                    || device == format!("/dev/disk/by-id/dm-name-{name}"))
                    && l.pointer("/clevis/tang")
                        .and_then(Value::as_array)
                        .is_some_and(|t| !t.is_empty())
            });
        let mut options: Vec<String> = fs
            .get("mount_options")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if remote {
            options.push("_netdev".into());
        }
        let opts = if options.is_empty() {
            String::new()
        } else {
            format!("\nOptions={}", options.join(","))
        };
        let escaped = util::unit_name_path_escape(&device);
        let (name, contents) = if format == "swap" {
            (
                format!("{escaped}.swap"),
                format!("# Generated by Butane\n[Swap]\nWhat={device}{opts}\n\n[Install]\nRequiredBy=swap.target"),
            )
        } else {
            let path = s("path");
            let target = if remote {
                "remote-fs.target"
            } else {
                "local-fs.target"
            };
            (
                format!("{}.mount", util::unit_name_path_escape(&path)),
                format!(
                    "# Generated by Butane\n[Unit]\nRequires=systemd-fsck@{escaped}.service\nAfter=systemd-fsck@{escaped}.service\n\n[Mount]\nWhere={path}\nWhat={device}\nType={format}{opts}\n\n[Install]\nRequiredBy={target}"
                ),
            )
        };
        let unit = serde_json::json!({"contents": contents, "enabled": true, "name": name});
        let jp = crate::report::path(&["systemd", "units", &units.len().to_string()]);
        let yp =
            crate::report::path(&["storage", "filesystems", &i.to_string(), "with_mount_unit"]);
        rts.add_tree(&jp, &yp, &unit);
        units.push(unit);
    }
    if units.is_empty() {
        return;
    }
    let rendered = serde_json::json!({"systemd": {"units": units}});
    let (m, t) = merge(&rendered, &rts, cfg, ts);
    *cfg = m;
    *ts = t;
}

/// Embeds `storage.trees` (coreos/butane `processTrees`/`walkTree`).
fn process_trees(src: &Value, cfg: &mut Value, ts: &mut Ts, report: &mut Report, ctx: &Ctx) {
    let Some(trees) = src.pointer("/storage/trees").and_then(Value::as_array) else {
        return;
    };
    for (i, tree) in trees.iter().enumerate() {
        let yp = crate::report::path(&["storage", "trees", &i.to_string()]);
        let Some(dir) = ctx.files_dir.filter(|d| !d.is_empty()) else {
            report.err(yp, util::ERR_NO_FILES_DIR);
            return;
        };
        let local = tree
            .get("local")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let base = std::path::PathBuf::from(util::clean_slash_path(&format!("{dir}/{local}")));
        if let Err(e) = util::ensure_within(&base, dir) {
            report.err(yp, e);
            continue;
        }
        match std::fs::metadata(&base) {
            Err(e) => {
                report.err(yp, util::go_io_error("stat", &base, &e));
                continue;
            }
            Ok(m) if !m.is_dir() => {
                report.err(yp, "root of tree must be a directory");
                continue;
            }
            Ok(_) => {}
        }
        let dest = tree
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let mut entries = Vec::new();
        walk(&base, &base, &mut entries);
        for (rel, kind) in entries {
            let target = util::join_slash(dest, &rel);
            if let Err(e) = place(cfg, ts, &yp, &target, kind) {
                report.err(yp.clone(), e);
            }
        }
    }
}

enum TreeNode {
    File { data: Vec<u8>, exec: bool },
    Link(String),
    Dir,
    Other,
    Error(String),
}

/// `filepath.Walk` order: lexical, depth first, without following symlinks.
fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, TreeNode)>) {
    use std::os::unix::fs::PermissionsExt;
    let mut names: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name()).collect(),
        Err(e) => {
            out.push((
                String::new(),
                TreeNode::Error(util::go_io_error("open", dir, &e)),
            ));
            return;
        }
    };
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let rel = p
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push((rel, TreeNode::Dir));
            walk(root, &p, out);
        } else if ft.is_file() {
            match std::fs::read(&p) {
                Ok(data) => out.push((
                    rel,
                    TreeNode::File {
                        data,
                        exec: meta.permissions().mode() & 0o111 != 0,
                    },
                )),
                Err(e) => out.push((rel, TreeNode::Error(util::go_io_error("open", &p, &e)))),
            }
        } else if ft.is_symlink() {
            match std::fs::read_link(&p) {
                Ok(t) => out.push((rel, TreeNode::Link(t.to_string_lossy().into_owned()))),
                Err(e) => out.push((rel, TreeNode::Error(util::go_io_error("readlink", &p, &e)))),
            }
        } else {
            out.push((rel, TreeNode::Other));
        }
    }
}

const ERR_NODE_EXISTS: &str = "matching filesystem node has existing contents or different type";

fn list_mut<'a>(cfg: &'a mut Value, name: &str) -> &'a mut Vec<Value> {
    let storage = cfg
        .as_object_mut()
        .expect("config is an object")
        .entry("storage")
        .or_insert_with(|| Value::Object(Map::new()));
    let list = storage
        .as_object_mut()
        .expect("storage is an object")
        .entry(name)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    list.as_array_mut().expect("just made an array")
}

fn find(cfg: &Value, list: &str, path: &str) -> Option<usize> {
    cfg.pointer(&format!("/storage/{list}"))
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .position(|v| v.get("path").and_then(Value::as_str) == Some(path))
        })
}

fn place(
    cfg: &mut Value,
    ts: &mut Ts,
    yp: &Path,
    target: &str,
    kind: TreeNode,
) -> Result<(), String> {
    let exists_other = |cfg: &Value, own: &str| {
        ["files", "directories", "links"]
            .iter()
            .filter(|l| **l != own)
            .any(|l| find(cfg, l, target).is_some())
    };
    match kind {
        TreeNode::Dir => Ok(()),
        TreeNode::Other => Err("trees may only contain files, directories, and symlinks".into()),
        TreeNode::Error(e) => Err(e),
        TreeNode::File { data, exec } => {
            let i = match find(cfg, "files", target) {
                Some(i) => {
                    let f = &list_mut(cfg, "files")[i];
                    if f.pointer("/contents/source")
                        .and_then(Value::as_str)
                        .is_some()
                    {
                        return Err(ERR_NODE_EXISTS.into());
                    }
                    i
                }
                None => {
                    if exists_other(cfg, "files") {
                        return Err(ERR_NODE_EXISTS.into());
                    }
                    let files = list_mut(cfg, "files");
                    files.push(serde_json::json!({"path": target}));
                    let i = files.len() - 1;
                    let jp = crate::report::path(&["storage", "files", &i.to_string()]);
                    ts.add_tree(&jp, yp, &files[i]);
                    i
                }
            };
            let jp = crate::report::path(&["storage", "files", &i.to_string()]);
            let file = list_mut(cfg, "files")[i]
                .as_object_mut()
                .expect("file object");
            let user_comp = file
                .get("contents")
                .and_then(|c| c.get("compression"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let (url, comp) = util::make_data_url(&data, user_comp.as_deref());
            let contents = file
                .entry("contents")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("contents object");
            contents.insert("source".into(), Value::String(url));
            ts.add(key(&key(&jp, "contents"), "source"), yp.clone());
            if let Some(c) = comp {
                contents.insert("compression".into(), Value::String(c));
                ts.add(key(&key(&jp, "contents"), "compression"), yp.clone());
            }
            ts.add(key(&jp, "contents"), yp.clone());
            if !file.contains_key("mode") {
                file.insert("mode".into(), Value::from(if exec { 0o755 } else { 0o644 }));
                ts.add(key(&jp, "mode"), yp.clone());
            }
            Ok(())
        }
        TreeNode::Link(t) => {
            let i = match find(cfg, "links", target) {
                Some(i) => {
                    if list_mut(cfg, "links")[i]
                        .get("target")
                        .and_then(Value::as_str)
                        .is_some()
                    {
                        return Err(ERR_NODE_EXISTS.into());
                    }
                    i
                }
                None => {
                    if exists_other(cfg, "links") {
                        return Err(ERR_NODE_EXISTS.into());
                    }
                    let links = list_mut(cfg, "links");
                    links.push(serde_json::json!({"path": target}));
                    let i = links.len() - 1;
                    let jp = crate::report::path(&["storage", "links", &i.to_string()]);
                    ts.add_tree(&jp, yp, &links[i]);
                    i
                }
            };
            let jp = crate::report::path(&["storage", "links", &i.to_string()]);
            let link = list_mut(cfg, "links")[i]
                .as_object_mut()
                .expect("link object");
            link.insert("target".into(), Value::String(t));
            ts.add(key(&jp, "target"), yp.clone());
            Ok(())
        }
    }
}
