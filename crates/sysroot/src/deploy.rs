//! Creating deployments and writing a new deployment list atomically
//! (upstream `ostree_sysroot_deploy_tree` and
//! `ostree_sysroot_write_deployments_with_options`).
//!
//! Order of a full boot-version swap, each step durable before the next:
//! kernels into `/boot/ostree/OS-BOOTCSUM` (temp dir + rename), entries into
//! the unused `/boot/loader.B'`, bootlinks `ostree/boot.B'.S'`, `syncfs` of
//! the sysroot and a freeze/thaw of `/boot` ([`crate::freeze`]), then
//! `rename(/boot/loader.tmp, /boot/loader)` — the commit point.
//! Anything left behind by a crash before that rename is unreferenced and
//! removed by the next cleanup.

use crate::bls::{BootEntry, EntryName};
use crate::deployment::Deployment;
use crate::fsutil::{self, io_at};
use crate::kargs::KernelArgs;
use crate::{etcmerge, freeze, Error, Result, Sysroot};
use ostree_repo::checkout::{self, CheckoutOptions};
use ostree_repo::gvariant::Value;
use ostree_repo::keyfile::KeyFile;
use ostree_repo::object;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Options of [`Sysroot::deploy`].
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Stateroot; default: the booted deployment's, or the only stateroot.
    pub osname: Option<String>,
    /// The `.origin` to write; default `[origin] refspec=<refspec>`.
    pub origin: Option<KeyFile>,
    /// Refspec recorded in the default origin (what `upgrade` follows).
    pub refspec: Option<String>,
    /// Start from these kargs instead of the merge deployment's.
    pub kargs_override: Option<KernelArgs>,
    /// `--karg`: set `key=value`, replacing existing values of `key`.
    pub karg_replace: Vec<String>,
    /// `--karg-append`.
    pub karg_append: Vec<String>,
    /// `--karg-delete`.
    pub karg_delete: Vec<String>,
    /// `--no-merge`: pristine `/etc`, no inherited kargs.
    pub no_merge: bool,
    /// `--retain`: keep every existing deployment.
    pub retain: bool,
    /// `--retain-pending`: keep deployments ordered before the booted one
    /// (all of them when not booted, as upstream).
    pub retain_pending: bool,
    /// `--retain-rollback`: keep deployments ordered after the booted one.
    pub retain_rollback: bool,
    /// `--not-as-default`: insert after the booted/merge deployment.
    pub not_as_default: bool,
    /// `--no-prune`: leave the repository unpruned.
    pub no_prune: bool,
    /// Boot tries for the new default; default from `[sysroot] boot-counting-tries`.
    pub boot_tries: Option<u32>,
}

/// A kernel found in a deployment, with the names its files get under
/// `/boot/ostree/OS-BOOTCSUM/`.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// Directory holding the source files.
    pub dir: PathBuf,
    /// `(source name, name under /boot)` of the kernel.
    pub kernel: (String, String),
    /// Same for the initramfs, if any.
    pub initramfs: Option<(String, String)>,
    /// Same for a devicetree, if any.
    pub devicetree: Option<(String, String)>,
    /// Same for the FIPS `.vmlinuz.hmac`, if any.
    pub hmac: Option<(String, String)>,
    /// The legacy layout names files by a precomputed bootcsum.
    pub legacy_bootcsum: Option<String>,
}

impl Kernel {
    /// Every `(source, destination)` file pair.
    fn files(&self) -> Vec<&(String, String)> {
        std::iter::once(&self.kernel)
            .chain(&self.initramfs)
            .chain(&self.devicetree)
            .chain(&self.hmac)
            .collect()
    }
}

fn is_file(p: &Path) -> bool {
    fs::symlink_metadata(p)
        .map(|m| m.is_file())
        .unwrap_or(false)
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    names.sort();
    Ok(names)
}

