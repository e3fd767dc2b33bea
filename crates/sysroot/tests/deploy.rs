//! Deployment cycles on directory sysroots: layout, boot version swaps,
//! rollback, cleanup, pin, undeploy, kargs, /etc merge.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::fs;
use sysroot::{DeployOptions, KernelArgs};

fn opts() -> DeployOptions {
    DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(format!("testos:{REF}")),
        ..Default::default()
    }
}

fn bootcsum() -> String {
    hex::encode(Sha256::digest(b"a kernel\nan initramfs\n"))
}

#[test]
fn first_and_second_deploy_layout_matches_upstream() {
    let fx = setup();
    let rev = fx.commit("1.0.9");
    let mut sr = fx.load();
    let o = DeployOptions {
        karg_replace: vec!["root=LABEL=MOO".into(), "quiet".into()],
        ..opts()
    };
    let d = sr.deploy(&rev, &o).unwrap();
    let bc = bootcsum();
    assert_eq!(d.bootcsum, bc);
    // Same assertions as upstream's admin-test.sh "ok layout".
    assert_eq!(fx.link("boot/loader"), "loader.1");
    assert!(!fx.exists("boot/loader.0"));
    assert_eq!(fx.link("ostree/boot.1"), "boot.1.1");
    assert_eq!(fx.entry_names(), ["ostree-1-testos.conf"]);
    let entry = fx.read("boot/loader/entries/ostree-1-testos.conf");
    assert_eq!(
        entry,
        format!(
            "title TestOS 42 1.0.9 (ostree:0)\nversion 1\n\
             options root=LABEL=MOO quiet ostree=/ostree/boot.1/testos/{bc}/0\n\
             linux /ostree/testos-{bc}/vmlinuz-3.6.0\n\
             initrd /ostree/testos-{bc}/initramfs-3.6.0.img\n"
        )
    );
    assert_eq!(
        fx.read(&format!("boot/ostree/testos-{bc}/vmlinuz-3.6.0")),
        "a kernel\n"
    );
    assert_eq!(
        fx.read(&format!("boot/ostree/testos-{bc}/.vmlinuz-3.6.0.hmac")),
        "an hmac file\n"
    );
    assert_eq!(
        fx.link(&format!("ostree/boot.1.1/testos/{bc}/0")),
        format!("../../../deploy/testos/deploy/{rev}.0")
    );
    assert!(fx
        .read(&format!("ostree/boot.1/testos/{bc}/0/etc/os-release"))
        .contains("NAME=TestOS"));
    assert_eq!(
        fx.read(&format!("ostree/deploy/testos/deploy/{rev}.0.origin")),
        format!("[origin]\nrefspec=testos:{REF}\n")
    );
    let repo = sr.repo().unwrap();
    let refs: Vec<String> = repo
        .list_refs(Some("ostree"))
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(refs, ["ostree/1/1/0"]);

    // Second deploy: new boot version, kargs inherited.
    sr.deploy(&rev, &opts()).unwrap();
    assert_eq!(fx.link("boot/loader"), "loader.0");
    assert!(!fx.exists("boot/loader.1"));
    assert_eq!(fx.link("ostree/boot.0"), "boot.0.1");
    for gone in [
        "ostree/boot.0.0",
        "ostree/boot.1.0",
        "ostree/boot.1.1",
        "ostree/boot.1",
    ] {
        assert!(!fx.exists(gone), "{gone}");
    }
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );
    assert!(fx
        .options_of("ostree-2-testos.conf")
        .starts_with("root=LABEL=MOO quiet ostree=/ostree/boot.0/testos/"));
    assert!(fx.exists(&format!(
        "ostree/deploy/testos/deploy/{rev}.1/etc/os-release"
    )));
    let refs: Vec<String> = repo
        .list_refs(Some("ostree"))
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(refs, ["ostree/0/1/0", "ostree/0/1/1"]);
    // Both share the kernel: bootserials 0 and 1.
    let sr2 = fx.load();
    let ds = sr2.deployments();
    assert_eq!((ds[0].deployserial, ds[0].bootserial), (1, 0));
    assert_eq!((ds[1].deployserial, ds[1].bootserial), (0, 1));

    // Third deploy of the same commit: same boot config, only the
    // subbootversion swaps; the oldest deployment is garbage-collected.
    sr.deploy(&rev, &opts()).unwrap();
    assert_eq!(fx.link("boot/loader"), "loader.0");
    assert!(!fx.exists("boot/loader.1"));
    assert_eq!(fx.link("ostree/boot.0"), "boot.0.0");
    assert!(!fx.exists("ostree/boot.0.1"));
    assert!(!fx.exists(&format!("ostree/deploy/testos/deploy/{rev}.0")));
    assert!(!fx.exists(&format!("ostree/deploy/testos/deploy/{rev}.0.origin")));
    let refs: Vec<String> = repo
        .list_refs(Some("ostree"))
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(refs, ["ostree/0/0/0", "ostree/0/0/1"]);
    let serials: Vec<u32> = fx
        .load()
        .deployments()
        .iter()
        .map(|d| d.deployserial)
        .collect();
    assert_eq!(serials, [2, 1]);
}

