//! Staged deployments: deploy --stage, locked finalization, finalize-staged.

mod common;

use common::*;
use std::fs;
use sysroot::staged::Finalize;
use sysroot::{DeployOptions, Sysroot};

fn opts() -> DeployOptions {
    DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(REF.into()),
        ..Default::default()
    }
}

fn booted(fx: &Fx) -> Sysroot {
    let first = fx.entry_names().into_iter().last().unwrap();
    let mut sr = fx.load_booted(&fx.options_of(&first));
    sr.set_run_dir(&fx.tmp.path().join("run"));
    sr
}

#[test]
fn stage_then_finalize_carries_late_etc_changes() {
    let fx = setup();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.set_run_dir(&fx.tmp.path().join("run"));
    sr.deploy(
        &v1,
        &DeployOptions {
            karg_replace: vec!["quiet".into()],
            ..opts()
        },
    )
    .unwrap();
    let e = sr.stage(&v1, &opts(), false).unwrap_err().to_string();
    assert!(
        e.contains("Cannot stage deployment: Not currently booted into an OSTree system"),
        "{e}"
    );

    let mut sr = booted(&fx);
    let etc1 = fx.root.join(sr.deployments()[0].relpath()).join("etc");
    fs::write(etc1.join("aconfigfile"), "edited before staging\n").unwrap();
    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = fx.commit("2");
    let loader_before = fx.link("boot/loader");
    let d = sr.stage(&v2, &opts(), false).unwrap();
    assert_eq!(sr.staged_deployment().unwrap().unwrap().csum, v2);
    assert_eq!(fx.link("boot/loader"), loader_before);
    assert_eq!(sr.deployments().len(), 1);
    let st = sr.status().unwrap();
    assert!(st.staged.as_ref().unwrap().staged);
    assert!(sysroot::status::render(&st).contains("Staged: yes"));
    // Cleanup leaves the staged tree alone; its commit is referenced.
    sr.cleanup().unwrap();
    assert!(fx.root.join(d.relpath()).join("usr/bin/sh").is_file());
    let refs = sr.repo().unwrap().list_refs(Some("ostree")).unwrap();
    assert!(refs.values().any(|c| ostree_repo::object::to_hex(c) == v2));

    // Changes made after staging (until shutdown) are carried over.
    fs::write(etc1.join("late.conf"), "late\n").unwrap();
    match sr.finalize_staged().unwrap() {
        Finalize::Finalized(f) => assert_eq!(f.csum, v2),
        other => panic!("{other:?}"),
    }
    assert!(sr.staged_deployment().unwrap().is_none());
    let csums: Vec<&str> = sr.deployments().iter().map(|d| d.csum.as_str()).collect();
    assert_eq!(csums, [v2.as_str(), v1.as_str()]);
    let etc2 = fx.root.join(sr.deployments()[0].relpath()).join("etc");
    assert_eq!(
        fs::read_to_string(etc2.join("late.conf")).unwrap(),
        "late\n"
    );
    assert_eq!(
        fs::read_to_string(etc2.join("aconfigfile")).unwrap(),
        "edited before staging\n"
    );
    assert!(fx
        .options_of("ostree-2-testos.conf")
        .starts_with("quiet ostree="));
    assert_eq!(sr.finalize_staged().unwrap(), Finalize::NothingStaged);
}

#[test]
fn locked_finalization_waits_for_unlock() {
    let fx = setup();
    let v1 = fx.commit("1");
    fx.load().deploy(&v1, &opts()).unwrap();
    let mut sr = booted(&fx);
    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = fx.commit("2");
    sr.stage(&v2, &opts(), true).unwrap();
    assert!(sr.is_finalization_locked());
    assert_eq!(sr.finalize_staged().unwrap(), Finalize::Locked);
    assert_eq!(sr.deployments().len(), 1);
    assert!(sysroot::status::render(&sr.status().unwrap()).contains("finalization locked"));
    sr.set_finalization_locked(false).unwrap();
    assert!(matches!(
        sr.finalize_staged().unwrap(),
        Finalize::Finalized(_)
    ));
    assert_eq!(sr.deployments()[0].csum, v2);
}

#[test]
fn restaging_replaces_the_previous_staged_tree() {
    let fx = setup();
    let v1 = fx.commit("1");
    fx.load().deploy(&v1, &opts()).unwrap();
    let mut sr = booted(&fx);
    let first = sr.stage(&v1, &opts(), false).unwrap();
    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = fx.commit("2");
    let second = sr.stage(&v2, &opts(), false).unwrap();
    assert!(!fx.root.join(first.relpath()).exists());
    assert!(fx.root.join(second.relpath()).is_dir());
    assert_eq!(sr.staged_deployment().unwrap().unwrap().csum, v2);
}
