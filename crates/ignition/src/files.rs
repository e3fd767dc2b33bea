//! The files stage (IG:internal/exec/stages/files): groups, users, then
//! directories/files/links sorted by depth with hard links last, then systemd
//! units, drop-ins, masks and presets, then `/etc/.ignition-result.json`.
//!
//! Every path is resolved with [`crate::path::join_path`], so nothing is written
//! outside the root. Failures name the config field (`$.storage.files.3...`).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ignition_config::types::{Config, Directory, File, Link, NodeGroup, NodeUser, Resource, Unit};

use crate::error::{io_msg, path_err, Error, Result};
use crate::passwd;
use crate::path::{depth, join_path};
use crate::resource::Fetcher;
use crate::tools;

/// Where enablement lines go (upstream `PresetPath`).
pub const PRESET_PATH: &str = "/etc/systemd/system-preset/20-ignition.preset";
/// The provisioning report (upstream 2.13+ location).
pub const RESULT_PATH: &str = "/etc/.ignition-result.json";

/// Facts about the run that end up in the result file.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Whether a user config (not only base configs) was provided.
    pub user_config_provided: bool,
    /// Kernel boot ID of this boot.
    pub boot_id: String,
    /// RFC 3339 UTC time of the run.
    pub date: String,
    /// Mountpoints the mount stage created (root-relative).
    pub notated_directories: Vec<String>,
}

/// Applies the files stage of `cfg` to `root`.
pub fn run(root: &Path, cfg: &Config, fetcher: &mut Fetcher, info: &RunInfo) -> Result<()> {
    create_passwd(root, cfg, &info.notated_directories)
        .map_err(|e| e.context("failed to create users/groups"))?;
    create_entries(root, cfg, fetcher).map_err(|e| e.context("failed to create files"))?;
    create_units(root, cfg).map_err(|e| e.context("failed to create units"))?;
    create_result_file(root, info).map_err(|e| e.context("failed to write result file"))?;
    Ok(())
}

fn create_passwd(root: &Path, cfg: &Config, notated: &[String]) -> Result<()> {
    for (i, g) in cfg.passwd.groups.iter().enumerate() {
        passwd::ensure_group(root, g)
            .map_err(|e| e.context(format!("failed to create group {:?}", g.name)))
            .map_err(|e| e.or_at(&format!("$.passwd.groups.{i}")))?;
    }
    for (i, u) in cfg.passwd.users.iter().enumerate() {
        let at = format!("$.passwd.users.{i}");
        passwd::ensure_user(root, u).map_err(|e| {
            e.context(format!("failed to create user {:?}", u.name))
                .or_at(&at)
        })?;
        if u.should_exist == Some(false) {
            continue;
        }
        passwd::own_notated_dirs(root, &u.name, notated).map_err(|e| e.or_at(&at))?;
        passwd::set_password_hash(root, u).map_err(|e| {
            e.context(format!("failed to set password for {:?}", u.name))
                .or_at(&format!("{at}.passwordHash"))
        })?;
        passwd::authorize_ssh_keys(root, u).map_err(|e| {
            e.context(format!("failed to add keys to user {:?}", u.name))
                .or_at(&format!("{at}.sshAuthorizedKeys"))
        })?;
    }
    Ok(())
}

enum Kind<'a> {
    Dir(&'a Directory),
    File(&'a File),
    Link(&'a Link),
}

struct Entry<'a> {
    /// `$.storage.files.3`
    at: String,
    /// The path as configured.
    path: &'a str,
    /// Resolved host path below the root.
    host: PathBuf,
    overwrite: bool,
    kind: Kind<'a>,
}

/// Resolves, checks for collisions and orders the storage entries as upstream's
/// `getOrderedCreationList`: by depth (stable here; upstream's order within one
/// depth is unspecified), hard links after everything else.
fn ordered_entries<'a>(root: &Path, cfg: &'a Config) -> Result<Vec<Entry<'a>>> {
    let mut entries = Vec::new();
    let mut hard = Vec::new();
    let mut seen: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut add = |at: String, path: &'a str, overwrite: Option<bool>, kind: Kind<'a>| {
        let host = join_path(root, path)
            .map_err(|e| Error::at(&at, format!("resolving {path}: {}", io_msg(&e))))?;
        if let Some(prev) = seen.get(&host) {
            return Err(Error::at(
                &at,
                format!(
                    "{path} resolved to {} after symlink chasing, but {prev} also resolves there",
                    host.display()
                ),
            ));
        }
        seen.insert(host.clone(), at.clone());
        let e = Entry {
            at,
            path,
            host,
            overwrite: overwrite == Some(true),
            kind,
        };
        if matches!(e.kind, Kind::Link(l) if l.hard == Some(true)) {
            hard.push(e);
        } else {
            entries.push(e);
        }
        Ok(())
    };
    let s = &cfg.storage;
    for (i, d) in s.directories.iter().enumerate() {
        add(
            format!("$.storage.directories.{i}"),
            &d.path,
            d.overwrite,
            Kind::Dir(d),
        )?;
    }
    for (i, f) in s.files.iter().enumerate() {
        add(
            format!("$.storage.files.{i}"),
            &f.path,
            f.overwrite,
            Kind::File(f),
        )?;
    }
    for (i, l) in s.links.iter().enumerate() {
        add(
            format!("$.storage.links.{i}"),
            &l.path,
            l.overwrite,
            Kind::Link(l),
        )?;
    }
    entries.sort_by_key(|e| depth(e.path));
    entries.extend(hard);
    Ok(entries)
}