#[test]
fn rollback_cleanup_pin_cycles() {
    let fx = setup();
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

#[test]
fn undeploy_and_booted_protection() {
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(&v1, &opts()).unwrap();
    sr.deploy(&v1, &opts()).unwrap();
    let cmd = fx.options_of("ostree-1-testos.conf");
    let mut booted = fx.load_booted(&cmd);
    assert_eq!(booted.booted_deployment().unwrap().index, 1);
    let e = booted.undeploy(1).unwrap_err().to_string();
    assert!(
        e.contains("Cannot undeploy currently booted deployment 1"),
        "{e}"
    );
    assert!(booted
        .undeploy(7)
        .unwrap_err()
        .to_string()
        .contains("Out of range"));
    let gone = booted.undeploy(0).unwrap();
    assert_eq!(booted.deployments().len(), 1);
    assert!(!fx.exists(&gone.relpath().to_string_lossy()));
    assert_eq!(fx.entry_names(), ["ostree-1-testos.conf"]);
    assert!(booted.undeploy(0).is_err(), "booted");
}

#[test]
fn kargs_replace_append_delete_and_edit_in_place() {
    let fx = setup();
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

#[test]
fn etc_merge_through_deploy() {
    let fx = setup();
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

#[test]
fn multiple_stateroots_are_kept() {
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.os_init("other").unwrap();
    sr.deploy(&v1, &opts()).unwrap();
    sr.deploy(
        &v1,
        &DeployOptions {
            osname: Some("other".into()),
            ..opts()
        },
    )
    .unwrap();
    sr.deploy(
        &v1,
        &DeployOptions {
            osname: Some("other".into()),
            ..opts()
        },
    )
    .unwrap();
    let os: Vec<&str> = sr.deployments().iter().map(|d| d.osname.as_str()).collect();
    assert_eq!(os, ["other", "other", "testos"]);
    assert!(fx.exists("boot/loader/entries/ostree-1-testos.conf"));
    assert!(fx
        .read("boot/loader/entries/ostree-3-other.conf")
        .contains("(ostree:other:0)"));
    // Without --os and several stateroots, deploy refuses to guess.
    let e = sr
        .deploy(&v1, &DeployOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--os"), "{e}");
}

#[test]
fn status_json_and_text() {
    let fx = setup();
    let v1 = fx.commit("1.0");
    let mut sr = fx.load();
    sr.deploy(&v1, &opts()).unwrap();
    sr.set_pinned(0, true).unwrap();
    let cmd = fx.options_of("ostree-1-testos.conf");
    let sr = fx.load_booted(&cmd);
    let st = sr.status().unwrap();
    let j = serde_json::to_value(&st).unwrap();
    assert_eq!(j["deployments"][0]["checksum"], v1);
    assert_eq!(j["deployments"][0]["booted"], true);
    assert_eq!(j["deployments"][0]["pinned"], true);
    assert_eq!(j["deployments"][0]["version"], "1.0");
    assert_eq!(j["deployments"][0]["origin"], format!("testos:{REF}"));
    let text = sysroot::status::render(&st);
    assert!(
        text.starts_with(&format!("Deployments:\n● testos:{REF}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("Commit: {v1}")));
    assert!(text.contains("Pinned: yes"));
    let o = sysroot::status::render_ostree(&st);
    assert!(
        o.starts_with(&format!("* testos {v1}.0\n    Version: 1.0\n")),
        "{o}"
    );
}

#[test]
fn undeploying_everything_clears_refs_like_upstream_clean_test() {
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(&v1, &opts()).unwrap();
    sr.undeploy(0).unwrap();
    assert!(sr.deployments().is_empty());
    assert!(fx.entry_names().is_empty());
    let refs = sr.repo().unwrap().list_refs(Some("ostree")).unwrap();
    assert!(refs.is_empty(), "{refs:?}");
    assert!(!fx.exists(&format!("ostree/deploy/testos/deploy/{v1}.0")));
    // And the sysroot is usable again.
    sr.deploy(&v1, &opts()).unwrap();
    assert_eq!(fx.entry_names(), ["ostree-1-testos.conf"]);
}

#[test]
fn kargs_edit_in_place_touches_every_deployment_once() {
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(
        &v1,
        &DeployOptions {
            karg_replace: vec!["quiet".into()],
            ..opts()
        },
    )
    .unwrap();
    sr.deploy(
        &v1,
        &DeployOptions {
            karg_append: vec!["x=1".into()],
            ..opts()
        },
    )
    .unwrap();
    let bv = sr.bootversion();
    sr.edit_kargs_in_place(|k| {
        k.append_if_missing("quiet");
        k.append_if_missing("rw");
        k.delete_if_present("x=1")
    })
    .unwrap();
    assert_ne!(sr.bootversion(), bv);
    let all: Vec<String> = sr
        .deployments()
        .iter()
        .map(|d| d.kargs.to_string())
        .collect();
    assert_eq!(all, ["quiet rw", "quiet rw"]);
    let e = sr.edit_kargs_in_place(|k| k.delete("absent")).unwrap_err();
    assert!(e.to_string().contains("absent"));
    assert_eq!(sr.bootversion(), 1 - bv, "a failed edit changes nothing");
}

#[test]
fn legacy_boot_layout_and_no_initramfs() {
    let fx = setup();
    fs::remove_dir_all(fx.tree.join("usr/lib/modules")).unwrap();
    let legacy = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let lb = fx.tree.join("usr/lib/ostree-boot");
    fs::create_dir_all(&lb).unwrap();
    fs::write(lb.join(format!("vmlinuz-3.6.0-{legacy}")), "k\n").unwrap();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    let d = sr.deploy(&v1, &opts()).unwrap();
    // The name-embedded checksum is used as is.
    assert_eq!(d.bootcsum, legacy);
    let e = fx.read("boot/loader/entries/ostree-1-testos.conf");
    assert!(
        e.contains(&format!(
            "linux /ostree/testos-{legacy}/vmlinuz-3.6.0-{legacy}\n"
        )),
        "{e}"
    );
    // No initramfs: no initrd line, and prepare-root runs as init.
    assert!(!e.contains("initrd"), "{e}");
    assert!(
        e.contains(&format!(
            "init=/ostree/boot.1/testos/{legacy}/0/usr/lib/ostree/ostree-prepare-root ostree="
        )),
        "{e}"
    );
    // A malformed legacy name is reported with the file.
    fs::remove_file(lb.join(format!("vmlinuz-3.6.0-{legacy}"))).unwrap();
    fs::write(lb.join("vmlinuz-3.6.0"), "k\n").unwrap();
    let v2 = fx.commit("2");
    let err = sr.deploy(&v2, &opts()).unwrap_err().to_string();
    assert!(err.contains("vmlinuz-3.6.0: legacy kernel name"), "{err}");
}
