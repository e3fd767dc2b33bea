//! Running mmdebstrap (lock and build), committing, writing the record.
//!
//! Package cache: `CACHE/<key>/archives` holds every `.deb` ever fetched and
//! `CACHE/<key>/lists` the apt lists of the last lock, `<key>` being a digest
//! of the host's apt sources and the suite (a different mirror never reuses
//! lists). mmdebstrap's `sync-in`/`sync-out` hooks copy them in and out of
//! the chroot. When the cache holds every locked `.deb` and the lists, the
//! build runs offline: `--skip=update` and an unreachable apt proxy, so a
//! rebuild that would download anything fails instead of silently fetching.

use crate::fsutil::write_atomic;
use crate::lock::Lock;
use crate::manifest::Manifest;
use crate::meta::{version_for, Artifact, BuildMeta};
use crate::postprocess::{self, Layout};
use crate::{Error, Result};
use ostree_repo::commit::CommitOptions;
use ostree_repo::gvariant::Value;
use ostree_repo::{Repo, RepoMode};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Inputs of [`build`].
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Config directory holding `manifest.toml` and `lock.toml`.
    pub config_dir: PathBuf,
    /// OSTree repository (created in archive mode when missing).
    pub repo: PathBuf,
    /// Package cache and scratch directory (the tree is composed here).
    pub cache: PathBuf,
    /// Where `VERSION/meta.json` and the artifacts go; default `CACHE/builds`.
    pub out_dir: Option<PathBuf>,
    /// Ref to commit to; default: the manifest's `ref`.
    pub ostree_ref: Option<String>,
    /// Binary installed as `/usr/bin/ferrocore` when the manifest asks for it.
    pub ferrocore_binary: Option<PathBuf>,
    /// apt sources passed to mmdebstrap; default: [`host_sources`] of `/etc/apt`.
    pub sources: Option<PathBuf>,
}

impl BuildOptions {
    /// Options with defaults for everything but the three directories.
    pub fn new(config_dir: PathBuf, repo: PathBuf, cache: PathBuf) -> BuildOptions {
        BuildOptions {
            config_dir,
            repo,
            cache,
            out_dir: None,
            ostree_ref: None,
            ferrocore_binary: None,
            sources: None,
        }
    }
}

/// What [`build`] produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The version recorded in the commit.
    pub version: String,
    /// The commit checksum.
    pub commit: String,
    /// Root dirtree and dirmeta checksums (`TREE.META`): equal for equal
    /// content, whatever the commit's parent.
    pub content_checksum: String,
    /// Whether every package came from the cache (no network at all).
    pub offline: bool,
    /// Directory with `meta.json` and the artifacts.
    pub meta_dir: PathBuf,
    /// What post-processing found.
    pub layout: Layout,
}

/// Finds the apt sources file carrying `suite` under `apt_dir` (normally
/// `/etc/apt`): the first deb822 `sources.list.d/*.sources` whose `Suites:`
/// names it, else a `sources.list` with a `deb` line for it. The mirror is
/// thus the host's, read at run time; nothing names one in the repository.
pub fn host_sources(apt_dir: &Path, suite: &str) -> Result<PathBuf> {
    let dir = apt_dir.join("sources.list.d");
    let mut candidates: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sources"))
            .collect(),
        Err(_) => Vec::new(),
    };
    candidates.sort();
    for p in candidates {
        let text = fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let hit = text.lines().any(|l| {
            l.trim_start()
                .strip_prefix("Suites:")
                .is_some_and(|v| v.split_whitespace().any(|s| s == suite))
        });
        if hit {
            return Ok(p);
        }
    }
    let list = apt_dir.join("sources.list");
    if let Ok(text) = fs::read_to_string(&list) {
        let hit = text.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("deb") && w.any(|x| x == suite)
        });
        if hit {
            return Ok(list);
        }
    }
    Err(Error::Compose(format!(
        "no apt source for {suite} in {}/sources.list.d/*.sources or {}",
        apt_dir.display(),
        list.display()
    )))
}

/// Quotes for `sh` (mmdebstrap runs hooks through the shell).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

struct Cache {
    archives: PathBuf,
    lists: PathBuf,
}

