//! Users and groups, by shelling out to shadow-utils with `--root` exactly as
//! upstream does (IG:internal/exec/util/passwd.go), so passwd/shadow/group/
//! gshadow entries and home directories are what `useradd` makes of them.
//!
//! Name lookups read the target root's `/etc/passwd` and `/etc/group`, never the
//! host's (upstream chroots and calls getpwnam, which on these systems reads the
//! same files).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use ignition_config::types::{PasswdGroup, PasswdUser};

use crate::error::{io_msg, Error, Result};
use crate::tools;

/// An entry of the root's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (in the root's namespace).
    pub home: String,
}

/// Looks `name` up in `root/etc/passwd`.
pub fn lookup_user(root: &Path, name: &str) -> Result<Option<PasswdEntry>> {
    let text = read_db(root, "passwd")?;
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == name).then(|| PasswdEntry {
            name: f[0].to_string(),
            uid: f[2].parse().unwrap_or(u32::MAX),
            gid: f[3].parse().unwrap_or(u32::MAX),
            home: f[5].to_string(),
        })
    }))
}

/// Looks `name` up in `root/etc/group`, returning its gid.
pub fn lookup_group(root: &Path, name: &str) -> Result<Option<u32>> {
    let text = read_db(root, "group")?;
    Ok(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().unwrap_or(u32::MAX))
    }))
}

fn read_db(root: &Path, db: &str) -> Result<String> {
    let p = root.join("etc").join(db);
    match std::fs::read(&p) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        // No database: no such user, as getpwnam would say.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(crate::error::path_err("open", &p, &e)),
    }
}

/// Runs a shadow-utils command on `root`: the host's tool with
/// `--root ROOT`, or, when the stage runs the root's tools
/// ([`crate::tools`]), the root's own chrooted into it (same files written:
/// `--root` makes shadow-utils chroot itself). Failure carries the command
/// line and output.
fn run(cmd: &str, root: &Path, args: &[String]) -> Result<()> {
    let mut args = args.to_vec();
    let mut c = Command::new(cmd);
    if tools::root().is_some() {
        tools::chroot(&mut c, root);
    } else {
        args.splice(0..0, ["--root".to_string(), root_arg(root)]);
    }
    let out = c
        .args(&args)
        .output()
        .map_err(|e| Error::new(format!("running {cmd}: {}", io_msg(&e))))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let quoted: Vec<String> = std::iter::once(cmd.to_string())
            .chain(args.iter().cloned())
            .map(|a| format!("{a:?}"))
            .collect();
        return Err(Error::new(format!(
            "{}: Cmd: {} Stdout: {:?}",
            status_text(&out.status),
            quoted.join(" "),
            text
        )));
    }
    Ok(())
}

fn status_text(s: &std::process::ExitStatus) -> String {
    match s.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by signal".to_string(),
    }
}

fn root_arg(root: &Path) -> String {
    root.to_string_lossy().into_owned()
}

/// Creates or deletes one group (upstream `EnsureGroup`, 2.14.0 flavour:
/// `groupadd` even if the group exists, which then fails).
pub fn ensure_group(root: &Path, g: &PasswdGroup) -> Result<()> {
    let exists = lookup_group(root, &g.name)?.is_some();
    if g.should_exist == Some(false) {
        if exists {
            run("groupdel", root, std::slice::from_ref(&g.name))
                .map_err(|e| e.context(format!("failed to delete group {:?}", g.name)))?;
        }
        return Ok(());
    }
    let mut args = Vec::new();
    if let Some(gid) = g.gid {
        args.extend(["--gid".into(), gid.to_string()]);
    }
    args.push("--password".into());
    args.push(match g.password_hash.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => "*".into(),
    });
    if g.system == Some(true) {
        args.push("--system".into());
    }
    args.push(g.name.clone());
    run("groupadd", root, &args)
}

fn push_if_set(args: &mut Vec<String>, flag: &str, v: &Option<String>) {
    if let Some(s) = v {
        if !s.is_empty() {
            args.extend([flag.to_string(), s.clone()]);
        }
    }
}

/// Creates, modifies or deletes one user (upstream `EnsureUser`).
pub fn ensure_user(root: &Path, u: &PasswdUser) -> Result<()> {
    let exists = lookup_user(root, &u.name)?.is_some();
    if u.should_exist == Some(false) {
        if exists {
            run("userdel", root, &["--remove".into(), u.name.clone()])
                .map_err(|e| e.context(format!("failed to delete user {:?}", u.name)))?;
        }
        return Ok(());
    }
    let mut args = Vec::new();
    let cmd = if exists {
        if let Some(h) = u.home_dir.as_deref().filter(|h| !h.is_empty()) {
            args.extend(["--home".into(), h.to_string(), "--move-home".into()]);
        }
        "usermod"
    } else {
        push_if_set(&mut args, "--home-dir", &u.home_dir);
        args.push(if u.no_create_home == Some(true) {
            "--no-create-home".into()
        } else {
            "--create-home".into()
        });
        for (flag, v) in [
            ("--no-user-group", u.no_user_group),
            ("--system", u.system),
            ("--no-log-init", u.no_log_init),
        ] {
            if v == Some(true) {
                args.push(flag.into());
            }
        }
        "useradd"
    };
    match u.password_hash.as_deref() {
        Some(h) => args.extend([
            "--password".into(),
            if h.is_empty() { "*" } else { h }.into(),
        ]),
        // New users get a locked password unless one is given.
        None if !exists => args.extend(["--password".into(), "*".into()]),
        None => {}
    }
    if let Some(uid) = u.uid {
        args.extend(["--uid".into(), uid.to_string()]);
    }
    push_if_set(&mut args, "--comment", &u.gecos);
    push_if_set(&mut args, "--gid", &u.primary_group);
    if !u.groups.is_empty() {
        args.extend(["--groups".into(), u.groups.join(",")]);
    }
    push_if_set(&mut args, "--shell", &u.shell);
    args.push(u.name.clone());
    run(cmd, root, &args)
}

