//! Test fixtures: a directory sysroot and bootable commits made with the
//! ostree-repo crate (same layout as upstream's `setup_os_repository`).

#![allow(dead_code)]

pub mod scenarios;

use ostree_repo::commit::{self, CommitOptions};
use ostree_repo::gvariant::Value;
use ostree_repo::object::to_hex;
use std::fs;
use std::path::{Path, PathBuf};
use sysroot::{BootedSource, Sysroot};

pub const OS: &str = "testos";
pub const REF: &str = "testos/buildmain/x86_64-runtime";

pub struct Fx {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub tree: PathBuf,
}

pub fn w(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

pub fn setup() -> Fx {
    setup_in(tempfile::tempdir().unwrap())
}

pub fn setup_in(tmp: tempfile::TempDir) -> Fx {
    let root = tmp.path().join("sysroot");
    setup_at(tmp, root)
}

/// A fresh sysroot at `root` (which may exist, e.g. a mount point), with
/// the OS tree in `tmp`.
pub fn setup_at(tmp: tempfile::TempDir, root: PathBuf) -> Fx {
    // As upstream's test suite: temp dirs must stay removable. The
    // immutable attribute is covered by tests/immutable.rs, a separate
    // process without this setting.
    if std::env::var_os("SYSROOT_TEST_IMMUTABLE").is_none() {
        std::env::set_var("OSTREE_SYSROOT_DEBUG", "mutable-deployments");
    }
    let tree = tmp.path().join("osdata");
    Sysroot::init_fs(&root).unwrap();
    let sr = Sysroot::load_with(&root, BootedSource::None).unwrap();
    sr.os_init(OS).unwrap();
    // The tree upstream's libtest builds.
    for d in [
        "usr/bin",
        "usr/lib/modules/3.6.0",
        "usr/share",
        "sysroot",
        "var",
        "boot",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
    ] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    w(&tree.join("usr/lib/modules/3.6.0/vmlinuz"), "a kernel\n");
    w(
        &tree.join("usr/lib/modules/3.6.0/initramfs.img"),
        "an initramfs\n",
    );
    w(
        &tree.join("usr/lib/modules/3.6.0/.vmlinuz.hmac"),
        "an hmac file\n",
    );
    w(&tree.join("usr/bin/sh"), "an executable\n");
    w(&tree.join("usr/lib/libfoo.so.0"), "a library\n");
    w(
        &tree.join("usr/etc/os-release"),
        "NAME=TestOS\nVERSION=42\nID=testos\nVERSION_ID=42\nPRETTY_NAME=\"TestOS 42\"\n",
    );
    w(&tree.join("usr/etc/aconfigfile"), "a config file\n");
    w(
        &tree.join("usr/etc/NetworkManager/nm.conf"),
        "a default daemon file\n",
    );
    w(
        &tree.join("usr/etc/testdirectory/test"),
        "a default daemon file\n",
    );
    Fx { tmp, root, tree }
}

impl Fx {
    /// Commits the current tree into the system repo under `REF`.
    pub fn commit(&self, version: &str) -> String {
        let repo = ostree_repo::Repo::open(&self.root.join("ostree/repo")).unwrap();
        let opts = CommitOptions {
            branch: Some(REF.into()),
            subject: format!("Build {version}"),
            metadata: vec![("version".into(), Value::Str(version.into()))],
            // `--bootable` wants the modules layout; legacy trees go without.
            bootable: self.tree.join("usr/lib/modules").is_dir(),
            ..Default::default()
        };
        to_hex(&commit::commit_dirs(&repo, std::slice::from_ref(&self.tree), &opts).unwrap())
    }

    pub fn load(&self) -> Sysroot {
        Sysroot::load_with(&self.root, BootedSource::None).unwrap()
    }

    /// Loads the sysroot as booted with kernel command line `cmdline`.
    pub fn load_booted(&self, cmdline: &str) -> Sysroot {
        Sysroot::load_with(&self.root, BootedSource::Cmdline(cmdline.into())).unwrap()
    }

    pub fn entries(&self) -> PathBuf {
        self.root.join("boot/loader/entries")
    }

    pub fn entry_names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.entries())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn link(&self, rel: &str) -> String {
        fs::read_link(self.root.join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .to_string_lossy()
            .into_owned()
    }

    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.root.join(rel)).is_ok()
    }

    /// The `options` line of an entry file.
    pub fn options_of(&self, entry_file: &str) -> String {
        let t = fs::read_to_string(self.entries().join(entry_file)).unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix("options "))
            .unwrap()
            .to_string()
    }
}
