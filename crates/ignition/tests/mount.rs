//! mount → files → umount on a loop device holding ext4, side by side with the
//! real Ignition 2.14: the root trees and the filesystem contents must match
//! (files written onto the mounted filesystem, a user whose home is the
//! mountpoint). Needs root, loop devices, `mount`, `e2fsprogs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop device over a fresh ext4 image, detached (and unmounted) on drop.
struct LoopFs {
    dev: String,
    mounted: Vec<PathBuf>,
}

impl LoopFs {
    fn new(img: &Path) -> LoopFs {
        std::fs::File::create(img)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let lf = LoopFs {
            dev,
            mounted: Vec::new(),
        };
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "data"])
            .arg(&lf.dev)
            .status()
            .unwrap();
        assert!(st.success());
        lf
    }

    fn snapshot(&mut self, at: &Path) -> std::collections::BTreeMap<String, common::Node> {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-o", "ro", &self.dev])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success());
        self.mounted.push(at.to_path_buf());
        let snap = common::snapshot(at);
        let _ = Command::new("umount").arg(at).status();
        self.mounted.pop();
        snap
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        for m in &self.mounted {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn config(dev: &str) -> String {
    format!(
        r#"{{"ignition":{{"version":"3.3.0"}},
  "passwd":{{"users":[{{"name":"core","homeDir":"/var/home/core","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM core@mount"]}}]}},
  "storage":{{
    "filesystems":[{{"device":"{dev}","format":"ext4","path":"/var/home/core","mountOptions":["noatime","nodev"]}}],
    "files":[{{"path":"/var/home/core/notes.txt","mode":420,"user":{{"name":"core"}},"contents":{{"source":"data:,on%20the%20data%20fs%0A"}}}},
             {{"path":"/etc/on-root","contents":{{"source":"data:,root%0A"}}}}],
    "directories":[{{"path":"/var/home/core/projects","user":{{"name":"core"}},"group":{{"name":"core"}}}}]}}}}"#
    )
}

#[test]
fn mount_files_umount_match_real_ignition() {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let mut ours_fs = LoopFs::new(&t.path().join("ours.img"));
    let mut peer_fs = LoopFs::new(&t.path().join("peer.img"));
    let (ours, peer) = (t.path().join("ours"), t.path().join("peer"));
    common::seed(&ours);
    common::seed(&peer);

    let peer_cfg = t.path().join("peer.ign");
    std::fs::write(&peer_cfg, config(&peer_fs.dev)).unwrap();
    let out = Command::new("sh")
        .arg(Path::new(common::SHARED).join("peers/run-real-ignition.sh"))
        .arg(&peer_cfg)
        .arg(&peer)
        .args(["mount", "files", "umount"])
        .env("LIST", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "real ignition: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ours_cfg = t.path().join("ours.ign");
    std::fs::write(&ours_cfg, config(&ours_fs.dev)).unwrap();
    let opts = common::options(&ours, &ours_cfg, &t.path().join("work"));
    use ignition_engine::Stage;
    for st in [Stage::Fetch, Stage::Mount, Stage::Files, Stage::Umount] {
        if let Err(e) = ignition_engine::run_stage(&opts, st) {
            let _ = Command::new("umount")
                .arg(ours.join("var/home/core"))
                .status();
            panic!("{st:?}: {e}");
        }
    }
    let state = ignition_engine::State::load(&opts.state_file).unwrap();
    assert_eq!(
        state.notated_directories.unwrap(),
        ["/var", "/var/home", "/var/home/core"]
    );

    let d = common::diff(&common::snapshot(&ours), &common::snapshot(&peer));
    assert!(d.is_empty(), "root trees differ:\n{}", d.join("\n"));
    let ours_data = ours_fs.snapshot(&t.path().join("m-ours"));
    let peer_data = peer_fs.snapshot(&t.path().join("m-peer"));
    assert!(ours_data.contains_key("/notes.txt"), "{ours_data:?}");
    // The mountpoint the mount stage created is the user's home: handed over.
    assert_eq!((ours_data["/"].uid, ours_data["/"].mode), (1000, 0o700));
    let d = common::diff(&ours_data, &peer_data);
    assert!(
        d.is_empty(),
        "filesystem contents differ:\n{}",
        d.join("\n")
    );
}

#[test]
fn mount_failures_name_the_filesystem() {
    common::require_root();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    common::seed(&root);
    std::fs::write(root.join("etc/notadir"), "x").unwrap();
    let cfg = t.path().join("c.ign");
    std::fs::write(
        &cfg,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"filesystems":[
            {"device":"/dev/null","format":"swap","path":"/swap"},
            {"device":"/dev/does-not-exist","format":"ext4","path":"/etc/notadir/x"}]}}"#,
    )
    .unwrap();
    let opts = common::options(&root, &cfg, &t.path().join("work"));
    ignition_engine::run_stage(&opts, ignition_engine::Stage::Fetch).unwrap();
    let e = ignition_engine::run_stage(&opts, ignition_engine::Stage::Mount).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("$.storage.filesystems.1.path"));
    assert!(e.message.contains("non-directory component"), "{e}");
    // Swap is never mounted.
    assert!(!root.join("swap").exists());
}
