//! Interoperability with the real `ostree admin` (Debian package `ostree`):
//! each side reads and extends the other's sysroot.

mod common;

use common::*;
use std::process::Command;
use sysroot::DeployOptions;

fn ostree(args: &[&str]) -> String {
    let out = Command::new("ostree")
        .args(args)
        .env("OSTREE_SYSROOT_DEBUG", "mutable-deployments")
        .output()
        .expect("running the real ostree (apt install ostree)");
    assert!(
        out.status.success(),
        "ostree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn real_ostree_reads_and_extends_our_sysroot() {
    let fx = setup();
    let v1 = fx.commit("1.0");
    std::fs::write(fx.tree.join("usr/bin/sh"), "v2\n").unwrap();
    let v2 = fx.commit("2.0");
    let mut sr = fx.load();
    let o = DeployOptions {
        osname: Some(OS.into()),
        refspec: Some(REF.into()),
        karg_replace: vec!["root=LABEL=root".into()],
        ..Default::default()
    };
    sr.deploy(&v1, &o).unwrap();
    sr.deploy(&v2, &o).unwrap();
    sr.set_pinned(1, true).unwrap();
    let sysroot_arg = format!("--sysroot={}", fx.root.display());
    let st = ostree(&["admin", &sysroot_arg, "status"]);
    let heads: Vec<&str> = st.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(heads[0].starts_with(&format!("  testos {v2}.0")), "{st}");
    assert!(st.contains(&format!("testos {v1}.0")), "{st}");
    assert!(st.contains("Pinned: yes"), "{st}");
    assert!(st.contains(&format!("origin refspec: {REF}")), "{st}");

    // The real ostree deploys on top: kargs inherited from our entries, our
    // pinned deployment kept, and we read its result.
    ostree(&["admin", &sysroot_arg, "deploy", "--os=testos", &v1]);
    let sr = fx.load();
    let csums: Vec<&str> = sr.deployments().iter().map(|d| d.csum.as_str()).collect();
    assert_eq!(csums, [v1.as_str(), v2.as_str(), v1.as_str()]);
    assert_eq!(sr.deployments()[0].kargs.to_string(), "root=LABEL=root");
    assert!(sr.deployments()[2].is_pinned());

    // And we deploy on top of the real one's boot version.
    let mut sr = fx.load();
    sr.deploy(&v2, &o).unwrap();
    let st = ostree(&["admin", &sysroot_arg, "status"]);
    assert!(
        st.lines().next().unwrap().contains(&format!("testos {v2}")),
        "{st}"
    );
    // Our config diff sees a local change in the deployment the real
    // ostree wrote the /etc of.
    let etc = fx.root.join(sr.deployments()[0].relpath()).join("etc");
    std::fs::write(etc.join("aconfigfile"), "local\n").unwrap();
    let dir = fx.root.join(sr.deployments()[0].relpath());
    let ours = sysroot::etcmerge::diff(&dir.join("usr/etc"), &dir.join("etc")).unwrap();
    assert_eq!(ours.modified, ["aconfigfile"]);
}
