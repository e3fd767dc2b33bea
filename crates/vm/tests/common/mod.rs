//! What every VM test binary shares: the image under test, the VM size and
//! the login part of the nodes' Butane configs.
// Each test binary uses its own subset.
#![allow(dead_code)]

use ferrocore_vm::Profile;
use std::path::PathBuf;
use std::time::Duration;

/// The image under test (`FERROCORE_E2E_IMAGE`); a clear failure when the
/// suite is run without one.
pub fn image() -> PathBuf {
    let p = std::env::var_os("FERROCORE_E2E_IMAGE").unwrap_or_else(|| {
        panic!("FERROCORE_E2E_IMAGE is not set: these tests boot a disk image built by `ferrocore build image` (see scripts/ci.d/e2e-vm.sh)")
    });
    let p = PathBuf::from(p);
    assert!(
        p.is_file(),
        "FERROCORE_E2E_IMAGE={} is not a file",
        p.display()
    );
    p
}

/// VM size from `FERROCORE_E2E_PROFILE` (single | parallel, the default).
pub fn profile() -> Profile {
    match std::env::var("FERROCORE_E2E_PROFILE").as_deref() {
        Ok("single") => Profile::Single,
        Ok("parallel") | Err(_) => Profile::Parallel,
        Ok(other) => panic!("FERROCORE_E2E_PROFILE={other}: expected single or parallel"),
    }
}

/// Boot timeout: TCG boots are 3-4x slower when VMs share the 2 cores.
pub fn boot_timeout() -> Duration {
    match profile() {
        Profile::Single => Duration::from_secs(180),
        Profile::Parallel => Duration::from_secs(300),
    }
}

/// Minimal config: user `core` with the key (`@KEY@`) and passwordless
/// sudo. It ends inside `storage.files`, so a test can append file entries
/// (indented by four spaces) and then other sections.
pub const LOGIN_BUTANE: &str = r#"variant: fcos
version: 1.5.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - "@KEY@"
storage:
  files:
    - path: /etc/sudoers.d/e2e-core
      mode: 0440
      contents:
        inline: "core ALL=(ALL) NOPASSWD: ALL\n"
"#;
