//! upgrade / switch / set-origin against a `file://` remote.

mod common;

use common::*;
use ostree_repo::commit::{self, CommitOptions};
use ostree_repo::gvariant::Value;
use ostree_repo::object::to_hex;
use ostree_repo::{Repo, RepoMode};
use std::fs;
use sysroot::upgrade::{Upgrade, UpgradeOptions};
use sysroot::DeployOptions;

fn commit_src(src: &Repo, fx: &Fx, branch: &str, version: &str, ts: Option<u64>) -> String {
    let opts = CommitOptions {
        branch: Some(branch.into()),
        metadata: vec![("version".into(), Value::Str(version.into()))],
        bootable: true,
        timestamp: ts,
        ..Default::default()
    };
    to_hex(&commit::commit_dirs(src, std::slice::from_ref(&fx.tree), &opts).unwrap())
}

#[test]
fn upgrade_switch_and_set_origin() {
    let fx = setup();
    let src_path = fx.tmp.path().join("src");
    let src = Repo::create(&src_path, RepoMode::Archive).unwrap();
    let v1 = commit_src(&src, &fx, REF, "1", Some(1_000_000));
    let repo = Repo::open(&fx.root.join("ostree/repo")).unwrap();
    let pull = ostree_repo::pull::PullLocalOptions {
        remote: Some("testos".into()),
        ..Default::default()
    };
    ostree_repo::pull::pull_local(&src, &repo, &[REF.into()], &pull).unwrap();
    let mut sr = fx.load();
    sr.deploy(
        &v1,
        &DeployOptions {
            osname: Some(OS.into()),
            refspec: Some(format!("testos:{REF}")),
            ..Default::default()
        },
    )
    .unwrap();
    let url = format!("file://{}", src_path.display());
    sr.set_origin(
        0,
        "testos",
        &url,
        None,
        &[("gpg-verify".into(), "false".into())],
    )
    .unwrap();
    let cfg = fs::read_to_string(fx.root.join("ostree/repo/config")).unwrap();
    assert!(
        cfg.contains(&format!("[remote \"testos\"]\nurl={url}\ngpg-verify=false")),
        "{cfg}"
    );

    let opts = UpgradeOptions {
        osname: Some(OS.into()),
        ..Default::default()
    };
    assert_eq!(sr.upgrade(&opts).unwrap(), Upgrade::NoUpdate);
    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = commit_src(&src, &fx, REF, "2", Some(2_000_000));
    match sr.upgrade(&opts).unwrap() {
        Upgrade::Deployed(d) => assert_eq!(d.csum, v2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sr.deployments()[0].origin_refspec(),
        Some(format!("testos:{REF}").as_str())
    );
    // An older commit is refused unless downgrades are allowed.
    let older = UpgradeOptions {
        override_commit: Some(v1.clone()),
        ..opts.clone()
    };
    let e = sr.upgrade(&older).unwrap_err().to_string();
    assert!(e.contains("is chronologically older"), "{e}");
    let allowed = UpgradeOptions {
        allow_downgrade: true,
        ..older
    };
    assert!(matches!(sr.upgrade(&allowed).unwrap(), Upgrade::Deployed(d) if d.csum == v1));
    let o = sr.deployments()[0].origin.clone().unwrap();
    assert_eq!(o.get("origin", "override-commit"), Some(v1.as_str()));
    // A plain upgrade drops the override and follows the ref again.
    assert!(matches!(sr.upgrade(&opts).unwrap(), Upgrade::Deployed(d) if d.csum == v2));

    // Switch to another branch of the same remote.
    fs::create_dir_all(fx.tree.join("usr/include")).unwrap();
    fs::write(fx.tree.join("usr/include/foo.h"), "header\n").unwrap();
    let dev = commit_src(&src, &fx, "testos/devel", "3", Some(3_000_000));
    let e = sr
        .switch(&format!("testos:{REF}"), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Old and new refs are equal"), "{e}");
    let d = sr.switch("testos/devel", &opts).unwrap();
    assert_eq!(d.csum, dev);
    assert_eq!(d.origin_refspec(), Some("testos:testos/devel"));
    assert!(fx
        .root
        .join(d.relpath())
        .join("usr/include/foo.h")
        .is_file());
    // HTTP remotes are not fetched here; the message says what to do.
    sr.set_origin(0, "web", "https://example.com/repo", None, &[])
        .unwrap();
    let e = sr.upgrade(&opts).unwrap_err().to_string();
    assert!(e.contains("--deploy-only"), "{e}");
}

#[test]
fn remote_url_from_repo_config_then_remotes_d() {
    let fx = setup();
    let sr = fx.load();
    let e = sr.remote_url("ferrocore").unwrap_err().to_string();
    assert!(e.contains("Remote \"ferrocore\" not found"), "{e}");
    // What a node's Ignition config writes into /etc.
    let d = fx.root.join("etc/ostree/remotes.d");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("README"),
        "[remote \"ferrocore\"]\nurl=http://ignored\n",
    )
    .unwrap();
    fs::write(
        d.join("ferrocore.conf"),
        "[remote \"ferrocore\"]\nurl=http://10.0.2.2:8080/repo\ngpg-verify=false\n",
    )
    .unwrap();
    assert_eq!(
        sr.remote_url("ferrocore").unwrap(),
        "http://10.0.2.2:8080/repo"
    );
    // The repo's own config wins, as upstream reads it first.
    let mut repo = Repo::open(&fx.root.join("ostree/repo")).unwrap();
    let mut cfg = repo.config().clone();
    cfg.set("remote \"ferrocore\"", "url", "http://repo-config");
    repo.write_config(cfg).unwrap();
    assert_eq!(sr.remote_url("ferrocore").unwrap(), "http://repo-config");
    // A broken file is an error naming it.
    fs::write(d.join("bad.conf"), "not a keyfile line\n").unwrap();
    let e = sr.remote_url("other").unwrap_err().to_string();
    assert!(e.contains("bad.conf"), "{e}");
}
