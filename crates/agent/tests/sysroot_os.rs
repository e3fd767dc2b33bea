//! `SysrootOs` against a real directory sysroot and a real archive repository
//! served over HTTP by upstream's `ostree-trivial-httpd` (Debian package
//! `ostree-tests`); a missing server fails the test rather than skipping it.

use std::fs;
use std::path::Path;
use std::process::Command;

use agent::{Os, OsRelease, SysrootOs};
use ostree_repo::commit::{self, CommitOptions};
use ostree_repo::gvariant::Value;
use ostree_repo::object::to_hex;
use ostree_repo::{Repo, RepoMode};
use sysroot::{BootedSource, DeployOptions, Sysroot};

const HTTPD: &str = "/usr/libexec/libostree/ostree-trivial-httpd";
const OS: &str = "testos";
const REF: &str = "testos/x86_64/coreos/stable";

fn w(p: &Path, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

/// A bootable tree: kernel + initramfs in the modules layout, `/usr/etc`.
fn make_tree(tree: &Path, sh: &str) {
    for d in ["usr/bin", "usr/lib/modules/6.1.0", "sysroot", "var", "boot"] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    w(&tree.join("usr/lib/modules/6.1.0/vmlinuz"), "a kernel\n");
    w(
        &tree.join("usr/lib/modules/6.1.0/initramfs.img"),
        "an initramfs\n",
    );
    w(&tree.join("usr/bin/sh"), sh);
    w(&tree.join("usr/etc/os-release"), "ID=testos\n");
}

fn commit(repo: &Repo, tree: &Path, version: &str) -> String {
    let opts = CommitOptions {
        branch: Some(REF.into()),
        subject: format!("Build {version}"),
        metadata: vec![
            ("version".into(), Value::Str(version.into())),
            ("fedora-coreos.stream".into(), Value::Str("stable".into())),
        ],
        bootable: true,
        ..Default::default()
    };
    to_hex(&commit::commit_dirs(repo, &[tree.to_path_buf()], &opts).unwrap())
}

/// Serves `dir` on 127.0.0.1 until `dir` is deleted (`--autoexit`).
fn serve(dir: &Path) -> String {
    assert!(
        Path::new(HTTPD).exists(),
        "{HTTPD} is missing (ostree-tests)"
    );
    let portfile = dir.join("httpd-port");
    let out = Command::new(HTTPD)
        .args(["--autoexit", "--daemonize", "-p"])
        .arg(&portfile)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let port = fs::read_to_string(&portfile).unwrap();
    format!("http://127.0.0.1:{}", port.trim())
}

#[test]
fn booted_stage_pull_and_finalize() {
    // As the sysroot crate's tests: keep deployment dirs removable.
    std::env::set_var("OSTREE_SYSROOT_DEBUG", "mutable-deployments");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sysroot");
    let run = tmp.path().join("run");
    Sysroot::init_fs(&root).unwrap();
    let mut sr = Sysroot::load_with(&root, BootedSource::None).unwrap();
    sr.os_init(OS).unwrap();

    // Release 1 is deployed from the node's own repo, following `origin:REF`.
    let tree1 = tmp.path().join("tree1");
    make_tree(&tree1, "one\n");
    let sys_repo = root.join("ostree/repo");
    let a = commit(&Repo::open(&sys_repo).unwrap(), &tree1, "1");
    sr.deploy(
        &a,
        &DeployOptions {
            osname: Some(OS.into()),
            refspec: Some(format!("origin:{REF}")),
            ..Default::default()
        },
    )
    .unwrap();

    // Release 2 only exists on the update server's archive repo.
    let srv = tmp.path().join("srv");
    let archive = Repo::create(&srv.join("repo"), RepoMode::Archive).unwrap();
    let tree2 = tmp.path().join("tree2");
    make_tree(&tree2, "two\n");
    let b = commit(&archive, &tree2, "2");
    let url = format!("{}/repo", serve(&srv));

    let entries: Vec<_> = fs::read_dir(root.join("boot/loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1);
    let cmdline = fs::read_to_string(&entries[0])
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("options ").map(str::to_string))
        .unwrap();
    let os = SysrootOs::new(&root)
        .with_booted_source(BootedSource::Cmdline(cmdline.clone()))
        .with_run_dir(&run);

    let rel = |v: &str, c: &str| OsRelease {
        version: v.into(),
        checksum: c.into(),
    };
    // The origin remote must be configured before anything can be fetched.
    let e = os.stage(&rel("2", &b)).unwrap_err().to_string();
    assert!(e.contains("Remote \"origin\" not found"), "{e}");
    let mut repo = Repo::open(&sys_repo).unwrap();
    let mut cfg = repo.config().clone();
    cfg.set("remote \"origin\"", "url", &url);
    repo.write_config(cfg).unwrap();
    let booted = os.booted().unwrap();
    assert_eq!(booted.release, rel("1", &a));
    assert_eq!(booted.stream, "stable");
    let ds = os.deployments().unwrap();
    assert_eq!(ds.len(), 1);
    assert!(ds[0].booted && !ds[0].staged);
    assert!(os.rolled_back().unwrap().is_empty());

    // A graph that lies about the payload's version is refused before staging.
    let e = os.stage(&rel("3", &b)).unwrap_err().to_string();
    assert!(e.contains("version \"2\""), "{e}");
    assert!(os.finalize(&rel("2", &b)).is_err(), "nothing staged yet");

    os.stage(&rel("2", &b)).unwrap();
    let mut sr = Sysroot::load_with(&root, BootedSource::Cmdline(cmdline)).unwrap();
    sr.set_run_dir(&run);
    assert_eq!(sr.staged_deployment().unwrap().unwrap().csum, b);
    assert!(sr.is_finalization_locked());
    assert_eq!(sr.deployments().len(), 1, "boot config untouched");
    let st = sr.status().unwrap();
    assert!(st.staged.as_ref().unwrap().staged);
    let ds = os.deployments().unwrap();
    assert_eq!(ds.len(), 2);
    assert!(ds[0].staged && ds[0].release == rel("2", &b));
    // The staged tree is release 2's, pulled over HTTP.
    let staged_dir = sr.deployment_dir(&sr.staged_deployment().unwrap().unwrap());
    assert_eq!(
        fs::read_to_string(staged_dir.join("usr/bin/sh")).unwrap(),
        "two\n"
    );

    assert!(
        os.finalize(&rel("1", &a)).is_err(),
        "not the staged release"
    );
    os.finalize(&rel("2", &b)).unwrap();
    sr.reload().unwrap();
    assert!(sr.staged_deployment().unwrap().is_none());
    let csums: Vec<&str> = sr.deployments().iter().map(|d| d.csum.as_str()).collect();
    assert_eq!(csums, [b.as_str(), a.as_str()]);
    let origin = sr.deployments()[0].origin_refspec().map(str::to_string);
    assert_eq!(origin.as_deref(), Some(format!("origin:{REF}").as_str()));
}