/// Finds the kernel of a deployment: the first `usr/lib/modules/*` with a
/// regular `vmlinuz` (by name order), else the legacy layout in
/// `usr/lib/ostree-boot` or `boot` (`vmlinuz[-VERSION]-BOOTCSUM`, with
/// `initramfs-*-BOOTCSUM` and `devicetree-*-BOOTCSUM` beside it).
pub(crate) fn find_kernel(deploy_dir: &Path) -> Result<Kernel> {
    let mods = deploy_dir.join("usr/lib/modules");
    for kver in sorted_names(&mods)? {
        let dir = mods.join(&kver);
        if !is_file(&dir.join("vmlinuz")) {
            continue;
        }
        let pair = |src: &str, dst: String| is_file(&dir.join(src)).then(|| (src.to_string(), dst));
        let initramfs = pair("initramfs.img", format!("initramfs-{kver}.img"))
            .or_else(|| pair("initramfs", format!("initramfs-{kver}.img")));
        return Ok(Kernel {
            kernel: ("vmlinuz".into(), format!("vmlinuz-{kver}")),
            initramfs,
            devicetree: pair("devicetree", format!("devicetree-{kver}")),
            hmac: pair(".vmlinuz.hmac", format!(".vmlinuz-{kver}.hmac")),
            legacy_bootcsum: None,
            dir,
        });
    }
    for legacy in ["usr/lib/ostree-boot", "boot"] {
        let dir = deploy_dir.join(legacy);
        let names = sorted_names(&dir)?;
        let Some(kname) = names
            .iter()
            .find(|n| n.starts_with("vmlinuz-") && is_file(&dir.join(n)))
        else {
            continue;
        };
        let csum = kname.rsplit('-').next().unwrap_or("");
        if csum.len() != 64 || !csum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Invalid(format!(
                "{}/{kname}: legacy kernel name must end in -BOOTCSUM (64 hex digits)",
                dir.display()
            )));
        }
        let find = |prefix: &str| {
            names
                .iter()
                .find(|n| n.starts_with(prefix) && n.ends_with(csum) && is_file(&dir.join(n)))
                .map(|n| (n.clone(), n.clone()))
        };
        return Ok(Kernel {
            kernel: (kname.clone(), kname.clone()),
            initramfs: find("initramfs-"),
            devicetree: find("devicetree-"),
            hmac: None,
            legacy_bootcsum: Some(csum.to_string()),
            dir,
        });
    }
    Err(Error::NotFound(format!(
        "Failed to find kernel in {}: expected usr/lib/modules/VERSION/vmlinuz, or vmlinuz-*-BOOTCSUM in usr/lib/ostree-boot or boot",
        deploy_dir.display()
    )))
}

/// sha256 over kernel, initramfs and devicetree bytes, as upstream; the
/// legacy layout's name-embedded checksum is taken as is.
pub(crate) fn bootcsum(k: &Kernel) -> Result<String> {
    if let Some(c) = &k.legacy_bootcsum {
        return Ok(c.clone());
    }
    let mut h = Sha256::new();
    let parts = std::iter::once(&k.kernel)
        .chain(&k.initramfs)
        .chain(&k.devicetree);
    for (src, _) in parts {
        let path = k.dir.join(src);
        let mut f = fs::File::open(&path).map_err(io_at("opening", &path))?;
        io::copy(&mut f, &mut h).map_err(io_at("reading", &path))?;
    }
    Ok(hex::encode(h.finalize()))
}

fn os_release_name(deploy_dir: &Path) -> String {
    for p in ["usr/lib/os-release", "etc/os-release", "usr/etc/os-release"] {
        let Ok(t) = fs::read_to_string(deploy_dir.join(p)) else {
            continue;
        };
        let mut vals = BTreeMap::new();
        for l in t.lines() {
            if let Some((k, v)) = l.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                vals.insert(k.trim().to_string(), v.to_string());
            }
        }
        if let Some(n) = vals.get("PRETTY_NAME").or(vals.get("ID")) {
            return n.clone();
        }
    }
    "ostree".into()
}

