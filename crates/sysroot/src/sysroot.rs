//! Loading a sysroot's state from disk: boot version, deployment list (from
//! the BLS entries, as upstream does), booted deployment.

use crate::bls::{BootEntry, EntryName};
use crate::bootloader::BootloaderKind;
use crate::deployment::Deployment;
use crate::fsutil::{self, io_at};
use crate::kargs::KernelArgs;
use crate::{Error, Result};
use ostree_repo::keyfile::KeyFile;
use ostree_repo::{Repo, RepoMode};
use std::cmp::Ordering;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How the booted deployment is found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BootedSource {
    /// Read `ostree=` from `/proc/cmdline`, but only when the sysroot is the
    /// running system's (`/` or `/sysroot`); a sysroot in a directory is
    /// never booted.
    #[default]
    Auto,
    /// Use this kernel command line (tests, image builders).
    Cmdline(String),
    /// The deployment whose directory is this one (same device and inode),
    /// as `/` is on a booted node: for a sysroot in a directory whose boot
    /// was resolved when it happened (`prepare_root::resolve_deployment`),
    /// which stays right when later deployments rewrite the bootlinks.
    Root(PathBuf),
    /// Not booted.
    None,
}

/// A loaded sysroot. Mutating operations take the sysroot lock and reload
/// the state when done.
#[derive(Debug)]
pub struct Sysroot {
    pub(crate) path: PathBuf,
    pub(crate) bootversion: u32,
    pub(crate) subbootversion: u32,
    pub(crate) deployments: Vec<Deployment>,
    pub(crate) booted: Option<usize>,
    /// `(osname, CSUM.SERIAL)` of the booted deployment, resolved once at
    /// load: the bootlinks the kernel command line names may be replaced
    /// by later operations, the booted tree does not change.
    pub(crate) booted_id: Option<(String, String)>,
    /// Runtime state directory (`/run`): staged deployments live there so
    /// that a reboot without finalization forgets them.
    pub(crate) run_dir: PathBuf,
}

/// glibc's `strverscmp` ordering on the digit runs that matter for BLS
/// `version` keys: numbers compare numerically, the rest bytewise.
pub(crate) fn vercmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let ta: &[u8] = {
                    let z = da.iter().take_while(|c| **c == b'0').count();
                    &da[z..]
                };
                let tb: &[u8] = {
                    let z = db.iter().take_while(|c| **c == b'0').count();
                    &db[z..]
                };
                let o = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn read_link_suffix(p: &Path, prefix: &str) -> Result<Option<u32>> {
    match fs::read_link(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("readlink {}", p.display()), e)),
        Ok(t) => {
            let s = t.to_string_lossy();
            let v = s
                .strip_prefix(prefix)
                .and_then(|r| r.rsplit('.').next())
                .and_then(|r| r.parse().ok())
                .filter(|v| *v <= 1)
                .ok_or_else(|| {
                    Error::Corrupt(format!("{}: unexpected target '{s}'", p.display()))
                })?;
            Ok(Some(v))
        }
    }
}

/// Parses `/ostree/boot.B/OS/BOOTCSUM/SERIAL`.
pub(crate) fn parse_bootlink(s: &str) -> Option<(u32, String, String, u32)> {
    let rest = s.strip_prefix("/ostree/boot.")?;
    let mut it = rest.split('/');
    let bv = it.next()?.parse().ok()?;
    let os = it.next()?.to_string();
    let bootcsum = it.next()?.to_string();
    let serial = it.next()?.parse().ok()?;
    if it.next().is_some() || os.is_empty() || bootcsum.is_empty() {
        return None;
    }
    Some((bv, os, bootcsum, serial))
}