/// Mountpoints the mount stage created at or below the user's home were made
/// by root; like upstream, hand them to the user with mode 0700 (useradd
/// leaves an existing home alone).
pub fn own_notated_dirs(root: &Path, name: &str, notated: &[String]) -> Result<()> {
    if notated.is_empty() {
        return Ok(());
    }
    let Some(pw) = lookup_user(root, name)? else {
        return Ok(());
    };
    let home = crate::path::clean(&pw.home);
    for d in notated {
        let d = crate::path::clean(d);
        if d == home || d.starts_with(&format!("{home}/")) {
            let p = root.join(d.trim_start_matches('/'));
            std::os::unix::fs::lchown(&p, Some(pw.uid), Some(pw.gid))
                .map_err(|e| crate::error::path_err("chown", &p, &e))?;
            set_mode(&p, 0o700)?;
        }
    }
    Ok(())
}

/// `usermod --password` when a hash is configured ("" locks: `*`), as upstream
/// does after creating the user.
pub fn set_password_hash(root: &Path, u: &PasswdUser) -> Result<()> {
    let Some(h) = u.password_hash.as_deref() else {
        return Ok(());
    };
    let h = if h.is_empty() { "*" } else { h };
    run(
        "usermod",
        root,
        &["--password".into(), h.into(), u.name.clone()],
    )
}

/// Writes the user's keys, one per line, to `~/.ssh/authorized_keys.d/ignition`
/// (missing directories 0700 and the file 0600, all owned by the user).
pub fn authorize_ssh_keys(root: &Path, u: &PasswdUser) -> Result<()> {
    if u.ssh_authorized_keys.is_empty() {
        return Ok(());
    }
    let pw = lookup_user(root, &u.name)?
        .ok_or_else(|| Error::new(format!("unable to lookup user {:?}", u.name)))?;
    let mut keys = u.ssh_authorized_keys.join("\n");
    if !keys.ends_with('\n') {
        keys.push('\n');
    }
    let rel = format!(
        "{}/.ssh/authorized_keys.d/ignition",
        pw.home.trim_end_matches('/')
    );
    let path = crate::path::join_path(root, &rel)
        .map_err(|e| Error::new(format!("failed to set SSH key: {}", io_msg(&e))))?;
    write_as_user(&path, keys.as_bytes(), pw.uid, pw.gid)
        .map_err(|e| e.context("failed to set SSH key"))
}

/// Creates missing parents (0700) and the file (0600) *as the user*, like
/// upstream's `as_user` helpers: a worker thread switches its filesystem uid and
/// gid, so the kernel applies the user's permissions (creating `/srv/x/.ssh` under
/// a root-owned `/srv` fails as it does upstream) and new nodes are owned by the
/// user.
fn write_as_user(path: &Path, data: &[u8], uid: u32, gid: u32) -> Result<()> {
    let (path, data) = (path.to_path_buf(), data.to_vec());
    std::thread::spawn(move || {
        // SAFETY: setfsgid/setfsuid take plain integers and only change the
        // filesystem ids of the calling thread (they are not broadcast to other
        // threads like setuid); this thread does nothing but the writes below
        // and then exits, so no other code runs with the user's ids.
        unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
        }
        write_as_current(&path, &data)
    })
    .join()
    .map_err(|_| Error::new("writing SSH keys: worker thread panicked"))?
}

fn write_as_current(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut p = dir.to_path_buf();
    while std::fs::symlink_metadata(&p).is_err() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    for d in missing.iter().rev() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(d)
            .map_err(|e| {
                Error::new(format!(
                    "creating parent dirs for {:?}: {}",
                    path.display(),
                    io_msg(&e)
                ))
            })?;
    }
    // O_NOFOLLOW: a symlink planted at the key file's path must not redirect
    // the write.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| crate::error::path_err("open", path, &e))?;
    std::io::Write::write_all(&mut f, data).map_err(|e| crate::error::path_err("write", path, &e))
}

pub(crate) fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| crate::error::path_err("chmod", p, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_read_the_root_databases() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ncore:x:1000:1001::/var/home/core:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nwheel:x:10:core\n").unwrap();
        let u = lookup_user(t.path(), "core").unwrap().unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str()),
            (1000, 1001, "/var/home/core")
        );
        assert!(lookup_user(t.path(), "nobody").unwrap().is_none());
        assert_eq!(lookup_group(t.path(), "wheel").unwrap(), Some(10));
        assert_eq!(lookup_group(t.path(), "whee").unwrap(), None);
    }

    #[test]
    fn tools_in_root_run_the_roots_own_binaries() {
        // The host has useradd; an empty root has none, so the chrooted
        // lookup must fail where the host's tool would have been found.
        let t = tempfile::tempdir().unwrap();
        let u = PasswdUser {
            name: "core".into(),
            ..Default::default()
        };
        let _g = tools::in_root(Some(t.path()));
        let e = ensure_user(t.path(), &u).unwrap_err();
        assert!(
            e.message.starts_with("running useradd: no such file"),
            "{e}"
        );
    }
}