impl Cache {
    fn new(root: &Path, sources: &Path, suite: &str) -> Result<Cache> {
        // sync-in/sync-out split their arguments on whitespace.
        if root.to_string_lossy().contains(char::is_whitespace) {
            return Err(Error::Compose(format!(
                "cache directory {:?} must not contain whitespace",
                root
            )));
        }
        let text = fs::read(sources).map_err(|e| Error::io(sources, e))?;
        let mut h = Sha256::new();
        h.update(suite.as_bytes());
        h.update(b"\n");
        h.update(&text);
        let key = &hex::encode(h.finalize())[..16];
        let base = root.join(key);
        let cache = Cache {
            archives: base.join("archives"),
            lists: base.join("lists"),
        };
        for d in [&cache.archives, &cache.lists] {
            fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        Ok(cache)
    }

    /// Whether every locked package's `.deb` and the lists are present.
    fn complete_for(&self, lock: &Lock) -> Result<bool> {
        let names = |d: &Path| -> Result<Vec<String>> {
            let mut v = Vec::new();
            for e in fs::read_dir(d).map_err(|e| Error::io(d, e))? {
                let e = e.map_err(|e| Error::io(d, e))?;
                v.push(e.file_name().to_string_lossy().into_owned());
            }
            Ok(v)
        };
        if !names(&self.lists)?.iter().any(|n| n.contains("_Packages")) {
            return Ok(false);
        }
        let debs: std::collections::HashSet<String> = names(&self.archives)?
            .into_iter()
            .filter_map(|n| {
                // apt names files NAME_VERSION_ARCH.deb with ':' as %3a.
                let stem = n.strip_suffix(".deb")?;
                let (nv, _arch) = stem.rsplit_once('_')?;
                Some(nv.replace("%3a", ":"))
            })
            .collect();
        Ok(lock
            .packages
            .iter()
            .all(|(n, v)| debs.contains(&format!("{n}_{v}"))))
    }
}

/// The mmdebstrap command line shared by lock and build.
struct Mmdebstrap {
    args: Vec<String>,
    epoch: u64,
}

impl Mmdebstrap {
    fn new(variant: &str, arch: &str, includes: &[String], cache: &Cache, epoch: u64) -> Self {
        let archives = cache.archives.display().to_string();
        let args = vec![
            format!("--variant={variant}"),
            format!("--architectures={arch}"),
            format!("--include={}", includes.join(",")),
            // Keep the downloaded essential .debs for sync-out.
            "--skip=essential/unlink".into(),
            "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
            "--dpkgopt=path-exclude=/usr/share/man/*".into(),
            "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
            "--dpkgopt=path-include=/usr/share/locale/locale.alias".into(),
            "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives \"$1\"/var/lib/apt/lists".into(),
            format!("--setup-hook=sync-in {archives} /var/cache/apt/archives/"),
            format!("--customize-hook=sync-out /var/cache/apt/archives {archives}"),
        ];
        Mmdebstrap { args, epoch }
    }

    fn offline(&mut self, cache: &Cache) {
        let lists = cache.lists.display();
        self.args.extend([
            format!("--setup-hook=sync-in {lists} /var/lib/apt/lists/"),
            "--skip=update".into(),
            // Nothing listens on port 9 (discard): any fetch fails loudly.
            "--aptopt=Acquire::http::Proxy \"http://127.0.0.1:9\"".into(),
            "--aptopt=Acquire::https::Proxy \"http://127.0.0.1:9\"".into(),
        ]);
    }

    fn save_lists(&mut self, cache: &Cache) {
        self.args.push(format!(
            "--customize-hook=sync-out /var/lib/apt/lists {}",
            cache.lists.display()
        ));
    }

    /// Records the installed set; runs before mmdebstrap's cleanup.
    fn query_packages(&mut self, out: &Path) {
        self.args.push(format!(
            "--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\n' > {}",
            sh_quote(&out.display().to_string())
        ));
    }

    fn run(&self, suite: &str, target: &Path, sources: &Path, log: &Path) -> Result<()> {
        let logf = fs::File::create(log).map_err(|e| Error::io(log, e))?;
        let logf2 = logf.try_clone().map_err(|e| Error::io(log, e))?;
        let status = Command::new("mmdebstrap")
            .args(&self.args)
            .arg(suite)
            .arg(target)
            .arg(sources)
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string())
            .stdout(logf)
            .stderr(logf2)
            .status()
            .map_err(|e| {
                Error::Compose(format!(
                    "cannot run mmdebstrap ({e}); install it with `apt-get install mmdebstrap`"
                ))
            })?;
        if status.success() {
            return Ok(());
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(Error::Compose(format!(
            "mmdebstrap failed ({status}); log {}:\n{}",
            log.display(),
            tail.join("\n")
        )))
    }
}

fn resolve_sources(explicit: Option<&Path>, suite: &str) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => host_sources(Path::new("/etc/apt"), suite),
    }
}

