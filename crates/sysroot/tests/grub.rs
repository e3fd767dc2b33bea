//! The GRUB backend on a directory sysroot: the generated menu follows the
//! deployment list and GRUB's own parser accepts it; boot counting through
//! the grubenv ends in the same rollback records as with systemd-boot.
//! GRUB's part (counting down with `save_env`, which only a real boot can
//! run; see the image VM test) is played by writing the grubenv the way
//! its `save_env` does.

mod common;

use common::*;
use std::fs;
use std::process::Command;
use sysroot::bootcount::BootComplete;
use sysroot::grub::{menuentry_id, GrubEnv, GRUBENV};
use sysroot::{DeployOptions, Sysroot};

fn opts(tries: Option<u32>) -> DeployOptions {
    DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(format!("testos:{REF}")),
        boot_tries: tries,
        ..Default::default()
    }
}

fn grub_fx() -> Fx {
    let fx = setup();
    let cfg = fx.root.join("ostree/repo/config");
    let mut c = fs::read_to_string(&cfg).unwrap();
    c.push_str("[sysroot]\nbootloader=grub2\n");
    fs::write(&cfg, c).unwrap();
    fx
}

fn env(fx: &Fx) -> GrubEnv {
    GrubEnv::load(&fx.root.join("boot").join(GRUBENV)).unwrap()
}

/// What GRUB's `save_env boot_counter` leaves after a countdown step.
fn grub_saves_counter(fx: &Fx, value: &str) {
    let mut e = env(fx);
    e.set("boot_counter", value);
    e.store(&fx.root.join("boot").join(GRUBENV)).unwrap();
}

fn menu(fx: &Fx) -> String {
    let p = fx.root.join("boot/loader/grub.cfg");
    let st = Command::new("grub-script-check").arg(&p).status().unwrap();
    assert!(st.success(), "grub-script-check rejected {}", p.display());
    fs::read_to_string(p).unwrap()
}

/// Boots the deployment at `index` of the current menu.
fn boot_index(fx: &Fx, index: usize) -> Sysroot {
    let sr = fx.load();
    let d = &sr.deployments()[index];
    let file = d.entry.as_ref().unwrap();
    // Live counters differ from the on-disk name: find the file by stem.
    let name = fx
        .entry_names()
        .into_iter()
        .find(|n| n.starts_with(&file.stem))
        .unwrap();
    fx.load_booted(&fx.options_of(&name))
}