fn create_entries(root: &Path, cfg: &Config, fetcher: &mut Fetcher) -> Result<()> {
    for mut e in ordered_entries(root, cfg)? {
        // Resolve again now, in case an earlier entry created a symlink on the
        // way: upstream resolves only up front. Validation rejects entries below
        // configured links, so this is defence in depth, not a behaviour change.
        e.host = join_path(root, e.path)
            .map_err(|x| Error::at(&e.at, format!("resolving {}: {}", e.path, io_msg(&x))))?;
        if e.overwrite {
            remove_all(&e.host).map_err(|x| x.or_at(&e.at))?;
        }
        match e.kind {
            Kind::Dir(d) => create_dir(root, &e, d),
            Kind::File(f) => create_file(root, &e, f, fetcher),
            Kind::Link(l) => create_link(root, &e, l),
        }
        .map_err(|x| x.or_at(&e.at))?;
    }
    Ok(())
}

fn remove_all(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| path_err("remove", p, &e))
}

fn lstat(p: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(path_err("lstat", p, &e)),
    }
}

/// Creates the missing parents of `p` (0755 minus umask, root-owned), as
/// upstream's `MkdirForFile`.
fn mkdir_for_file(p: &Path) -> Result<()> {
    let dir = p.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| path_err("mkdir", dir, &e))
}

fn create_dir(root: &Path, e: &Entry, d: &Directory) -> Result<()> {
    match lstat(&e.host)? {
        None => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&e.host)
            .map_err(|x| path_err("mkdir", &e.host, &x))?,
        Some(md) if !md.is_dir() => {
            return Err(Error::new(format!(
            "error creating directory {}: A non-directory already exists and overwrite is false",
            e.path
        )))
        }
        Some(_) => {}
    }
    set_permissions(root, &e.host, &e.at, d.mode, &d.user, &d.group)
}

fn create_file(root: &Path, e: &Entry, f: &File, fetcher: &mut Fetcher) -> Result<()> {
    let mut contents = f.contents.clone();
    match lstat(&e.host)? {
        None if contents.source.is_none() => contents.source = Some(String::new()),
        None => {}
        Some(md) if !md.is_file() => {
            return Err(Error::new(format!(
                "error creating file {:?}: A non regular file exists there already and overwrite is false",
                e.path
            )))
        }
        Some(_) if contents.source.is_some() => {
            return Err(Error::new(format!(
                "error creating file {:?}: A file exists there already and overwrite is false",
                e.path
            )))
        }
        Some(_) => {}
    }
    if contents.source.is_some() {
        // Parents first, as upstream does before downloading: a failed fetch
        // leaves the same partial tree.
        mkdir_for_file(&e.host)?;
        let data = fetch(fetcher, &contents, &format!("{}.contents", e.at))?;
        write_replace(&e.host, &data, 0o644)?;
    }
    for (i, a) in f.append.iter().enumerate() {
        let data = fetch(fetcher, a, &format!("{}.append.{i}", e.at))?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&e.host)
            .map_err(|x| path_err("open", &e.host, &x))?;
        file.write_all(&data)
            .map_err(|x| path_err("write", &e.host, &x))?;
    }
    set_permissions(root, &e.host, &e.at, f.mode, &f.user, &f.group)
}