fn fresh_dir(p: &Path) -> Result<()> {
    if p.exists() {
        fs::remove_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(())
}

/// `ferrocore build lock`: installs the manifest's packages (with the
/// manifest's variant) into a throwaway tree, records what dpkg installed
/// and writes `CONFIG/lock.toml`. A real install is the only resolver that
/// gives exactly what mmdebstrap's variant + apt would pick; the `.deb`s it
/// downloads stay in the cache for the build that follows.
pub fn lock_packages(config_dir: &Path, cache_root: &Path, sources: Option<&Path>) -> Result<Lock> {
    let manifest = Manifest::load(config_dir)?;
    let sources = resolve_sources(sources, &manifest.suite)?;
    let cache = Cache::new(cache_root, &sources, &manifest.suite)?;
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tree = cache_root.join("lock-tree");
    let query = cache_root.join("lock-query.txt");
    fresh_dir(&tree)?;
    let mut mm = Mmdebstrap::new(
        &manifest.variant,
        &manifest.architecture,
        &manifest.packages,
        &cache,
        epoch,
    );
    mm.save_lists(&cache);
    mm.query_packages(&query);
    let result = mm.run(
        &manifest.suite,
        &tree,
        &sources,
        &cache_root.join("lock.log"),
    );
    let _ = fs::remove_dir_all(&tree);
    result?;
    let out = fs::read_to_string(&query).map_err(|e| Error::io(&query, e))?;
    let lock = Lock::from_dpkg_query(
        &out,
        &manifest.suite,
        &manifest.architecture,
        &manifest.package_inputs_digest(),
        epoch,
    )?;
    write_atomic(
        &config_dir.join(crate::LOCK_FILE),
        lock.to_toml().as_bytes(),
        0o644,
    )?;
    Ok(lock)
}

fn check_lock(manifest: &Manifest, lock: &Lock, config_dir: &Path) -> Result<()> {
    let file = config_dir.join(crate::LOCK_FILE);
    if lock.manifest_digest != manifest.package_inputs_digest()
        || lock.suite != manifest.suite
        || lock.architecture != manifest.architecture
    {
        return Err(Error::Lock(format!(
            "{} was made for other debian.* settings than {}; run `ferrocore build lock`",
            file.display(),
            config_dir.join(crate::MANIFEST_FILE).display()
        )));
    }
    Ok(())
}

/// `ferrocore build`: composes the locked package set, post-processes it
/// into the OSTree layout, commits it and writes `meta.json`.
pub fn build(opts: &BuildOptions) -> Result<BuildOutcome> {
    let manifest = Manifest::load(&opts.config_dir)?;
    let lock = Lock::load(&opts.config_dir)?;
    check_lock(&manifest, &lock, &opts.config_dir)?;
    let ostree_ref = opts
        .ostree_ref
        .clone()
        .unwrap_or(manifest.ostree_ref.clone());
    ostree_repo::validate_ref(&ostree_ref)?;
    let binary = match (manifest.install_ferrocore, &opts.ferrocore_binary) {
        (false, _) => None,
        (true, Some(b)) => {
            // It becomes the initramfs's /init too: refuse a dynamic one
            // now rather than after the package install.
            ferrocore_initramfs::elf::check_static(b)
                .map_err(|e| Error::Compose(format!("ferrocore binary: {e}")))?;
            Some(b.clone())
        }
        (true, None) => {
            return Err(Error::Compose(
                "manifest has install-ferrocore = true but no ferrocore binary was given".into(),
            ))
        }
    };
    let sources = resolve_sources(opts.sources.as_deref(), &manifest.suite)?;
    let cache = Cache::new(&opts.cache, &sources, &manifest.suite)?;
    let offline = cache.complete_for(&lock)?;

    let tree = opts.cache.join("rootfs");
    let query = opts.cache.join("build-query.txt");
    fresh_dir(&tree)?;
    let mut mm = Mmdebstrap::new(
        "custom",
        &manifest.architecture,
        &lock.apt_pins(),
        &cache,
        lock.source_date_epoch,
    );
    if offline {
        mm.offline(&cache);
    } else {
        mm.save_lists(&cache);
    }
    mm.query_packages(&query);
    let outcome = (|| {
        mm.run(
            &manifest.suite,
            &tree,
            &sources,
            &opts.cache.join("build.log"),
        )?;
        let out = fs::read_to_string(&query).map_err(|e| Error::io(&query, e))?;
        let installed = Lock::from_dpkg_query(
            &out,
            &lock.suite,
            &lock.architecture,
            &lock.manifest_digest,
            lock.source_date_epoch,
        )?;
        let diff = lock.differences(&installed);
        if !diff.is_empty() {
            return Err(Error::Lock(format!(
                "installed packages differ from the lock:\n  {}",
                diff.join("\n  ")
            )));
        }
        let layout = postprocess::postprocess(
            &tree,
            &postprocess::Options {
                overlay: manifest.overlay.clone(),
                units: manifest.units.clone(),
                enable: manifest.enable.clone(),
                kernel_arguments: manifest.kernel_arguments.clone(),
                ferrocore_binary: binary,
                source_date_epoch: lock.source_date_epoch,
            },
        )?;
        commit_tree(&tree, &manifest, &lock, &ostree_ref, layout, offline, opts)
    })();
    let _ = fs::remove_dir_all(&tree);
    outcome
}

/// Commits a post-processed tree and writes the build record; public to the
/// crate so the tests can run it on synthetic trees.
pub(crate) fn commit_tree(
    tree: &Path,
    manifest: &Manifest,
    lock: &Lock,
    ostree_ref: &str,
    layout: Layout,
    offline: bool,
    opts: &BuildOptions,
) -> Result<BuildOutcome> {
    let repo = if opts.repo.join("config").is_file() {
        Repo::open(&opts.repo)?
    } else {
        Repo::create(&opts.repo, RepoMode::Archive)?
    };
    let parent_version = match repo.read_ref(None, ostree_ref)? {
        Some(c) => repo
            .load_commit(&c)?
            .metadata
            .into_iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("version", Value::Str(s)) => Some(s),
                _ => None,
            }),
        None => None,
    };
    let version = version_for(
        &manifest.version_prefix,
        &manifest.stream,
        lock.source_date_epoch,
        parent_version.as_deref(),
    );
    let copts = CommitOptions {
        branch: Some(ostree_ref.to_string()),
        subject: format!("{} {}", manifest.name, version),
        timestamp: Some(lock.source_date_epoch),
        metadata: vec![
            ("version".into(), Value::Str(version.clone())),
            (
                "ferrocore.stream".into(),
                Value::Str(manifest.stream.clone()),
            ),
        ],
        bootable: true,
        ..Default::default()
    };
    let outcome = ostree_repo::commit::commit(
        &repo,
        &[ostree_repo::commit::TreeSource::Dir(tree.to_path_buf())],
        &copts,
    )?;
    let commit = ostree_repo::object::to_hex(&outcome.checksum);
    let c = repo.load_commit(&outcome.checksum)?;
    let content_checksum = format!(
        "{}.{}",
        ostree_repo::object::to_hex(&c.root_tree),
        ostree_repo::object::to_hex(&c.root_meta)
    );

    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| opts.cache.join("builds"));
    let meta_dir = out_dir.join(&version);
    fs::create_dir_all(&meta_dir).map_err(|e| Error::io(&meta_dir, e))?;
    let moddir = tree.join("usr/lib/modules").join(&layout.kernel_version);
    let mut artifacts = BTreeMap::new();
    let mut files = vec![("kernel", moddir.join("vmlinuz"), "vmlinuz")];
    if layout.has_initramfs {
        files.push(("initramfs", moddir.join("initramfs.img"), "initramfs.img"));
    }
    files.push((
        "lockfile",
        opts.config_dir.join(crate::LOCK_FILE),
        crate::LOCK_FILE,
    ));
    for (role, src, name) in files {
        let data = fs::read(&src).map_err(|e| Error::io(&src, e))?;
        write_atomic(&meta_dir.join(name), &data, 0o644)?;
        artifacts.insert(role.to_string(), Artifact::of(&meta_dir, name)?);
    }
    BuildMeta {
        name: manifest.name.clone(),
        stream: manifest.stream.clone(),
        version: version.clone(),
        ostree_commit: commit.clone(),
        ostree_ref: ostree_ref.to_string(),
        ostree_timestamp: lock.source_date_epoch,
        kernel_version: layout.kernel_version.clone(),
        kernel_arguments: manifest.kernel_arguments.clone(),
        packages: lock.packages.len(),
        artifacts,
    }
    .write(&meta_dir)?;
    Ok(BuildOutcome {
        version,
        commit,
        content_checksum,
        offline,
        meta_dir,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_deb822_then_one_line_sources() {
        let d = tempfile::tempdir().unwrap();
        let sl = d.path().join("sources.list.d");
        fs::create_dir(&sl).unwrap();
        fs::write(sl.join("a.sources"), "Types: deb\nSuites: trixie\n").unwrap();
        fs::write(sl.join("b.list"), "deb http://x bookworm main\n").unwrap();
        assert!(host_sources(d.path(), "bookworm").is_err());
        fs::write(
            d.path().join("sources.list"),
            "# deb http://x bookworm main\ndeb http://m/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_sources(d.path(), "bookworm").unwrap(),
            d.path().join("sources.list")
        );
        fs::write(
            sl.join("c.sources"),
            "Types: deb\nSuites: bookworm bookworm-updates\n",
        )
        .unwrap();
        assert_eq!(
            host_sources(d.path(), "bookworm").unwrap(),
            sl.join("c.sources")
        );
        assert!(host_sources(d.path(), "bookworm-u").is_err());
    }

    #[test]
    fn cache_completeness_follows_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("s.sources");
        fs::write(&src, "Suites: bookworm\n").unwrap();
        let cache = Cache::new(&d.path().join("cache"), &src, "bookworm").unwrap();
        let lock = Lock::from_dpkg_query(
            "dpkg\t1.21.22\nlibgmp10\t2:6.2.1+dfsg1-1.1\n",
            "bookworm",
            "amd64",
            "x",
            0,
        )
        .unwrap();
        assert!(!cache.complete_for(&lock).unwrap());
        fs::write(cache.archives.join("dpkg_1.21.22_amd64.deb"), "").unwrap();
        fs::write(
            cache
                .archives
                .join("libgmp10_2%3a6.2.1+dfsg1-1.1_amd64.deb"),
            "",
        )
        .unwrap();
        assert!(!cache.complete_for(&lock).unwrap(), "lists still missing");
        fs::write(
            cache
                .lists
                .join("deb_dists_bookworm_main_binary-amd64_Packages.lz4"),
            "",
        )
        .unwrap();
        assert!(cache.complete_for(&lock).unwrap());
        let mut newer = lock.clone();
        newer.packages.insert("dpkg".into(), "1.21.23".into());
        assert!(!cache.complete_for(&newer).unwrap());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}

/// End-to-end runs of post-processing and commit on synthetic Debian-like
/// trees (no mmdebstrap needed), checked with the real `ostree` CLI.
#[cfg(test)]
mod synthetic {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::process::Command;

    const MANIFEST: &str = r#"
name = "testos"
stream = "testing"
version-prefix = "7"
ref = "testos/x86_64/testing"
overlay = "overlay"
units = ["units/a.service"]
enable = ["a.service", "b.service"]
kernel-arguments = ["console=ttyS0", "quiet"]
[debian]
suite = "bookworm"
packages = ["systemd"]
"#;

    /// A config dir with manifest, lock, one unit and an overlay.
    fn config(dir: &Path) -> (Manifest, Lock) {
        fs::create_dir_all(dir.join("units")).unwrap();
        fs::create_dir_all(dir.join("overlay/etc")).unwrap();
        fs::create_dir_all(dir.join("overlay/lib/extra")).unwrap();
        fs::write(dir.join("overlay/etc/motd"), "hello\n").unwrap();
        fs::write(dir.join("overlay/lib/extra/x.conf"), "x\n").unwrap();
        fs::write(
            dir.join("units/a.service"),
            "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias=aa.service\n",
        )
        .unwrap();
        fs::write(dir.join("manifest.toml"), MANIFEST).unwrap();
        let m = Manifest::load(dir).unwrap();
        let lock = Lock::from_dpkg_query(
            "dpkg\t1.21.22\nsystemd\t252.39-1~deb12u1\n",
            "bookworm",
            "amd64",
            &m.package_inputs_digest(),
            1_795_651_200,
        )
        .unwrap();
        fs::write(dir.join("lock.toml"), lock.to_toml()).unwrap();
        (m, lock)
    }

    fn file(root: &Path, rel: &str, data: &str, mode: u32) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// What mmdebstrap leaves, in miniature. `reverse` creates entries in
    /// the opposite order, to show the result does not depend on it.
    fn debian_tree(root: &Path, kernel_byte: &str, reverse: bool) {
        let mut steps: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| file(root, "usr/bin/true", "#!/bin/sh\n", 0o755)),
            Box::new(|| file(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)),
            Box::new(|| file(root, "etc/shadow", "root:*:20000::::::\n", 0o640)),
            Box::new(|| file(root, "etc/ssh/ssh_host_ed25519_key", "secret", 0o600)),
            Box::new(|| file(root, "etc/ssh/sshd_config", "Port 22\n", 0o644)),
            Box::new(|| file(root, "etc/hostname", "buildhost\n", 0o644)),
            Box::new(|| file(root, "etc/resolv.conf", "nameserver 10.0.0.1\n", 0o644)),
            Box::new(|| file(root, "etc/machine-id", "", 0o444)),
            Box::new(|| {
                file(
                    root,
                    "etc/apt/apt.conf.d/99mmdebstrap",
                    "Acquire::x;\n",
                    0o644,
                )
            }),
            Box::new(|| file(root, "boot/vmlinuz-6.1.0-test", kernel_byte, 0o644)),
            Box::new(|| file(root, "boot/initrd.img-6.1.0-test", "initrd", 0o644)),
            Box::new(|| file(root, "boot/config-6.1.0-test", "CONFIG_X=y\n", 0o644)),
            Box::new(|| {
                file(
                    root,
                    "usr/lib/modules/6.1.0-test/kernel/virtio.ko",
                    "ko",
                    0o644,
                )
            }),
            Box::new(|| file(root, "var/lib/dpkg/status", "Package: dpkg\n", 0o644)),
            Box::new(|| file(root, "var/log/dpkg.log", "noise", 0o644)),
            Box::new(|| file(root, "root/.bashrc", "PS1=#\n", 0o644)),
            Box::new(|| fs::create_dir_all(root.join("var/cache/apt")).unwrap()),
            Box::new(|| fs::create_dir_all(root.join("usr/local/bin")).unwrap()),
            Box::new(|| fs::create_dir_all(root.join("home")).unwrap()),
            Box::new(|| fs::create_dir_all(root.join("dev/pts")).unwrap()),
            Box::new(|| {
                fs::create_dir_all(root.join("tmp")).unwrap();
                fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
            }),
            Box::new(|| {
                fs::create_dir_all(root.join("var")).unwrap();
                symlink("/run", root.join("var/run")).unwrap()
            }),
            Box::new(|| symlink("usr/lib", root.join("lib")).unwrap()),
            Box::new(|| symlink("boot/vmlinuz-6.1.0-test", root.join("vmlinuz")).unwrap()),
            Box::new(|| {
                file(
                    root,
                    "usr/lib/systemd/system/b.service",
                    "[Unit]\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target sockets.target\nRequiredBy=x.target\n",
                    0o644,
                )
            }),
        ];
        if reverse {
            // Parents first still: directories are created on demand.
            steps.reverse();
        }
        fs::create_dir_all(root).unwrap();
        for s in steps {
            s();
        }
    }

    fn opts_for(m: &Manifest) -> postprocess::Options {
        postprocess::Options {
            overlay: m.overlay.clone(),
            units: m.units.clone(),
            enable: m.enable.clone(),
            kernel_arguments: m.kernel_arguments.clone(),
            ferrocore_binary: None,
            source_date_epoch: 0,
        }
    }

    fn link(p: PathBuf) -> String {
        fs::read_link(p).unwrap().display().to_string()
    }

    /// A minimal static ELF64: one PT_LOAD program header, no PT_INTERP.
    fn static_elf() -> Vec<u8> {
        let mut d = vec![0u8; 64 + 56];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20] = 64;
        d[0x36] = 56;
        d[0x38] = 1;
        d[64] = 1;
        d
    }

    #[test]
    fn the_ferrocore_binary_becomes_init_of_our_initramfs() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = config(&d.path().join("os"));
        let root = d.path().join("tree");
        debian_tree(&root, "kernel", false);
        let mut dep = String::new();
        for name in ferrocore_initramfs::modules::DEFAULT_MODULES {
            let rel = format!("kernel/{name}.ko");
            file(
                &root,
                &format!("usr/lib/modules/6.1.0-test/{rel}"),
                name,
                0o644,
            );
            dep.push_str(&format!("{rel}:\n"));
        }
        file(&root, "usr/lib/modules/6.1.0-test/modules.dep", &dep, 0o644);
        let bin = d.path().join("ferrocore");
        fs::write(&bin, static_elf()).unwrap();
        let opts = postprocess::Options {
            ferrocore_binary: Some(bin),
            source_date_epoch: 1_700_000_000,
            ..opts_for(&m)
        };
        let layout = postprocess::postprocess(&root, &opts).unwrap();
        assert!(layout.has_initramfs);
        assert_eq!(
            fs::read(root.join("usr/bin/ferrocore")).unwrap(),
            static_elf()
        );
        let img = root.join("usr/lib/modules/6.1.0-test/initramfs.img");
        // Debian's initrd ("initrd") was replaced by a gzipped newc archive.
        let listing = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc '{}' | cpio -t --quiet", img.display()))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        for want in [
            "init",
            ferrocore_initramfs::MODULE_LIST,
            "usr/lib/modules/6.1.0-test/kernel/qemu_fw_cfg.ko",
        ] {
            assert!(listing.lines().any(|l| l == want), "{want}: {listing}");
        }
    }

    #[test]
    fn layout_matches_the_sysroot_contract() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = config(&d.path().join("os"));
        let root = d.path().join("tree");
        debian_tree(&root, "kernel", false);
        let layout = postprocess::postprocess(&root, &opts_for(&m)).unwrap();
        assert_eq!(layout.kernel_version, "6.1.0-test");
        assert!(layout.has_initramfs);
        assert_eq!(
            layout.dropped_var_files, 2,
            "var/log/dpkg.log and root/.bashrc"
        );

        let r = |p: &str| root.join(p);
        assert!(!r("etc").exists());
        assert_eq!(fs::read_to_string(r("usr/etc/motd")).unwrap(), "hello\n");
        assert!(
            r("usr/lib/extra/x.conf").is_file(),
            "overlay merged through /lib"
        );
        assert_eq!(link(r("lib")), "usr/lib");
        for gone in [
            "usr/etc/hostname",
            "usr/etc/resolv.conf",
            "usr/etc/machine-id",
            "usr/etc/apt/apt.conf.d/99mmdebstrap",
        ] {
            assert!(!r(gone).exists(), "{gone}");
        }
        assert!(!r("usr/etc/ssh/ssh_host_ed25519_key").exists());
        assert!(r("usr/etc/ssh/sshd_config").is_file());
        let kdir = r("usr/lib/modules/6.1.0-test");
        for f in ["vmlinuz", "initramfs.img", "config", "kernel/virtio.ko"] {
            assert!(kdir.join(f).is_file(), "{f}");
        }
        assert_eq!(fs::read_dir(r("boot")).unwrap().count(), 0);
        assert!(!r("vmlinuz").exists() && fs::symlink_metadata(r("vmlinuz")).is_err());
        assert_eq!(fs::read_dir(r("var")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(r("dev")).unwrap().count(), 0);
        assert!(r("usr/lib/sysimage/dpkg/status").is_file());
        assert_eq!(link(r("home")), "var/home");
        assert_eq!(link(r("root")), "var/roothome");
        assert_eq!(link(r("usr/local")), "../var/usrlocal");
        assert_eq!(link(r("tmp")), "sysroot/tmp");
        assert_eq!(link(r("ostree")), "sysroot/ostree");
        assert!(r("sysroot").is_dir());

        let tmpfiles = fs::read_to_string(r(postprocess::TMPFILES_CONF)).unwrap();
        for line in [
            "L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg",
            "L /var/run - - - - /run",
            "d /var/cache 0755 0 0 -",
            "d /var/cache/apt 0755 0 0 -",
            "d /var/home 0755 0 0 -",
            "d /var/roothome 0700 0 0 -",
            "d /var/usrlocal/bin 0755 0 0 -",
        ] {
            assert!(tmpfiles.lines().any(|l| l == line), "{line} in\n{tmpfiles}");
        }
        assert!(!tmpfiles.contains("dpkg.log"));
        assert_eq!(
            layout.tmpfiles_entries,
            tmpfiles.lines().filter(|l| !l.starts_with('#')).count()
        );

        let sys = r("usr/etc/systemd/system");
        assert_eq!(
            link(sys.join("multi-user.target.wants/a.service")),
            "/usr/lib/systemd/system/a.service"
        );
        assert_eq!(
            link(sys.join("aa.service")),
            "/usr/lib/systemd/system/a.service"
        );
        assert_eq!(
            link(sys.join("sockets.target.wants/b.service")),
            "/usr/lib/systemd/system/b.service"
        );
        assert_eq!(
            link(sys.join("x.target.requires/b.service")),
            "/usr/lib/systemd/system/b.service"
        );
        assert_eq!(
            fs::read_to_string(r(postprocess::KARGS_FILE)).unwrap(),
            "kargs = [\"console=ttyS0\", \"quiet\"]\n"
        );
    }

    #[test]
    fn bad_trees_are_refused_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = config(&d.path().join("os"));
        let run = |name: &str, edit: &dyn Fn(&Path), opts: &postprocess::Options| {
            let root = d.path().join(name);
            debian_tree(&root, "k", false);
            edit(&root);
            postprocess::postprocess(&root, opts)
                .unwrap_err()
                .to_string()
        };
        let o = opts_for(&m);
        let e = run(
            "nokernel",
            &|r| fs::remove_file(r.join("boot/vmlinuz-6.1.0-test")).unwrap(),
            &o,
        );
        assert!(e.contains("no kernel"), "{e}");
        let e = run(
            "two",
            &|r| fs::write(r.join("boot/vmlinuz-6.2"), "").unwrap(),
            &o,
        );
        assert!(e.contains("6.1.0-test, 6.2"), "{e}");
        let e = run(
            "usretc",
            &|r| fs::create_dir_all(r.join("usr/etc")).unwrap(),
            &o,
        );
        assert!(e.contains("usr/etc"), "{e}");
        let mut o2 = o.clone();
        o2.enable.push("missing.service".into());
        let e = run("missing", &|_| {}, &o2);
        assert!(e.contains("missing.service not found"), "{e}");
        let e = run(
            "noinstall",
            &|r| fs::write(r.join("usr/lib/systemd/system/b.service"), "[Service]\n").unwrap(),
            &o,
        );
        assert!(e.contains("b.service") && e.contains("[Install]"), "{e}");
    }

    #[test]
    fn stale_lock_and_missing_binary_stop_before_composing() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("os");
        config(&cfg);
        let opts = BuildOptions::new(cfg.clone(), d.path().join("repo"), d.path().join("cache"));
        let edited = MANIFEST.replace("[\"systemd\"]", "[\"systemd\", \"podman\"]");
        fs::write(cfg.join("manifest.toml"), edited).unwrap();
        let e = build(&opts).unwrap_err().to_string();
        assert!(
            e.contains("lock.toml") && e.contains("ferrocore build lock"),
            "{e}"
        );

        config(&cfg);
        let wants_binary = format!("install-ferrocore = true\n{MANIFEST}");
        fs::write(cfg.join("manifest.toml"), wants_binary).unwrap();
        let e = build(&opts).unwrap_err().to_string();
        assert!(e.contains("install-ferrocore"), "{e}");
        assert!(!d.path().join("repo").exists() && !d.path().join("cache/rootfs").exists());
        // The binary becomes the initramfs's /init: a dynamic one is refused
        // before anything is installed.
        let dynamic = BuildOptions {
            ferrocore_binary: Some("/bin/ls".into()),
            ..opts.clone()
        };
        let e = build(&dynamic).unwrap_err().to_string();
        assert!(e.contains("/bin/ls: dynamically linked"), "{e}");
        assert!(!d.path().join("cache/rootfs").exists());
    }

    fn ostree(args: &[&str]) -> String {
        let out = Command::new("/usr/bin/ostree").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ostree {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn compose(d: &Path, name: &str, kernel: &str, reverse: bool, repo: &Path) -> BuildOutcome {
        let cfg = d.join("os");
        let (m, lock) = config(&cfg);
        let root = d.join(name);
        debian_tree(&root, kernel, reverse);
        let layout = postprocess::postprocess(&root, &opts_for(&m)).unwrap();
        let mut opts = BuildOptions::new(cfg, repo.to_path_buf(), d.join("cache"));
        opts.out_dir = Some(d.join(format!("builds-{name}")));
        commit_tree(&root, &m, &lock, &m.ostree_ref, layout, false, &opts).unwrap()
    }

    #[test]
    fn same_inputs_same_commit_and_real_ostree_accepts_it() {
        let d = tempfile::tempdir().unwrap();
        let a = compose(d.path(), "a", "kernel", false, &d.path().join("repo-a"));
        let b = compose(d.path(), "b", "kernel", true, &d.path().join("repo-b"));
        assert_eq!(a.commit, b.commit, "reproducible");
        assert_eq!(a.version, "7.20261126.2.0");
        let c = compose(d.path(), "c", "kernel!", false, &d.path().join("repo-c"));
        assert_ne!(a.content_checksum, c.content_checksum);

        let repo = d.path().join("repo-a");
        let rs = repo.to_str().unwrap();
        ostree(&["fsck", "--repo", rs]);
        for (key, want) in [
            ("ostree.bootable", "true"),
            ("ostree.linux", "'6.1.0-test'"),
            ("version", "'7.20261126.2.0'"),
        ] {
            let arg = format!("--print-metadata-key={key}");
            let got = ostree(&["show", "--repo", rs, &arg, "testos/x86_64/testing"]);
            assert_eq!(got.trim(), want, "{key}");
        }
        let ls = ostree(&[
            "ls",
            "--repo",
            rs,
            "-R",
            "testos/x86_64/testing",
            "/usr/lib/modules",
        ]);
        assert!(ls.contains("/usr/lib/modules/6.1.0-test/vmlinuz"), "{ls}");
        let var = ostree(&["ls", "--repo", rs, "testos/x86_64/testing", "/var"]);
        assert_eq!(var.lines().count(), 1, "only /var itself: {var}");

        // A rebuild on top: next version, same content, parent recorded.
        let again = compose(d.path(), "a2", "kernel", false, &repo);
        assert_eq!(again.version, "7.20261126.2.1");
        assert_eq!(again.content_checksum, a.content_checksum);
        let log = ostree(&["log", "--repo", rs, "testos/x86_64/testing"]);
        assert!(
            log.contains(&a.commit) && log.contains(&again.commit),
            "{log}"
        );

        let meta: crate::BuildMeta =
            serde_json::from_slice(&fs::read(again.meta_dir.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta.ostree_commit, again.commit);
        assert_eq!(meta.kernel_version, "6.1.0-test");
        assert_eq!(meta.artifacts["kernel"].size, 6);
        assert_eq!(
            meta.artifacts["kernel"].sha256,
            hex::encode(Sha256::digest(b"kernel"))
        );
        assert!(
            meta.artifacts.contains_key("initramfs") && meta.artifacts.contains_key("lockfile")
        );
    }
}