/// The commit's `version` metadata, if any.
pub(crate) fn commit_version(sr: &Sysroot, csum: &str) -> Option<String> {
    let repo = sr.repo().ok()?;
    let c = repo.load_commit(&object::from_hex(csum)?).ok()?;
    match c.meta("version") {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Next free deployserial for `csum` in `osname` (any leftover directory
/// counts, so an interrupted deploy's remains are never reused).
fn allocate_deployserial(sr: &Sysroot, osname: &str, csum: &str) -> Result<u32> {
    let dir = sr.path.join("ostree/deploy").join(osname).join("deploy");
    let mut next = 0;
    for e in fs::read_dir(&dir).map_err(io_at("reading", &dir))? {
        let e = e.map_err(io_at("reading", &dir))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = n
            .strip_prefix(csum)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.trim_end_matches(".origin").parse::<u32>().ok())
        {
            next = next.max(s + 1);
        }
    }
    for d in &sr.deployments {
        if d.osname == osname && d.csum == csum {
            next = next.max(d.deployserial + 1);
        }
    }
    Ok(next)
}

/// One entry to write: its file name and text.
type Entry = (EntryName, String);

/// Boot counting state for the default entry.
#[derive(Debug, Clone, Copy)]
enum Counter {
    /// A new default with this many tries.
    Fresh(u32),
    /// The same default as before: keep its (left, done) state.
    Carried((u32, u32)),
}

impl Sysroot {
    /// The stateroot a deploy targets when none is given.
    pub(crate) fn default_osname(&self, given: Option<&str>) -> Result<String> {
        if let Some(o) = given {
            return Ok(o.to_string());
        }
        if let Some(b) = self.booted_deployment() {
            return Ok(b.osname.clone());
        }
        match self.stateroots()?.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Invalid(
                "No stateroot: run `admin os-init NAME` first".into(),
            )),
            _ => Err(Error::Invalid(
                "Not currently booted into an OSTree system and no --os= argument given".into(),
            )),
        }
    }

    /// Checks out `csum` (hex commit checksum, which must be in the system
    /// repo) as a new deployment, merges `/etc`, and makes it the default.
    pub fn deploy(&mut self, csum: &str, opts: &DeployOptions) -> Result<Deployment> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.reload()?;
        let (d, merge) = self.prepare_deployment(csum, opts)?;
        if !fsutil::mutable_deployments() {
            fsutil::set_immutable(&self.deployment_dir(&d), true)?;
        }
        let new_list = self.list_with(&d, merge.as_ref(), opts);
        let tries = if new_list[0].same_as(&d) {
            match opts.boot_tries {
                Some(0) => None,
                Some(t) => Some(t),
                None => self.boot_counting_tries()?,
            }
        } else {
            None
        };
        self.write_deployments_locked(new_list, tries)?;
        self.cleanup_locked(!opts.no_prune)?;
        self.deployments
            .iter()
            .find(|x| x.same_as(&d))
            .cloned()
            .ok_or_else(|| Error::Corrupt("new deployment missing after write".into()))
    }

    /// Checkout, `/etc`, kernel, kargs and origin of a new deployment; it
    /// is not yet referenced by any boot configuration. Returns it with its
    /// merge deployment.
    pub(crate) fn prepare_deployment(
        &self,
        csum: &str,
        opts: &DeployOptions,
    ) -> Result<(Deployment, Option<Deployment>)> {
        let commit = object::from_hex(csum)
            .ok_or_else(|| Error::Invalid(format!("invalid commit checksum '{csum}'")))?;
        let repo = self.repo()?;
        repo.load_commit(&commit)?;
        let osname = self.default_osname(opts.osname.as_deref())?;
        let osdir = self.path.join("ostree/deploy").join(&osname);
        if !osdir.join("deploy").is_dir() {
            return Err(Error::NotFound(format!(
                "No stateroot '{osname}' (run `admin os-init {osname}`)"
            )));
        }
        let merge = if opts.no_merge {
            None
        } else {
            self.merge_deployment(&osname).cloned()
        };
        let serial = allocate_deployserial(self, &osname, csum)?;
        let mut d = Deployment {
            index: 0,
            osname: osname.clone(),
            csum: csum.to_string(),
            deployserial: serial,
            bootcsum: String::new(),
            bootserial: 0,
            kargs: KernelArgs::default(),
            origin: None,
            entry: None,
        };
        let dir = self.deployment_dir(&d);
        fsutil::remove_deployment_dir(&dir)?;
        checkout::checkout(&repo, &commit, &dir, &CheckoutOptions::default())?;
        self.prepare_etc(&dir, merge.as_ref())?;
        let kernel = find_kernel(&dir)?;
        d.bootcsum = bootcsum(&kernel)?;

        let mut kargs = match (&opts.kargs_override, &merge) {
            (Some(k), _) => k.clone(),
            (None, Some(m)) => m.kargs.clone(),
            (None, None) => KernelArgs::default(),
        };
        for a in &opts.karg_replace {
            kargs.replace(a);
        }
        for a in &opts.karg_append {
            kargs.append(a);
        }
        for a in &opts.karg_delete {
            kargs.delete(a)?;
        }
        kargs.remove_key("ostree");
        d.kargs = kargs;

        let origin = match &opts.origin {
            Some(o) => o.clone(),
            None => {
                let mut o = KeyFile::default();
                o.set("origin", "refspec", opts.refspec.as_deref().unwrap_or(csum));
                o
            }
        };
        fsutil::write_file_atomic(
            &self.path.join(d.origin_relpath()),
            origin.to_text().as_bytes(),
            0o644,
        )?;
        d.origin = Some(origin);
        Ok((d, merge))
    }

    /// The deployment list with `d` added: which existing deployments
    /// survive follows upstream's `ostree_sysroot_simple_write_deployment`.
    pub(crate) fn list_with(
        &self,
        d: &Deployment,
        merge: Option<&Deployment>,
        opts: &DeployOptions,
    ) -> Vec<Deployment> {
        let booted = self.booted_deployment();
        let mut new_list = Vec::new();
        if !opts.not_as_default {
            new_list.push(d.clone());
        }
        let mut inserted = !opts.not_as_default;
        let mut passed_booted = false;
        for old in &self.deployments {
            let is_booted = booted.is_some_and(|b| b.same_as(old));
            let is_merge = merge.is_some_and(|m| m.same_as(old));
            passed_booted |= is_booted;
            let retained = opts.retain
                || (opts.retain_pending && !passed_booted)
                || (opts.retain_rollback && passed_booted && !is_booted);
            if retained || old.is_pinned() || old.osname != d.osname || is_booted || is_merge {
                new_list.push(old.clone());
            }
            if !inserted && (is_booted || (booted.is_none() && is_merge)) {
                new_list.push(d.clone());
                inserted = true;
            }
        }
        if !inserted {
            new_list.push(d.clone());
        }
        new_list
    }

    /// Creates the deployment's `etc` from `usr/etc` and merges the merge
    /// deployment's local changes into it.
    pub(crate) fn prepare_etc(&self, dir: &Path, merge: Option<&Deployment>) -> Result<()> {
        let (etc, usr_etc) = (dir.join("etc"), dir.join("usr/etc"));
        let has = |p: &Path| fs::symlink_metadata(p).is_ok();
        if has(&etc) {
            if has(&usr_etc) {
                return Err(Error::Invalid(format!(
                    "Tree contains both /etc and /usr/etc ({})",
                    dir.display()
                )));
            }
            fs::rename(&etc, &usr_etc).map_err(io_at("renaming", &etc))?;
        }
        if !has(&usr_etc) {
            return Ok(());
        }
        fsutil::copy_tree(&usr_etc, &etc)?;
        if let Some(m) = merge {
            let mdir = self.deployment_dir(m);
            let (o, c) = (mdir.join("usr/etc"), mdir.join("etc"));
            if o.is_dir() && c.is_dir() {
                let r = etcmerge::merge(&o, &c, &etc)?;
                for s in &r.skipped {
                    eprintln!("Ignoring non-regular/non-symlink file found during /etc merge: {s}");
                }
            }
        }
        Ok(())
    }

    /// Renders every entry of `list` for boot version `bv`.
    fn render_entries(
        &self,
        list: &[Deployment],
        bv: u32,
        counter: Option<Counter>,
    ) -> Result<Vec<(Entry, Kernel)>> {
        let n = list.len();
        let backend = self.bootloader_kind()?.backend();
        let multi_os = list.windows(2).any(|w| w[0].osname != w[1].osname);
        let mut out = Vec::new();
        for d in list {
            let dir = self.deployment_dir(d);
            let k = find_kernel(&dir)?;
            let mut title = os_release_name(&dir);
            if let Some(v) = commit_version(self, &d.csum) {
                if !v.is_empty() && !title.contains(&v) {
                    title = format!("{title} {v}");
                }
            }
            // 2022.7 names the stateroot only when several are deployed.
            title = if multi_os {
                format!("{title} (ostree:{}:{})", d.osname, d.index)
            } else {
                format!("{title} (ostree:{})", d.index)
            };
            let bootdir = format!("/ostree/{}-{}", d.osname, d.bootcsum);
            let mut e = BootEntry::default();
            e.set("title", &title);
            e.set("version", &(n - d.index).to_string());
            let mut opts = d.kargs.clone();
            opts.remove_key("ostree");
            if k.initramfs.is_none() {
                opts.replace(&format!(
                    "init={}/usr/lib/ostree/ostree-prepare-root",
                    d.bootlink(bv)
                ));
            }
            opts.append(&format!("ostree={}", d.bootlink(bv)));
            e.set("options", &opts.to_string());
            e.set("linux", &format!("{bootdir}/{}", k.kernel.1));
            if let Some((_, i)) = &k.initramfs {
                e.set("initrd", &format!("{bootdir}/{i}"));
            }
            if let Some((_, dt)) = &k.devicetree {
                e.set("devicetree", &format!("{bootdir}/{dt}"));
            }
            let stem = format!("ostree-{}-{}", n - d.index, d.osname);
            let name = match (d.index, counter) {
                (0, Some(Counter::Fresh(t))) => backend.counted_entry(&stem, t),
                (0, Some(Counter::Carried(c))) => EntryName {
                    stem,
                    counter: Some(c),
                },
                _ => EntryName {
                    stem,
                    counter: None,
                },
            };
            out.push(((name, e.to_text()), k));
        }
        Ok(out)
    }

    fn current_entries(&self) -> Result<Vec<Entry>> {
        let dir = self.path.join("boot/loader/entries");
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        for e in rd {
            let e = e.map_err(io_at("reading", &dir))?;
            let fname = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = EntryName::parse(&fname) {
                if n.stem.starts_with("ostree-") {
                    let t = fs::read_to_string(e.path()).map_err(io_at("reading", &e.path()))?;
                    out.push((n, t));
                }
            }
        }
        out.sort_by(|a, b| a.0.stem.cmp(&b.0.stem));
        Ok(out)
    }

    /// Writes the bootlinks `ostree/boot.B.S/...`; [`Self::swap_bootlinks`]
    /// makes them live.
    fn write_bootlinks(&self, bv: u32, sub: u32, list: &[Deployment]) -> Result<()> {
        let base = self.path.join(format!("ostree/boot.{bv}.{sub}"));
        fsutil::remove_all(&base)?;
        for d in list {
            let p = base.join(&d.osname).join(&d.bootcsum);
            fs::create_dir_all(&p).map_err(io_at("mkdir", &p))?;
            let l = p.join(d.bootserial.to_string());
            let target = format!("../../../deploy/{}/deploy/{}", d.osname, d.dir_name());
            std::os::unix::fs::symlink(&target, &l).map_err(io_at("symlink", &l))?;
            fsutil::fsync_dir(&p)?;
            fsutil::fsync_dir(p.parent().expect("has parent"))?;
        }
        fs::create_dir_all(&base).map_err(io_at("mkdir", &base))?;
        fsutil::fsync_dir(&base)
    }

    fn swap_bootlinks(&self, bv: u32, sub: u32) -> Result<()> {
        fsutil::symlink_atomic(
            Path::new(&format!("boot.{bv}.{sub}")),
            &self.path.join(format!("ostree/boot.{bv}")),
        )
    }

    fn install_kernel(&self, d: &Deployment, k: &Kernel) -> Result<()> {
        let ostree_boot = self.path.join("boot/ostree");
        fs::create_dir_all(&ostree_boot).map_err(io_at("mkdir", &ostree_boot))?;
        let name = format!("{}-{}", d.osname, d.bootcsum);
        let dest = ostree_boot.join(&name);
        if dest.is_dir() {
            // Complete by construction: it only appears by rename.
            return Ok(());
        }
        let tmp = ostree_boot.join(format!(".{name}.tmp"));
        fsutil::remove_all(&tmp)?;
        fs::create_dir(&tmp).map_err(io_at("mkdir", &tmp))?;
        for (src, dst) in k.files() {
            let (s, t) = (k.dir.join(src), tmp.join(dst));
            // Hardlink when /boot is on the same filesystem, else copy.
            if fs::hard_link(&s, &t).is_err() {
                fsutil::copy_node(&s, &t)?;
                fs::File::open(&t)
                    .and_then(|f| f.sync_all())
                    .map_err(io_at("fsync", &t))?;
            }
        }
        fsutil::fsync_dir(&tmp)?;
        fs::rename(&tmp, &dest).map_err(io_at("renaming into", &dest))?;
        fsutil::fsync_dir(&ostree_boot)
    }

    /// Assigns indices and bootserials (per bootcsum, in list order).
    fn number(list: &mut [Deployment]) {
        let mut serials: BTreeMap<String, u32> = BTreeMap::new();
        for (i, d) in list.iter_mut().enumerate() {
            d.index = i;
            let c = serials.entry(d.bootcsum.clone()).or_insert(0);
            d.bootserial = *c;
            *c += 1;
        }
    }

    /// Makes `list` the deployment list (default first), committing it with
    /// one atomic symlink swap. Takes the sysroot lock.
    pub fn write_deployments(&mut self, list: Vec<Deployment>) -> Result<()> {
        let _lock = fsutil::lock(&self.path.join("ostree/lock"))?;
        self.write_deployments_locked(list, None)?;
        self.cleanup_locked(false).map(|_| ())
    }

    pub(crate) fn write_deployments_locked(
        &mut self,
        mut list: Vec<Deployment>,
        tries: Option<u32>,
    ) -> Result<()> {
        Self::number(&mut list);
        // A default that is still being counted keeps its counter state.
        let counter = match tries {
            Some(t) => Some(Counter::Fresh(t)),
            None => match (self.deployments.first(), list.first()) {
                (Some(old), Some(new)) if old.same_as(new) => old
                    .entry
                    .as_ref()
                    .and_then(|e| e.counter)
                    .map(Counter::Carried),
                _ => None,
            },
        };
        let (bv, sub) = (self.bootversion, self.subbootversion);
        let same = self.render_entries(&list, bv, counter)?;
        let mut same_set: Vec<Entry> = same.into_iter().map(|(e, _)| e).collect();
        same_set.sort_by(|a, b| a.0.stem.cmp(&b.0.stem));
        let loader_exists = fs::symlink_metadata(self.path.join("boot/loader")).is_ok();
        if loader_exists && same_set == self.current_entries()? {
            // Same boot configuration: only the bootlinks change.
            self.write_bootlinks(bv, 1 - sub, &list)?;
            freeze::full_system_sync(&self.path, &self.path.join("boot"))?;
            self.swap_bootlinks(bv, 1 - sub)?;
        } else {
            let nbv = 1 - bv;
            let boot = self.path.join("boot");
            let loader_new = boot.join(format!("loader.{nbv}"));
            fsutil::remove_all(&loader_new)?;
            for s in ["", ".0", ".1"] {
                fsutil::remove_all(&self.path.join(format!("ostree/boot.{nbv}{s}")))?;
            }
            let rendered = self.render_entries(&list, nbv, counter)?;
            for (d, (_, k)) in list.iter().zip(&rendered) {
                self.install_kernel(d, k)?;
            }
            let entries = loader_new.join("entries");
            fs::create_dir_all(&entries).map_err(io_at("mkdir", &entries))?;
            for ((name, text), _) in &rendered {
                fsutil::write_file_atomic(&entries.join(name.file_name()), text.as_bytes(), 0o644)?;
            }
            fsutil::fsync_dir(&loader_new)?;
            self.write_bootlinks(nbv, 1, &list)?;
            self.swap_bootlinks(nbv, 1)?;
            self.bootloader_kind()?.backend().write_config(&boot, nbv)?;
            // Deployment trees, kernels and entries must be on disk before
            // the boot loader can see them.
            freeze::full_system_sync(&self.path, &boot)?;
            let tmp = boot.join("loader.tmp");
            fsutil::remove_all(&tmp)?;
            std::os::unix::fs::symlink(format!("loader.{nbv}"), &tmp)
                .map_err(io_at("symlink", &tmp))?;
            let loader = boot.join("loader");
            fs::rename(&tmp, &loader).map_err(io_at("renaming into", &loader))?;
            fsutil::fsync_dir(&boot)?;
        }
        self.reload()?;
        self.write_refs()?;
        touch(&self.path.join("ostree/deploy"))
    }

    /// Refs `ostree/B/S/I` keep each deployment's commit from being pruned.
    pub(crate) fn write_refs(&self) -> Result<()> {
        let repo = self.repo()?;
        let mut want = BTreeMap::new();
        for d in &self.deployments {
            let c = object::from_hex(&d.csum)
                .ok_or_else(|| Error::Corrupt(format!("bad deployment checksum {}", d.csum)))?;
            want.insert(
                format!(
                    "ostree/{}/{}/{}",
                    self.bootversion, self.subbootversion, d.index
                ),
                c,
            );
        }
        if let Some(st) = self.staged_deployment()? {
            let c = object::from_hex(&st.csum)
                .ok_or_else(|| Error::Corrupt(format!("bad staged checksum {}", st.csum)))?;
            want.insert(
                format!(
                    "ostree/{}/{}/{}",
                    self.bootversion,
                    self.subbootversion,
                    self.deployments.len()
                ),
                c,
            );
        }
        // New refs first: at no point is a deployed commit unreferenced.
        for (n, c) in &want {
            repo.set_ref(None, n, Some(c))?;
        }
        for n in repo.list_refs(Some("ostree"))?.keys() {
            if !n.contains(':') && !want.contains_key(n) {
                repo.set_ref(None, n, None)?;
            }
        }
        Ok(())
    }
}

fn touch(p: &Path) -> Result<()> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Invalid(format!("path contains NUL: {}", p.display())))?;
    // SAFETY: valid path; NULL times = now.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) } != 0 {
        return Err(Error::io(
            format!("utimensat {}", p.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}