/// Fetches a resource, naming `<at>.source`, `<at>.compression` or
/// `<at>.verification.hash` on failure.
pub(crate) fn fetch(fetcher: &mut Fetcher, r: &Resource, at: &str) -> Result<Vec<u8>> {
    fetcher
        .fetch(r)
        .map_err(|e| Error::at(format!("{at}.{}", e.field), e.message))
}

/// Writes `data` to a temp file beside `dest` and renames it over `dest`, so a
/// reader never sees a partial file.
fn write_replace(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    mkdir_for_file(dest)?;
    let dir = dest.parent().unwrap_or(Path::new("/"));
    let (tmp, mut file) = create_temp(dir)?;
    let res = (|| {
        file.write_all(data)
            .map_err(|x| path_err("write", &tmp, &x))?;
        file.sync_all().map_err(|x| path_err("fsync", &tmp, &x))?;
        passwd::set_mode(&tmp, mode)?;
        std::fs::rename(&tmp, dest).map_err(|x| path_err("rename", dest, &x))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn create_temp(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    let pid = std::process::id();
    for n in 0..1000u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = dir.join(format!(".ign-tmp{pid}-{nanos:x}-{n}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(path_err("open", &p, &e)),
        }
    }
    Err(Error::new(format!(
        "cannot create a temp file in {}",
        dir.display()
    )))
}

fn create_link(root: &Path, e: &Entry, l: &Link) -> Result<()> {
    let hard = l.hard == Some(true);
    let target = l.target.as_deref().unwrap_or("");
    if let Some(md) = lstat(&e.host)? {
        if hard {
            let th = join_path(root, target).map_err(|x| Error::new(io_msg(&x)))?;
            let tmd = std::fs::symlink_metadata(&th).map_err(|x| {
                Error::new(format!(
                    "error creating hard link {}: target does not exist or stat() returned an err: {}",
                    e.path,
                    io_msg(&x)
                ))
            })?;
            if tmd.dev() == md.dev() && tmd.ino() == md.ino() {
                return Ok(());
            }
            return Err(Error::new(format!(
                "error creating hard link {}: a file already exists at that path but is not the target and overwrite is false",
                e.path
            )));
        }
        if md.file_type().is_symlink() {
            let cur = std::fs::read_link(&e.host).map_err(|x| path_err("readlink", &e.host, &x))?;
            let cur = cur.to_string_lossy();
            if go_clean(&cur) == go_clean(target) {
                return Ok(());
            }
            return Err(Error::new(format!(
                "error creating symlink {}: a symlink exists at that path but points to {cur}, not {target} and overwrite is false",
                e.path
            )));
        }
        return Err(Error::new(format!(
            "error creating symlink {}: a non-symlink already exists at that path and overwrite is false",
            e.path
        )));
    }
    mkdir_for_file(&e.host)?;
    if hard {
        let th = join_path(root, target).map_err(|x| Error::new(io_msg(&x)))?;
        return std::fs::hard_link(&th, &e.host).map_err(|x| {
            Error::at(
                format!("{}.target", e.at),
                format!("link {target} {}: {}", e.path, io_msg(&x)),
            )
        });
    }
    std::os::unix::fs::symlink(target, &e.host)
        .map_err(|x| Error::new(format!("Could not create symlink: {}", io_msg(&x))))?;
    set_permissions(root, &e.host, &e.at, None, &l.user, &l.group)
}

/// Go's `filepath.Clean` (relative paths stay relative).
fn go_clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => match out.last() {
                Some(&l) if l != ".." => {
                    out.pop();
                }
                _ if abs => {}
                _ => out.push(".."),
            },
            c => out.push(c),
        }
    }
    let body = out.join("/");
    match (abs, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Owner, then mode (2.22+ order: chown clears setuid/setgid, so chmod last).
/// Unset user/group keep the current owner; names are looked up in the root.
fn set_permissions(
    root: &Path,
    host: &Path,
    at: &str,
    mode: Option<i64>,
    user: &NodeUser,
    group: &NodeGroup,
) -> Result<()> {
    let md = std::fs::symlink_metadata(host).map_err(|e| path_err("lstat", host, &e))?;
    // Upstream defaults a symlink's owner from stat() through the link, i.e.
    // from whatever the target names on the machine running Ignition; the
    // link's own owner (root, just created) is used here instead.
    let (mut uid, mut gid) = (md.uid(), md.gid());
    if let Some(id) = user.id {
        uid = id as u32;
    } else if let Some(name) = user.name.as_deref().filter(|n| !n.is_empty()) {
        uid = passwd::lookup_user(root, name)?
            .ok_or_else(|| {
                Error::at(
                    format!("{at}.user.name"),
                    format!(
                        "failed to determine correct uid and gid for {}: No such user {name:?}",
                        host.display()
                    ),
                )
            })?
            .uid;
    }
    if let Some(id) = group.id {
        gid = id as u32;
    } else if let Some(name) = group.name.as_deref().filter(|n| !n.is_empty()) {
        gid = passwd::lookup_group(root, name)?.ok_or_else(|| {
            Error::at(
                format!("{at}.group.name"),
                format!(
                    "failed to determine correct uid and gid for {}: No such group {name:?}",
                    host.display()
                ),
            )
        })?;
    }
    std::os::unix::fs::lchown(host, Some(uid), Some(gid))
        .map_err(|e| path_err("lchown", host, &e))?;
    if let Some(m) = mode {
        passwd::set_mode(host, (m as u32) & 0o7777)?;
    }
    Ok(())
}

struct Preset {
    unit: String,
    enabled: bool,
    instances: Option<Vec<String>>,
}

fn create_units(root: &Path, cfg: &Config) -> Result<()> {
    let mut presets: BTreeMap<String, Preset> = BTreeMap::new();
    for (i, unit) in cfg.systemd.units.iter().enumerate() {
        let at = format!("$.systemd.units.{i}");
        write_unit(root, unit, &at)?;
        if let Some(enabled) = unit.enabled {
            let ident = if enabled { "enabled" } else { "disabled" };
            if unit.name.contains('@') {
                let (template, instance) = parse_instance(&unit.name)
                    .ok_or_else(|| Error::at(format!("{at}.name"), "no systemd unit extension"))?;
                presets
                    .entry(format!("{template}-{ident}"))
                    .or_insert_with(|| Preset {
                        unit: template.clone(),
                        enabled,
                        instances: Some(Vec::new()),
                    })
                    .instances
                    .get_or_insert_with(Vec::new)
                    .push(instance);
            } else {
                presets.insert(
                    format!("{}-{ident}", unit.name),
                    Preset {
                        unit: unit.name.clone(),
                        enabled,
                        instances: None,
                    },
                );
            }
        }
        match unit.mask {
            Some(true) => {
                mask_unit(root, &unit.name).map_err(|e| e.or_at(&format!("{at}.mask")))?
            }
            Some(false) => {
                unmask_unit(root, &unit.name).map_err(|e| e.or_at(&format!("{at}.mask")))?
            }
            None => {}
        }
    }
    // 2.15+: one line per template/unit, sorted by "<unit>-<enabled|disabled>".
    for p in presets.values() {
        let what = match &p.instances {
            Some(inst) => format!("{} {}", p.unit, inst.join(" ")),
            None => p.unit.clone(),
        };
        let at = unit_path_for(cfg, &p.unit);
        if p.enabled {
            append_preset(root, &format!("enable {what}")).map_err(|e| e.or_at(&at))?;
        } else {
            disable_unit(root, &what).map_err(|e| e.or_at(&at))?;
            append_preset(root, &format!("disable {what}")).map_err(|e| e.or_at(&at))?;
        }
    }
    Ok(())
}

/// `$.systemd.units.N.enabled` of the first unit a preset line came from.
fn unit_path_for(cfg: &Config, unit: &str) -> String {
    let idx =
        cfg.systemd.units.iter().position(|u| {
            u.name == unit || parse_instance(&u.name).is_some_and(|(t, _)| t == unit)
        });
    match idx {
        Some(i) => format!("$.systemd.units.{i}.enabled"),
        None => "$.systemd.units".into(),
    }
}

/// `echo@bar.service` -> (`echo@.service`, `bar`).
fn parse_instance(name: &str) -> Option<(String, String)> {
    let at = name.find('@')?;
    let dot = name.rfind('.')?;
    if dot < at {
        return None;
    }
    Some((
        format!("{}{}", &name[..=at], &name[dot..]),
        name[at + 1..dot].to_string(),
    ))
}

fn write_unit(root: &Path, unit: &Unit, at: &str) -> Result<()> {
    for (j, d) in unit.dropins.iter().enumerate() {
        let Some(contents) = &d.contents else {
            continue;
        };
        let p = format!("/etc/systemd/system/{}.d/{}", unit.name, d.name);
        let host = join_path(root, &p).map_err(|e| Error::new(io_msg(&e)))?;
        write_replace(&host, contents.as_bytes(), 0o644)
            .map_err(|e| e.context(format!("writing systemd drop-in {:?}", d.name)))
            .map_err(|e| e.or_at(&format!("{at}.dropins.{j}")))?;
    }
    if let Some(contents) = unit.contents.as_deref().filter(|c| !c.is_empty()) {
        let host = join_path(root, &format!("/etc/systemd/system/{}", unit.name))
            .map_err(|e| Error::new(io_msg(&e)))?;
        write_replace(&host, contents.as_bytes(), 0o644)
            .map_err(|e| e.context(format!("writing unit {:?}", unit.name)))
            .map_err(|e| e.or_at(&format!("{at}.contents")))?;
    }
    Ok(())
}

fn mask_unit(root: &Path, name: &str) -> Result<()> {
    let host = join_path(root, &format!("/etc/systemd/system/{name}"))
        .map_err(|e| Error::new(io_msg(&e)))?;
    mkdir_for_file(&host)?;
    remove_all(&host)?;
    std::os::unix::fs::symlink("/dev/null", &host).map_err(|e| path_err("symlink", &host, &e))
}

fn unmask_unit(root: &Path, name: &str) -> Result<()> {
    let host = join_path(root, &format!("/etc/systemd/system/{name}"))
        .map_err(|e| Error::new(io_msg(&e)))?;
    match std::fs::read_link(&host) {
        Ok(t) if t == Path::new("/dev/null") => {
            std::fs::remove_file(&host).map_err(|e| path_err("remove", &host, &e))
        }
        _ => Ok(()),
    }
}

/// 2.16+: remove enablement symlinks only when systemctl says the unit is
/// enabled in the root, so unknown units do not make the stage fail.
fn disable_unit(root: &Path, what: &str) -> Result<()> {
    let r = tools::path_for_tool(root);
    let r = r.to_string_lossy();
    let units: Vec<&str> = what.split(' ').collect();
    let out = tools::command("systemctl")
        .args(["--root", &r, "is-enabled"])
        .args(&units)
        .output()
        .map_err(|e| {
            Error::new(format!(
                "running systemctl is-enabled {what}: {}",
                io_msg(&e)
            ))
        })?;
    if String::from_utf8_lossy(&out.stdout).trim() != "enabled" {
        return Ok(());
    }
    let out = tools::command("systemctl")
        .args(["--root", &r, "disable"])
        .args(&units)
        .output()
        .map_err(|e| Error::new(format!("running systemctl disable {what}: {}", io_msg(&e))))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "cannot remove symlink(s) for {what}: {:?}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn append_preset(root: &Path, line: &str) -> Result<()> {
    let host = join_path(root, PRESET_PATH).map_err(|e| Error::new(io_msg(&e)))?;
    mkdir_for_file(&host)?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&host)
        .map_err(|e| path_err("open", &host, &e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| path_err("write", &host, &e))
}

fn create_result_file(root: &Path, info: &RunInfo) -> Result<()> {
    let host = join_path(root, RESULT_PATH).map_err(|e| Error::new(io_msg(&e)))?;
    let mut obj = serde_json::Map::new();
    obj.insert("provisioningBootID".into(), info.boot_id.clone().into());
    obj.insert("provisioningDate".into(), info.date.clone().into());
    obj.insert(
        "userConfigProvided".into(),
        info.user_config_provided.into(),
    );
    // A rerun keeps the earlier report, as upstream does.
    if let Ok(prev) = std::fs::read(&host) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&prev) {
            obj.insert("previousReport".into(), v);
        }
    }
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(obj))
        .map_err(|e| Error::new(e.to_string()))?;
    text.push('\n');
    write_replace(&host, text.as_bytes(), 0o600)?;
    std::os::unix::fs::lchown(&host, Some(0), Some(0)).map_err(|e| path_err("lchown", &host, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_clean() {
        assert_eq!(
            parse_instance("echo@bar.service"),
            Some(("echo@.service".into(), "bar".into()))
        );
        assert_eq!(parse_instance("a.b@c"), None);
        assert_eq!(go_clean("../a/./b/"), "../a/b");
        assert_eq!(go_clean("/a/../../b"), "/b");
        assert_eq!(go_clean("a/.."), ".");
    }
}
