//! Deployment scenarios shared by the directory-sysroot tests
//! (tests/deploy.rs) and the loop-mounted ext4 tests (tests/ext4.rs): each
//! takes a fresh sysroot, wherever its root is.

use super::*;
use std::fs;
use sysroot::{DeployOptions, KernelArgs};

/// Deploy options of every scenario: stateroot `testos`, origin `testos:REF`.
pub fn opts() -> DeployOptions {
    DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(format!("testos:{REF}")),
        ..Default::default()
    }
}

/// Deploy two commits, roll back and forth (unbooted and booted), pin,
/// deploy over the pinned one, unpin, prune and clean up.
pub fn rollback_cleanup_pin_cycles(fx: &Fx) {
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(&v1, &opts()).unwrap();
    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = fx.commit("2");
    sr.deploy(&v2, &opts()).unwrap();
    let csums = |sr: &sysroot::Sysroot| -> Vec<String> {
        sr.deployments().iter().map(|d| d.csum.clone()).collect()
    };
    assert_eq!(csums(&sr), [v2.clone(), v1.clone()]);

    // Rollback (not booted): the previous deployment becomes the default.
    let d = sr.rollback().unwrap();
    assert_eq!(d.csum, v1);
    assert_eq!(csums(&sr), [v1.clone(), v2.clone()]);
    let title = fs::read_to_string(fx.entries().join("ostree-2-testos.conf")).unwrap();
    assert!(title.starts_with("title TestOS 42 1 (ostree:0)"), "{title}");
    // And back again.
    sr.rollback().unwrap();
    assert_eq!(csums(&sr), [v2.clone(), v1.clone()]);

    // Boot into v2 (index 0): rollback moves v1 first.
    let cmd = fx.options_of("ostree-2-testos.conf");
    let mut booted = fx.load_booted(&cmd);
    assert_eq!(booted.booted_deployment().unwrap().csum, v2);
    booted.rollback().unwrap();
    assert_eq!(csums(&booted), [v1.clone(), v2.clone()]);
    // The booted deployment stays identified across boot version swaps.
    assert_eq!(booted.booted_deployment().unwrap().csum, v2);
    // Booted into index 1: rollback makes the booted one default again.
    booted.rollback().unwrap();
    assert_eq!(csums(&booted), [v2.clone(), v1.clone()]);

    // Pin v1, deploy v3 and v4: v1 survives although neither booted nor merge.
    let mut sr = fx.load();
    sr.set_pinned(1, true).unwrap();
    assert!(fx
        .read(&format!("ostree/deploy/testos/deploy/{v1}.0.origin"))
        .contains("[libostree-transient]\npinned=true"));
    fs::write(fx.tree.join("usr/bin/sh"), "v3\n").unwrap();
    let v3 = fx.commit("3");
    sr.deploy(&v3, &opts()).unwrap();
    fs::write(fx.tree.join("usr/bin/sh"), "v4\n").unwrap();
    let v4 = fx.commit("4");
    sr.deploy(&v4, &opts()).unwrap();
    assert_eq!(csums(&sr), [v4.clone(), v3.clone(), v1.clone()]);
    assert!(!fx.exists(&format!("ostree/deploy/testos/deploy/{v2}.0")));
    // v2's commit was pruned from the repo (no ref, no deployment).
    let repo = sr.repo().unwrap();
    let c2 = ostree_repo::object::from_hex(&v2).unwrap();
    assert!(!repo.has_object(ostree_repo::ObjectType::Commit, &c2));

    // Undeploy refuses nothing here (not booted); unpin + deploy drops v1.
    sr.set_pinned(2, false).unwrap();
    assert!(!sr.deployments()[2].is_pinned());
    sr.deploy(&v4, &opts()).unwrap();
    assert_eq!(csums(&sr), [v4.clone(), v4.clone()]);
    assert!(!fx.exists(&format!("ostree/deploy/testos/deploy/{v1}.0")));
    let stats = sr.cleanup().unwrap();
    assert!(stats.deployments.is_empty(), "{stats:?}");
    // Only one kernel dir (all share the kernel), no leftovers.
    let kernels: Vec<_> = fs::read_dir(fx.root.join("boot/ostree")).unwrap().collect();
    assert_eq!(kernels.len(), 1);
}

