//! Deployment cycles on directory sysroots: layout, boot version swaps,
//! rollback, cleanup, pin, undeploy, kargs, /etc merge. The scenarios in
//! tests/common/scenarios.rs also run on ext4 disk images (tests/ext4.rs).

mod common;

use common::scenarios::{self, opts};
use common::*;
use sha2::{Digest, Sha256};
use std::fs;
use sysroot::DeployOptions;

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
    scenarios::rollback_cleanup_pin_cycles(&setup());
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
    scenarios::kargs_replace_append_delete_and_edit_in_place(&setup());
}

#[test]
fn etc_merge_through_deploy() {
    scenarios::etc_merge_through_deploy(&setup());
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