fn read_origin(p: &Path) -> Result<Option<KeyFile>> {
    match fs::read_to_string(p) {
        Ok(t) => Ok(Some(KeyFile::parse(&t, &p.display().to_string())?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

impl Sysroot {
    /// Loads the sysroot at `path`, detecting the booted deployment
    /// automatically.
    pub fn load(path: &Path) -> Result<Sysroot> {
        Self::load_with(path, BootedSource::Auto)
    }

    /// Loads the sysroot at `path` with an explicit booted-deployment source.
    pub fn load_with(path: &Path, booted_source: BootedSource) -> Result<Sysroot> {
        if !path.join("ostree").is_dir() {
            return Err(Error::NotFound(format!(
                "{} is not a sysroot: no ostree/ directory (run `admin init-fs`)",
                path.display()
            )));
        }
        let mut s = Sysroot {
            path: path.to_path_buf(),
            bootversion: 0,
            subbootversion: 0,
            deployments: Vec::new(),
            booted: None,
            booted_id: None,
            run_dir: PathBuf::from("/run"),
        };
        s.reload()?;
        s.booted_id = s.resolve_booted(&booted_source)?;
        s.reload()?;
        Ok(s)
    }

    /// Re-reads the on-disk state.
    pub fn reload(&mut self) -> Result<()> {
        let loader = self.path.join("boot/loader");
        self.bootversion = read_link_suffix(&loader, "loader.")?.unwrap_or(0);
        self.subbootversion = read_link_suffix(
            &self.path.join(format!("ostree/boot.{}", self.bootversion)),
            "boot.",
        )?
        .unwrap_or(0);
        self.deployments = self.read_entries(&loader.join("entries"))?;
        self.apply_live_counter()?;
        self.booted = self.booted_id.as_ref().and_then(|(os, dn)| {
            self.deployments
                .iter()
                .position(|d| d.osname == *os && d.dir_name() == *dn)
        });
        Ok(())
    }

    /// Replaces the default's counter from its entry name with the one the
    /// boot loader keeps (GRUB: the grubenv). Only a counted default asks
    /// the backend, so uncounted sysroots never open the repo config here.
    fn apply_live_counter(&mut self) -> Result<()> {
        let counted = self
            .deployments
            .first()
            .is_some_and(|d| d.entry.as_ref().is_some_and(|e| e.counter.is_some()));
        if !counted {
            return Ok(());
        }
        let backend = self.bootloader_kind()?.backend();
        let c = backend.live_counter(&self.path.join("boot"), &self.deployments[0])?;
        if let Some(e) = self.deployments[0].entry.as_mut() {
            e.counter = c;
        }
        Ok(())
    }

    fn read_entries(&self, dir: &Path) -> Result<Vec<Deployment>> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let mut found: Vec<(String, Deployment)> = Vec::new();
        for e in rd {
            let e = e.map_err(io_at("reading", dir))?;
            let fname = e.file_name().to_string_lossy().into_owned();
            let Some(name) = EntryName::parse(&fname) else {
                continue;
            };
            if !name.stem.starts_with("ostree-") {
                continue;
            }
            let p = e.path();
            let text = fs::read_to_string(&p).map_err(io_at("reading", &p))?;
            let entry = BootEntry::parse(&text, &p.display().to_string())?;
            let mut kargs = KernelArgs::parse(entry.get("options").unwrap_or(""));
            let link = match kargs.get("ostree") {
                Some(Some(l)) => l.to_string(),
                _ => {
                    return Err(Error::Corrupt(format!(
                        "{}: no ostree= kernel argument in 'options'",
                        p.display()
                    )))
                }
            };
            kargs.remove_key("ostree");
            // Leftover `init=` for initramfs-less kernels is regenerated.
            if matches!(kargs.get("init"), Some(Some(v)) if v.starts_with("/ostree/boot.")) {
                kargs.remove_key("init");
            }
            let (_, osname, bootcsum, bootserial) = parse_bootlink(&link).ok_or_else(|| {
                Error::Corrupt(format!(
                    "{}: invalid ostree= argument '{link}'",
                    p.display()
                ))
            })?;
            let lp = self.path.join(link.trim_start_matches('/'));
            let target = fs::read_link(&lp).map_err(io_at("readlink", &lp))?;
            let base = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (csum, serial) = base
                .rsplit_once('.')
                .and_then(|(c, s)| Some((c.to_string(), s.parse::<u32>().ok()?)))
                .filter(|(c, _)| c.len() == 64)
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "{}: bootlink target '{}' is not CSUM.SERIAL",
                        lp.display(),
                        target.display()
                    ))
                })?;
            let mut d = Deployment {
                index: 0,
                osname,
                csum,
                deployserial: serial,
                bootcsum,
                bootserial,
                kargs,
                origin: None,
                entry: Some(name),
            };
            d.origin = read_origin(&self.path.join(d.origin_relpath()))?;
            found.push((entry.get("version").unwrap_or("").to_string(), d));
        }
        // Highest `version` first: that is the default entry.
        found.sort_by(|a, b| vercmp(&b.0, &a.0));
        Ok(found
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut d))| {
                d.index = i;
                d
            })
            .collect())
    }

    fn resolve_booted(&self, source: &BootedSource) -> Result<Option<(String, String)>> {
        let cmdline = match source {
            BootedSource::None => return Ok(None),
            BootedSource::Cmdline(c) => c.clone(),
            BootedSource::Root(root) => {
                let Ok(root) = fs::metadata(root) else {
                    return Ok(None);
                };
                for d in &self.deployments {
                    if let Ok(m) = fs::metadata(self.deployment_dir(d)) {
                        if (m.dev(), m.ino()) == (root.dev(), root.ino()) {
                            return Ok(Some((d.osname.clone(), d.dir_name())));
                        }
                    }
                }
                return Ok(None);
            }
            BootedSource::Auto => {
                let canon = fs::canonicalize(&self.path).unwrap_or_default();
                if canon != Path::new("/") && canon != Path::new("/sysroot") {
                    return Ok(None);
                }
                // Once booted, `/` *is* the deployment directory (a bind
                // mount of it): compare device and inode.
                if let Ok(root) = fs::metadata("/") {
                    for d in &self.deployments {
                        if let Ok(m) = fs::metadata(self.deployment_dir(d)) {
                            if (m.dev(), m.ino()) == (root.dev(), root.ino()) {
                                return Ok(Some((d.osname.clone(), d.dir_name())));
                            }
                        }
                    }
                }
                fs::read_to_string("/proc/cmdline").unwrap_or_default()
            }
        };
        let k = KernelArgs::parse(&cmdline);
        let Some(Some(link)) = k.get("ostree") else {
            return Ok(None);
        };
        // Resolve the symlink chain inside the sysroot, then compare dirs.
        let Ok(target) = fs::canonicalize(self.path.join(link.trim_start_matches('/'))) else {
            return Ok(None);
        };
        for d in &self.deployments {
            if fs::canonicalize(self.deployment_dir(d)).ok().as_ref() == Some(&target) {
                return Ok(Some((d.osname.clone(), d.dir_name())));
            }
        }
        Ok(None)
    }

    /// Uses `dir` instead of `/run` for runtime state (staged deployments).
    pub fn set_run_dir(&mut self, dir: &Path) {
        self.run_dir = dir.to_path_buf();
    }

    /// The sysroot directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current boot version (the target of `/boot/loader`).
    pub fn bootversion(&self) -> u32 {
        self.bootversion
    }

    /// Current sub-boot version (the target of `/ostree/boot.B`).
    pub fn subbootversion(&self) -> u32 {
        self.subbootversion
    }

    /// Deployments, default first.
    pub fn deployments(&self) -> &[Deployment] {
        &self.deployments
    }

    /// The deployment the running system booted, if any.
    pub fn booted_deployment(&self) -> Option<&Deployment> {
        self.booted.map(|i| &self.deployments[i])
    }

    /// The deployment whose `/etc` and kargs a new deployment of `osname`
    /// inherits: the booted one if it has that stateroot, else that
    /// stateroot's first deployment.
    pub fn merge_deployment(&self, osname: &str) -> Option<&Deployment> {
        match self.booted_deployment() {
            Some(b) if b.osname == osname => Some(b),
            _ => self.deployments.iter().find(|d| d.osname == osname),
        }
    }

    /// Absolute path of a deployment's directory.
    pub fn deployment_dir(&self, d: &Deployment) -> PathBuf {
        self.path.join(d.relpath())
    }

    /// Opens the system repository `ostree/repo`.
    pub fn repo(&self) -> Result<Repo> {
        Ok(Repo::open(&self.path.join("ostree/repo"))?)
    }

    /// The boot loader backend from `[sysroot] bootloader` of the repo config.
    pub fn bootloader_kind(&self) -> Result<BootloaderKind> {
        let repo = self.repo()?;
        BootloaderKind::parse(repo.config().get("sysroot", "bootloader").unwrap_or("auto"))
    }

    /// Boot tries a new default deployment gets
    /// (`[sysroot] boot-counting-tries`, 0 or absent = no counting).
    pub fn boot_counting_tries(&self) -> Result<Option<u32>> {
        let repo = self.repo()?;
        match repo.config().get("sysroot", "boot-counting-tries") {
            None => Ok(None),
            Some(v) => match v.trim().parse::<u32>() {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(Error::Invalid(format!(
                    "ostree/repo/config: [sysroot] boot-counting-tries: not a number: '{v}'"
                ))),
            },
        }
    }

    /// Stateroots present under `ostree/deploy`.
    pub fn stateroots(&self) -> Result<Vec<String>> {
        let dir = self.path.join("ostree/deploy");
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Creates an empty physical root at `path` (`ostree admin init-fs`):
    /// the top-level directories and a bare `ostree/repo`.
    pub fn init_fs(path: &Path) -> Result<()> {
        Self::init_fs_with(path, false)
    }

    /// [`Sysroot::init_fs`]; `modern` creates only `boot` and `ostree`
    /// (`init-fs --modern`), leaving the rest to systemd at boot.
    pub fn init_fs_with(path: &Path, modern: bool) -> Result<()> {
        for (d, mode) in [
            ("boot", 0o755),
            ("dev", 0o755),
            ("home", 0o755),
            ("proc", 0o755),
            ("run", 0o755),
            ("sys", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
            ("ostree", 0o755),
            ("ostree/deploy", 0o755),
        ] {
            if modern && !d.starts_with("boot") && !d.starts_with("ostree") {
                continue;
            }
            let p = path.join(d);
            match fs::create_dir_all(&p) {
                Ok(()) => {}
                Err(e) => return Err(Error::io(format!("mkdir {}", p.display()), e)),
            }
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                .map_err(io_at("chmod", &p))?;
        }
        let repo = path.join("ostree/repo");
        if !repo.join("objects").is_dir() {
            Repo::create(&repo, RepoMode::Bare)?;
        }
        fsutil::fsync_dir(&path.join("ostree"))
    }

    /// Creates stateroot `name` (`ostree admin os-init`): `ostree/deploy/NAME/{deploy,var}`
    /// and the legacy `/var` skeleton upstream 2022.7 creates.
    pub fn os_init(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::Invalid(format!("invalid stateroot name '{name}'")));
        }
        let base = self.path.join("ostree/deploy").join(name);
        for d in ["deploy", "var", "var/lib", "var/log", "var/tmp"] {
            let p = base.join(d);
            fs::create_dir_all(&p).map_err(io_at("mkdir", &p))?;
        }
        let tmp = base.join("var/tmp");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
            .map_err(io_at("chmod", &tmp))?;
        for (l, t) in [("var/run", "../run"), ("var/lock", "../run/lock")] {
            let p = base.join(l);
            if fs::symlink_metadata(&p).is_err() {
                std::os::unix::fs::symlink(t, &p).map_err(io_at("symlink", &p))?;
            }
        }
        fsutil::fsync_dir(&base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vercmp_numeric() {
        assert_eq!(vercmp("10", "9"), Ordering::Greater);
        assert_eq!(vercmp("2", "2"), Ordering::Equal);
        assert_eq!(vercmp("1.10", "1.9"), Ordering::Greater);
        assert_eq!(vercmp("", "1"), Ordering::Less);
    }

    #[test]
    fn bootlink_parse() {
        assert_eq!(
            parse_bootlink("/ostree/boot.1/fcos/abc/0"),
            Some((1, "fcos".into(), "abc".into(), 0))
        );
        assert_eq!(parse_bootlink("/ostree/boot.1/fcos/abc"), None);
        assert_eq!(parse_bootlink("/ostree/boot.x/fcos/abc/0"), None);
    }
}