#[test]
fn menu_follows_the_deployment_list() {
    let fx = grub_fx();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    let d1 = sr.deploy(&v1, &opts(None)).unwrap();
    let m = menu(&fx);
    let id1 = menuentry_id(&d1);
    assert!(m.contains(&format!("set default={id1}\n")), "{m}");
    assert!(
        !m.contains("set fallback") && !m.contains("save_env"),
        "{m}"
    );
    let opts1 = fx.options_of("ostree-1-testos.conf");
    assert!(
        m.contains(&format!(
            "menuentry 'TestOS 42 1 (ostree:0)' --id {id1} {{\n  linux /ostree/testos-"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(" {opts1} $ignition_firstboot\n")),
        "{m}"
    );
    assert!(m.contains("  initrd /ostree/testos-"), "{m}");
    // Uncounted: the grubenv is not even created.
    assert!(!fx.exists("boot/grub/grubenv"));

    fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = fx.commit("2");
    let d2 = sr.deploy(&v2, &opts(None)).unwrap();
    let m = menu(&fx);
    let id2 = menuentry_id(&d2);
    let (p2, p1) = (
        m.find(&format!("--id {id2}")).unwrap(),
        m.find(&format!("--id {id1}")).unwrap(),
    );
    assert!(p2 < p1, "default first:\n{m}");
    assert!(m.contains(&format!("set default={id2}\nset fallback={id1}\n")));
    // The menu is inside the swapped directory.
    let bv = sr.bootversion();
    assert_eq!(fx.link("boot/loader"), format!("loader.{bv}"));
    assert!(fx.exists(&format!("boot/loader.{bv}/grub.cfg")));
    assert!(!fx.exists(&format!("boot/loader.{}", 1 - bv)));
}

#[test]
fn spent_counter_falls_back_and_is_recorded() {
    let fx = grub_fx();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    let d1 = sr.deploy(&v1, &opts(None)).unwrap();
    fs::write(fx.tree.join("usr/bin/sh"), "broken\n").unwrap();
    let v2 = fx.commit("2");
    let d2 = sr.deploy(&v2, &opts(Some(2))).unwrap();
    let (id1, id2) = (menuentry_id(&d1), menuentry_id(&d2));
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+2.conf"]
    );
    let e = env(&fx);
    assert_eq!(e.get("boot_entry"), Some(id2.as_str()));
    assert_eq!(e.get("boot_counter"), Some("2"));
    let m = menu(&fx);
    assert!(m.contains(&format!(
        "if [ \"${{boot_entry}}\" = {id2} ]; then\n  if [ \"${{boot_counter}}\" = 2 ]; then\n    set boot_counter=1\n  elif [ \"${{boot_counter}}\" = 1 ]; then\n    set boot_counter=0\n  else\n"
    )), "{m}");
    assert!(
        m.contains(&format!(
            "    set boot_counter=0\n    set default={id1}\n  fi\n  save_env boot_counter\nfi\n"
        )),
        "{m}"
    );

    // Two boots of v2 count down to 0; neither reaches boot-complete.
    grub_saves_counter(&fx, "1");
    let b = boot_index(&fx, 0);
    assert_eq!(b.booted_deployment().unwrap().csum, v2);
    assert_eq!(
        b.deployments()[0].entry.as_ref().unwrap().counter,
        Some((1, 1))
    );
    grub_saves_counter(&fx, "0");
    let st = fx.load().status().unwrap();
    assert_eq!(st.deployments[0].boot_counter, Some([0, 2]));

    // The menu now boots v1, whose boot completes: rollback recorded.
    let mut b = boot_index(&fx, 1);
    assert_eq!(b.booted_deployment().unwrap().csum, v1);
    match b.boot_complete().unwrap() {
        BootComplete::RolledBack { failed, default } => {
            assert_eq!(failed.csum, v2);
            assert_eq!(default.csum, v1);
        }
        other => panic!("expected rollback, got {other:?}"),
    }
    let failed = b.failed_deployments().unwrap();
    assert_eq!(
        (failed[0].checksum.as_str(), failed[0].tries),
        (v2.as_str(), 2)
    );
    let m = menu(&fx);
    assert!(
        m.contains(&format!("set default={id1}\nset fallback={id2}\n")),
        "{m}"
    );
    assert!(!m.contains("save_env"), "{m}");
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );

    // v2 made the default again by hand, uncounted: the stale spent
    // counter naming it must not roll it back.
    assert_eq!(env(&fx).get("boot_entry"), Some(id2.as_str()));
    let mut b = boot_index(&fx, 0);
    b.rollback().unwrap();
    assert_eq!(env(&fx).get("boot_entry"), None);
    assert_eq!(env(&fx).get("boot_counter"), None);
}

#[test]
fn successful_boot_clears_the_counter() {
    let fx = grub_fx();
    let v1 = fx.commit("1");
    let mut sr = fx.load();
    sr.deploy(&v1, &opts(None)).unwrap();
    fs::write(fx.tree.join("usr/bin/sh"), "good\n").unwrap();
    let v2 = fx.commit("2");
    sr.deploy(&v2, &opts(Some(3))).unwrap();
    grub_saves_counter(&fx, "2");
    // A kargs edit before the successful boot keeps GRUB's live count.
    sr.set_kargs(0, sysroot::KernelArgs::parse("quiet"))
        .unwrap();
    assert_eq!(env(&fx).get("boot_counter"), Some("2"));
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos+2-1.conf"]
    );
    let m = menu(&fx);
    assert!(
        m.contains("  if [ \"${boot_counter}\" = 2 ]; then\n"),
        "{m}"
    );
    assert!(!m.contains("= 3 ]"), "{m}");

    let mut b = boot_index(&fx, 0);
    assert_eq!(b.booted_deployment().unwrap().csum, v2);
    match b.boot_complete().unwrap() {
        BootComplete::MarkedGood(d) => assert_eq!(d.csum, v2),
        other => panic!("expected MarkedGood, got {other:?}"),
    }
    assert_eq!(
        fx.entry_names(),
        ["ostree-1-testos.conf", "ostree-2-testos.conf"]
    );
    let e = env(&fx);
    assert_eq!((e.get("boot_entry"), e.get("boot_counter")), (None, None));
    assert!(b.failed_deployments().unwrap().is_empty());
    assert_eq!(b.boot_complete().unwrap(), BootComplete::Nothing);
}

#[test]
fn corrupt_grubenv_is_reported_with_its_path() {
    let fx = grub_fx();
    let v1 = fx.commit("1");
    fs::create_dir_all(fx.root.join("boot/grub")).unwrap();
    fs::write(fx.root.join("boot/grub/grubenv"), "garbage").unwrap();
    let e = fx
        .load()
        .deploy(&v1, &opts(Some(2)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("boot/grub/grubenv") && e.contains("GRUB Environment Block"),
        "{e}"
    );
}