/// `--karg`, `--karg-append`, `--karg-delete`, `--no-merge` and in-place
/// karg edits, as upstream's test-admin-deploy-karg.sh.
pub fn kargs_replace_append_delete_and_edit_in_place(fx: &Fx) {
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(
        &v1,
        &DeployOptions {
            karg_replace: vec!["root=LABEL=MOO".into(), "console=tty0".into()],
            karg_append: vec!["console=ttyS0".into()],
            ..opts()
        },
    )
    .unwrap();
    assert!(fx
        .options_of("ostree-1-testos.conf")
        .starts_with("root=LABEL=MOO console=tty0 console=ttyS0 ostree="));
    sr.deploy(
        &v1,
        &DeployOptions {
            karg_delete: vec!["console=tty0".into()],
            karg_replace: vec!["root=LABEL=NEW".into()],
            karg_append: vec!["quiet".into()],
            ..opts()
        },
    )
    .unwrap();
    assert!(fx
        .options_of("ostree-2-testos.conf")
        .starts_with("root=LABEL=NEW console=ttyS0 quiet ostree="));
    // The rollback entry keeps its own kargs.
    assert!(fx
        .options_of("ostree-1-testos.conf")
        .starts_with("root=LABEL=MOO console=tty0 console=ttyS0 ostree="));
    let err = sr
        .deploy(
            &v1,
            &DeployOptions {
                karg_delete: vec!["nope".into()],
                ..opts()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"));

    // --no-merge: no inherited kargs, and (not booted) the former merge
    // deployment is not retained, as upstream.
    sr.deploy(
        &v1,
        &DeployOptions {
            no_merge: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(fx.entry_names(), ["ostree-1-testos.conf"]);
    assert!(fx.options_of("ostree-1-testos.conf").starts_with("ostree="));
    sr.deploy(
        &v1,
        &DeployOptions {
            karg_append: vec!["quiet".into()],
            ..opts()
        },
    )
    .unwrap();

    // Edit in place: a new boot version, same deployments.
    let bv = sr.bootversion();
    let n = sr.deployments().len();
    sr.set_kargs(0, KernelArgs::parse("rw mitigations=off"))
        .unwrap();
    assert_ne!(sr.bootversion(), bv);
    assert_eq!(sr.deployments().len(), n);
    assert!(fx
        .options_of("ostree-2-testos.conf")
        .starts_with("rw mitigations=off ostree="));
    assert_eq!(sr.deployments()[0].kargs.to_string(), "rw mitigations=off");
}

/// `/etc` merge corner cases through deploy (upstream's
/// test-admin-deploy-etcmerge-cornercases.sh), `--no-merge`, and a
/// file-to-directory default change refusing the deploy.
pub fn etc_merge_through_deploy(fx: &Fx) {
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    let d1 = sr.deploy(&v1, &opts()).unwrap();
    let etc = fx.root.join(d1.relpath()).join("etc");
    // Local changes as in upstream's etcmerge corner cases.
    fs::write(
        etc.join("NetworkManager/nm.conf"),
        "a modified config file\n",
    )
    .unwrap();
    fs::create_dir_all(etc.join("a/long/dir/chain")).unwrap();
    std::os::unix::fs::symlink("no-such-file", etc.join("a/link-to-no-such-file")).unwrap();
    fs::remove_dir_all(etc.join("testdirectory")).unwrap();
    // New defaults.
    fs::write(fx.tree.join("usr/etc/aconfigfile"), "a new default\n").unwrap();
    fs::write(
        fx.tree.join("usr/etc/NetworkManager/nm.conf"),
        "new daemon default\n",
    )
    .unwrap();
    let v2 = fx.commit("2");
    let d2 = sr.deploy(&v2, &opts()).unwrap();
    let root2 = fx.root.join(d2.relpath());
    let etc2 = root2.join("etc");
    assert_eq!(
        fs::read_to_string(etc2.join("aconfigfile")).unwrap(),
        "a new default\n"
    );
    assert_eq!(
        fs::read_to_string(etc2.join("NetworkManager/nm.conf")).unwrap(),
        "a modified config file\n"
    );
    assert_eq!(
        fs::read_to_string(root2.join("usr/etc/NetworkManager/nm.conf")).unwrap(),
        "new daemon default\n"
    );
    assert!(etc2.join("a/long/dir/chain").is_dir());
    assert!(fs::symlink_metadata(etc2.join("a/link-to-no-such-file"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(root2.join("usr/etc/testdirectory").is_dir());
    assert!(!etc2.join("testdirectory").exists());
    // --no-merge takes pristine defaults.
    let d3 = sr
        .deploy(
            &v2,
            &DeployOptions {
                no_merge: true,
                ..opts()
            },
        )
        .unwrap();
    let etc3 = fx.root.join(d3.relpath()).join("etc");
    assert!(etc3.join("testdirectory/test").is_file());

    // A modified file whose default became a directory refuses the deploy
    // and leaves the boot configuration untouched.
    let d3etc = etc3.clone();
    fs::write(d3etc.join("aconfigfile"), "local\n").unwrap();
    fs::remove_file(fx.tree.join("usr/etc/aconfigfile")).unwrap();
    fs::create_dir(fx.tree.join("usr/etc/aconfigfile")).unwrap();
    let v3 = fx.commit("3");
    let before = fx.link("boot/loader");
    let e = sr.deploy(&v3, &opts()).unwrap_err().to_string();
    assert!(
        e.contains("Modified config file newly defaults to directory"),
        "{e}"
    );
    assert_eq!(fx.link("boot/loader"), before);
    // The half-made deployment is cleaned up later.
    sr.cleanup().unwrap();
    assert!(fs::read_dir(fx.root.join("ostree/deploy/testos/deploy"))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(&v3)));
}
