//! `ferrocore build image`: a bootable GPT disk image from a commit, laid
//! out like Fedora CoreOS and booted by SeaBIOS + GRUB (i386-pc).
//!
//! Data flow: the commit is pulled from the compose repository into the
//! bare repository of a fresh sysroot in a scratch directory, deployed with
//! the `sysroot` crate (stateroot `ferrocore`, GRUB backend, the image's
//! kernel arguments), then the sysroot's `boot/` becomes the boot file
//! system and the rest the root file system:
//!
//! | part | name         | content                                              |
//! |------|--------------|------------------------------------------------------|
//! | 1    | `BIOS-BOOT`  | GRUB `core.img` (1 MiB)                              |
//! | 2    | `EFI-SYSTEM` | empty FAT32 (127 MiB), reserved for a UEFI loader    |
//! | 3    | `boot`       | ext4 `boot`: `loader -> loader.N`, kernels, `grub/`  |
//! | 4    | `root`       | ext4 `root`: `ostree/{repo,deploy}`, empty `boot/`   |
//!
//! No loop device and no mount: `sgdisk` partitions a sparse file,
//! `mkfs.ext4 -E offset= -d TREE` and `mkfs.vfat --offset` write the file
//! systems in place, and GRUB's `boot.img`/`core.img` are written and
//! patched here the way `grub-bios-setup` would. Every identifier (disk and
//! partition GUIDs, file system UUIDs, ext4 hash seeds, the FAT volume id)
//! is derived from [`ImageOptions::seed`], and file times are clamped to
//! [`ImageOptions::source_date_epoch`], so the same inputs give the same
//! layout and identities.

use crate::meta::{Artifact, BuildMeta};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use sysroot::{BootedSource, DeployOptions, KernelArgs, Sysroot};

/// Stateroot of every ferrocore image.
pub const STATEROOT: &str = "ferrocore";

/// Default virtual size of an image (sparse).
pub const DEFAULT_SIZE: u64 = 4 << 30;

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// Partition starts and sizes in MiB (1 MiB alignment, as FCOS).
const BIOS_BOOT: (u64, u64) = (1, 1);
const ESP: (u64, u64) = (2, 127);
const BOOT: (u64, u64) = (129, 384);
const ROOT_START: u64 = 513;

/// GPT partition type GUIDs.
const TYPE_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const TYPE_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// Modules linked into `core.img`: enough to find the boot partition by
/// label and run `/grub/grub.cfg` and the generated menu without loading
/// anything from disk.
const GRUB_MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "ext2",
    "search",
    "search_label",
    "normal",
    "configfile",
    "linux",
    "loadenv",
    "test",
    "echo",
    "serial",
    "terminal",
    "gzio",
];
const GRUB_I386_PC: &str = "/usr/lib/grub/i386-pc";

/// The platform an image is for (`ignition.platform.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// QEMU: Ignition reads its config from fw_cfg.
    Qemu,
    /// Bare metal.
    Metal,
}

impl Platform {
    /// Parses `qemu` or `metal`.
    pub fn parse(s: &str) -> Result<Platform> {
        match s {
            "qemu" => Ok(Platform::Qemu),
            "metal" => Ok(Platform::Metal),
            other => Err(Error::Image(format!(
                "platform: unsupported value '{other}' (supported: qemu, metal)"
            ))),
        }
    }

    /// The `ignition.platform.id` value.
    pub fn id(self) -> &'static str {
        match self {
            Platform::Qemu => "qemu",
            Platform::Metal => "metal",
        }
    }
}

/// Inputs of [`build_image`].
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Repository holding the commit (the compose output, any mode).
    pub repo: PathBuf,
    /// Commit checksum (hex).
    pub commit: String,
    /// Ref the deployment follows: its origin is `REMOTE:REF`.
    pub ostree_ref: String,
    /// Remote name in the origin refspec (the update agent pulls from it).
    pub remote: String,
    /// The OS's default kernel arguments (the manifest's).
    pub kernel_arguments: Vec<String>,
    /// Platform, giving `ignition.platform.id`.
    pub platform: Platform,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Directory receiving `NAME.raw` and `NAME.qcow2`.
    pub out_dir: PathBuf,
    /// File name stem of the outputs.
    pub name: String,
    /// Source of every UUID/GUID/hash seed in the image; default: the commit.
    pub seed: String,
    /// No file in the image is newer than this (the commit's timestamp).
    pub source_date_epoch: u64,
    /// Boot tries a new default deployment gets before the boot loader falls
    /// back to the previous one (automatic rollback); 0 turns counting off.
    /// Stored as `sysroot.boot-counting-tries` in the image's repo config, so
    /// it applies to updates, never to the image's own first deployment.
    pub boot_tries: u32,
}

/// Boot tries of [`ImageOptions::boot_tries`] by default, as greenboot gives
/// Fedora's image-based systems.
pub const DEFAULT_BOOT_TRIES: u32 = 3;

/// What [`build_image`] produced.
#[derive(Debug, Clone)]
pub struct ImageOutcome {
    /// The raw (sparse) disk.
    pub raw: PathBuf,
    /// The qcow2 conversion of it.
    pub qcow2: PathBuf,
    /// Bytes allocated by the raw file (it is sparse).
    pub raw_allocated: u64,
    /// The kernel command line of the deployment's boot entry.
    pub kernel_cmdline: String,
}

/// A deterministic RFC 4122 (version 4 layout) UUID for `what`.
pub fn derived_uuid(seed: &str, what: &str) -> String {
    let h = Sha256::digest(format!("ferrocore-image\0{seed}\0{what}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// The Debian package providing a tool, for error messages.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "sgdisk" => "gdisk",
        "mkfs.ext4" | "chattr" => "e2fsprogs",
        "mkfs.vfat" => "dosfstools",
        "grub-mkimage" => "grub-common and grub-pc-bin",
        "qemu-img" => "qemu-utils",
        _ => "coreutils/findutils",
    }
}

/// Runs a tool; failures carry the command and its output.
fn run(cmd: &mut Command) -> Result<String> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        Error::Image(format!(
            "cannot run {tool} ({e}); install the Debian package {}",
            package_of(&tool)
        ))
    })?;
    if !out.status.success() {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(Error::Image(format!(
            "{tool} {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sysroot_err(what: &str) -> impl FnOnce(sysroot::Error) -> Error + '_ {
    move |e| Error::Image(format!("{what}: {e}"))
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    crate::fsutil::write_atomic(path, data, mode)
}

/// The scratch directory, removed on drop even when the build failed.
/// Deployment directories carry the immutable attribute, which has to go
/// first.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let deploy = self
            .0
            .join("root/ostree/deploy")
            .join(STATEROOT)
            .join("deploy");
        if let Ok(rd) = fs::read_dir(&deploy) {
            for e in rd.flatten() {
                let _ = Command::new("chattr").arg("-i").arg(e.path()).output();
            }
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Makes the sysroot tree of an image in the new directory `root`: the
/// commit deployed, `/boot` populated (menu, static GRUB configuration,
/// empty grubenv, first-boot stamp, GRUB modules). [`build_image`] does this
/// and [`build_image_from_sysroot`] assembles a tree changed in between
/// (more deployments for rollback tests, say).
pub fn make_sysroot(opts: &ImageOptions, root: &Path) -> Result<()> {
    if fs::symlink_metadata(root).is_ok() {
        return Err(Error::Image(format!(
            "{}: the sysroot directory must not exist yet",
            root.display()
        )));
    }
    Sysroot::init_fs(root).map_err(sysroot_err("creating the sysroot"))?;
    {
        let mut repo = ostree_repo::Repo::open(&root.join("ostree/repo"))?;
        let mut cfg = repo.config().clone();
        cfg.set("sysroot", "bootloader", "grub2");
        repo.write_config(cfg)?;
    }
    let src = ostree_repo::Repo::open(&opts.repo)?;
    let dst = ostree_repo::Repo::open(&root.join("ostree/repo"))?;
    let commit = ostree_repo::object::from_hex(&opts.commit)
        .ok_or_else(|| Error::Image(format!("commit: not a checksum: '{}'", opts.commit)))?;
    ostree_repo::pull::pull_local(
        &src,
        &dst,
        std::slice::from_ref(&opts.commit),
        &ostree_repo::pull::PullLocalOptions::default(),
    )?;
    // What `ostree pull REMOTE REF` would have left: the agent compares
    // against it.
    dst.set_ref(Some(&opts.remote), &opts.ostree_ref, Some(&commit))?;

    let mut sr =
        Sysroot::load_with(root, BootedSource::None).map_err(sysroot_err("loading the sysroot"))?;
    sr.os_init(STATEROOT)
        .map_err(sysroot_err("creating the stateroot"))?;
    let mut kargs = KernelArgs::parse(&opts.kernel_arguments.join(" "));
    kargs.replace("root=LABEL=root");
    kargs.replace(&format!("ignition.platform.id={}", opts.platform.id()));
    let d = sr
        .deploy(
            &opts.commit,
            &DeployOptions {
                osname: Some(STATEROOT.into()),
                refspec: Some(format!("{}:{}", opts.remote, opts.ostree_ref)),
                kargs_override: Some(kargs),
                ..Default::default()
            },
        )
        .map_err(sysroot_err("deploying the commit"))?;
    if opts.boot_tries > 0 {
        // After the deploy: the image's own deployment is not on probation.
        let mut repo = ostree_repo::Repo::open(&root.join("ostree/repo"))?;
        let mut cfg = repo.config().clone();
        cfg.set(
            "sysroot",
            "boot-counting-tries",
            &opts.boot_tries.to_string(),
        );
        repo.write_config(cfg)?;
    }
    let dep = sr.deployment_dir(&d);
    // "uninitialized" (not empty) makes systemd treat the first boot as a first
    // boot: it generates the id and applies presets, which is how the units
    // Ignition enabled (20-ignition.preset) get enabled.
    write(&dep.join("etc/machine-id"), b"uninitialized\n", 0o444)?;
    let fstab = "# ferrocore image: the boot file system (kernels, boot loader menu).\n\
                 # The sysroot code updates it in place: keep it read-write.\n\
                 LABEL=boot /boot ext4 defaults 1 2\n";
    write(&dep.join("etc/fstab"), fstab.as_bytes(), 0o644)?;

    let boot = root.join("boot");
    write(&boot.join("ignition.firstboot"), b"", 0o644)?;
    write(
        &boot.join("grub/grub.cfg"),
        sysroot::grub::static_config(1).as_bytes(),
        0o644,
    )?;
    let envp = boot.join(sysroot::grub::GRUBENV);
    if !envp.exists() {
        // GRUB's save_env can only rewrite an existing block.
        sysroot::grub::GrubEnv::default()
            .store(&envp)
            .map_err(sysroot_err("writing the GRUB environment"))?;
    }
    // Modules for GRUB to load on demand (what grub-install would copy).
    let moddir = boot.join("grub/i386-pc");
    fs::create_dir_all(&moddir).map_err(|e| Error::io(&moddir, e))?;
    let src_mods = Path::new(GRUB_I386_PC);
    for e in fs::read_dir(src_mods).map_err(|e| Error::io(src_mods, e))? {
        let e = e.map_err(|e| Error::io(src_mods, e))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(".mod") || n.ends_with(".lst") {
            fs::copy(e.path(), moddir.join(&n)).map_err(|err| Error::io(&e.path(), err))?;
        }
    }
    Ok(())
}

/// The kernel command line of the default entry of the sysroot at `root`.
fn default_cmdline(root: &Path) -> Result<String> {
    let sr =
        Sysroot::load_with(root, BootedSource::None).map_err(sysroot_err("loading the sysroot"))?;
    let d = sr.deployments().first().ok_or_else(|| {
        Error::Image(format!("{}: the sysroot has no deployment", root.display()))
    })?;
    let mut cmdline = d.kargs.clone();
    cmdline.append(&format!("ostree={}", d.bootlink(sr.bootversion())));
    Ok(cmdline.to_string())
}

/// Sets every mtime in `tree` newer than `epoch` to `epoch`.
fn clamp_times(tree: &Path, epoch: u64) -> Result<()> {
    run(Command::new("find")
        .arg(tree)
        .arg("-newermt")
        .arg(format!("@{epoch}"))
        .args(["-exec", "touch", "-h", "-d"])
        .arg(format!("@{epoch}"))
        .args(["{}", "+"]))?;
    Ok(())
}

/// Last sector of partition `n` per `sgdisk -i`.
fn last_sector(img: &Path, n: u32) -> Result<u64> {
    let out = run(Command::new("sgdisk").arg(format!("-i{n}")).arg(img))?;
    out.lines()
        .find_map(|l| l.strip_prefix("Last sector: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Image(format!("sgdisk -i{n}: no 'Last sector' in:\n{out}")))
}

fn mkfs_ext4(
    img: &Path,
    opts: &ImageOptions,
    label: &str,
    tree: &Path,
    offset: u64,
    size: u64,
) -> Result<()> {
    let ext = format!(
        "offset={offset},root_owner=0:0,hash_seed={},nodiscard",
        derived_uuid(&opts.seed, &format!("{label}-hash-seed"))
    );
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-U"])
        .arg(derived_uuid(&opts.seed, &format!("{label}-fs")))
        .args(["-E", &ext, "-d"])
        .arg(tree)
        .arg(img)
        .arg(format!("{}k", size / 1024))
        .env("SOURCE_DATE_EPOCH", opts.source_date_epoch.to_string())
        .env("E2FSPROGS_FAKE_TIME", opts.source_date_epoch.to_string()))?;
    clamp_ctimes(img, offset, opts.source_date_epoch)
}

/// Inodes in use per `dumpe2fs` (the complement of each group's "Free
/// inodes" ranges).
fn used_inodes(dumpe2fs: &str) -> Result<Vec<u64>> {
    let field = |name: &str| {
        dumpe2fs
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| Error::Image(format!("dumpe2fs: no '{name}' line")))
    };
    let per_group = field("Inodes per group:")?;
    let count = field("Inode count:")?;
    let mut used = Vec::new();
    let groups = dumpe2fs
        .lines()
        // Indented: per group; the unindented one is the superblock's count.
        .filter_map(|l| l.strip_prefix("  Free inodes:"));
    for (g, ranges) in groups.enumerate() {
        let first = g as u64 * per_group + 1;
        let mut free = vec![false; per_group as usize];
        for r in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let (a, b) = a
                .parse::<u64>()
                .ok()
                .zip(b.parse::<u64>().ok())
                .filter(|(a, b)| first <= *a && a <= b && *b < first + per_group)
                .ok_or_else(|| Error::Image(format!("dumpe2fs: bad free inode range '{r}'")))?;
            for i in a..=b {
                free[(i - first) as usize] = true;
            }
        }
        used.extend((first..first + per_group).filter(|i| !free[(i - first) as usize]));
    }
    if used.last().is_some_and(|l| *l > count) {
        return Err(Error::Image("dumpe2fs: more groups than inodes".into()));
    }
    Ok(used)
}

/// mke2fs -d copies each inode's ctime and atime from the staging tree:
/// the time of the build, which e2fsprogs 1.47.0 does not clamp. Set both
/// to `epoch` afterwards so that equal inputs give equal images.
fn clamp_ctimes(img: &Path, offset: u64, epoch: u64) -> Result<()> {
    let dev = format!("{}?offset={offset}", img.display());
    let info = run(Command::new("dumpe2fs").arg(&dev))?;
    let mut script = String::new();
    // 1 and 3-10 are reserved inodes, not files of the tree.
    for i in used_inodes(&info)?
        .into_iter()
        .filter(|i| *i == 2 || *i >= 11)
    {
        // atime too: reading the staging tree for mke2fs updated some.
        script.push_str(&format!(
            "sif <{i}> ctime @{epoch}\nsif <{i}> atime @{epoch}\n"
        ));
    }
    let path = img.with_extension(format!("ctime-{offset}.debugfs"));
    write(&path, script.as_bytes(), 0o600)?;
    // The fake time also keeps the superblock's write time at the epoch.
    let r = run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&path)
        .arg(&dev)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string()));
    let _ = fs::remove_file(&path);
    r.map(|_| ())
}

/// Writes GRUB's `boot.img` into the MBR (keeping the partition table)
/// and `core.img` into the BIOS boot partition, and patches the sector
/// pointers `grub-bios-setup` would: `boot.img`'s `kernel_sector` (u64 at
/// 0x5c) and the blocklist at the end of `diskboot.img`, `core.img`'s first
/// sector (start u64 at 0x1f4, length u16 at 0x1fc).
fn install_grub_bios(img: &Path, core: &Path) -> Result<()> {
    let bootimg = Path::new(GRUB_I386_PC).join("boot.img");
    let boot = fs::read(&bootimg).map_err(|e| Error::io(&bootimg, e))?;
    let mut core_data = fs::read(core).map_err(|e| Error::io(core, e))?;
    if boot.len() != SECTOR as usize || core_data.len() < SECTOR as usize {
        return Err(Error::Image(format!(
            "{} or {}: unexpected size",
            bootimg.display(),
            core.display()
        )));
    }
    let core_lba = BIOS_BOOT.0 * MIB / SECTOR;
    let sectors = (core_data.len() as u64).div_ceil(SECTOR);
    if sectors > BIOS_BOOT.1 * MIB / SECTOR {
        return Err(Error::Image(format!(
            "core.img is {} bytes: does not fit the {} MiB BIOS boot partition",
            core_data.len(),
            BIOS_BOOT.1
        )));
    }
    core_data[0x1f4..0x1fc].copy_from_slice(&(core_lba + 1).to_le_bytes());
    core_data[0x1fc..0x1fe].copy_from_slice(&u16::try_from(sectors - 1).unwrap_or(0).to_le_bytes());
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .map_err(|e| Error::io(img, e))?;
    let mut mbr = [0u8; SECTOR as usize];
    f.read_exact(&mut mbr).map_err(|e| Error::io(img, e))?;
    mbr[..440].copy_from_slice(&boot[..440]);
    mbr[0x5c..0x64].copy_from_slice(&core_lba.to_le_bytes());
    f.seek(SeekFrom::Start(0)).map_err(|e| Error::io(img, e))?;
    f.write_all(&mbr).map_err(|e| Error::io(img, e))?;
    f.seek(SeekFrom::Start(core_lba * SECTOR))
        .map_err(|e| Error::io(img, e))?;
    f.write_all(&core_data).map_err(|e| Error::io(img, e))?;
    f.sync_all().map_err(|e| Error::io(img, e))
}

fn check_options(opts: &ImageOptions) -> Result<()> {
    let min = (ROOT_START + 512) * MIB;
    if opts.size < min || !opts.size.is_multiple_of(MIB) {
        return Err(Error::Image(format!(
            "size: {} bytes; must be a multiple of 1 MiB and at least {} MiB",
            opts.size,
            min / MIB
        )));
    }
    if opts.name.is_empty() || opts.name.contains('/') {
        return Err(Error::Image(format!(
            "name: invalid file name '{}'",
            opts.name
        )));
    }
    Ok(())
}

fn scratch_for(opts: &ImageOptions) -> Result<Scratch> {
    fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let scratch = Scratch(opts.out_dir.join(format!(".{}.image-tmp", opts.name)));
    if scratch.0.exists() {
        drop(Scratch(scratch.0.clone()));
    }
    fs::create_dir_all(&scratch.0).map_err(|e| Error::io(&scratch.0, e))?;
    Ok(scratch)
}

/// Builds `OUT/NAME.raw` and `OUT/NAME.qcow2` from the commit.
pub fn build_image(opts: &ImageOptions) -> Result<ImageOutcome> {
    check_options(opts)?;
    let scratch = scratch_for(opts)?;
    let root = scratch.0.join("root");
    make_sysroot(opts, &root)?;
    assemble(opts, &root, &scratch.0)
}

/// Builds `OUT/NAME.raw` and `OUT/NAME.qcow2` from a sysroot tree made by
/// [`make_sysroot`] and changed since. File times in the tree are clamped;
/// its `boot/` is moved out while the file systems are made and put back.
pub fn build_image_from_sysroot(opts: &ImageOptions, sysroot: &Path) -> Result<ImageOutcome> {
    check_options(opts)?;
    let scratch = scratch_for(opts)?;
    assemble(opts, sysroot, &scratch.0)
}

fn assemble(opts: &ImageOptions, root: &Path, scratch: &Path) -> Result<ImageOutcome> {
    let cmdline = default_cmdline(root)?;
    // The sysroot's boot/ becomes the boot file system; the root keeps an
    // empty boot/ as its mount point.
    let boot_tree = scratch.join("boot");
    let boot = root.join("boot");
    fs::rename(&boot, &boot_tree).map_err(|e| Error::io(&boot_tree, e))?;
    let r = fs::create_dir(&boot)
        .and_then(|()| fs::set_permissions(&boot, fs::Permissions::from_mode(0o755)))
        .map_err(|e| Error::io(&boot, e))
        .and_then(|()| assemble_trees(opts, root, &boot_tree, scratch, cmdline));
    let _ = fs::remove_dir(&boot);
    fs::rename(&boot_tree, &boot).map_err(|e| Error::io(&boot, e))?;
    r
}

fn assemble_trees(
    opts: &ImageOptions,
    root: &Path,
    boot_tree: &Path,
    scratch: &Path,
    cmdline: String,
) -> Result<ImageOutcome> {
    // Immutable deployment directories refuse new times: lift the
    // attribute for the clamp only.
    let deploy = root.join("ostree/deploy").join(STATEROOT).join("deploy");
    let mut deployments = Vec::new();
    for e in fs::read_dir(&deploy).map_err(|e| Error::io(&deploy, e))? {
        let p = e.map_err(|e| Error::io(&deploy, e))?.path();
        if p.is_dir() {
            deployments.push(p);
        }
    }
    let chattr = |flag: &str| -> Result<()> {
        for p in &deployments {
            run(Command::new("chattr").arg(flag).arg(p))?;
        }
        Ok(())
    };
    chattr("-i")?;
    for t in [root, boot_tree] {
        clamp_times(t, opts.source_date_epoch)?;
    }
    chattr("+i")?;

    let raw = opts.out_dir.join(format!("{}.raw", opts.name));
    let tmp_raw = scratch.join("disk.raw");
    File::create(&tmp_raw)
        .and_then(|f| f.set_len(opts.size))
        .map_err(|e| Error::io(&tmp_raw, e))?;
    let s = |mib: u64| mib * MIB / SECTOR;
    let part =
        |n: u32, (start, len): (u64, u64)| format!("-n{n}:{}:{}", s(start), s(start + len) - 1);
    let mut sg = Command::new("sgdisk");
    sg.arg("-o")
        .arg(part(1, BIOS_BOOT))
        .arg(format!("-t1:{TYPE_BIOS_BOOT}"))
        .arg("-c1:BIOS-BOOT")
        .arg(part(2, ESP))
        .arg(format!("-t2:{TYPE_ESP}"))
        .arg("-c2:EFI-SYSTEM")
        .arg(part(3, BOOT))
        .arg(format!("-t3:{TYPE_LINUX}"))
        .arg("-c3:boot")
        .arg(format!("-n4:{}:0", s(ROOT_START)))
        .arg(format!("-t4:{TYPE_LINUX}"))
        .arg("-c4:root")
        .arg(format!("-U{}", derived_uuid(&opts.seed, "disk")));
    for n in 1..=4 {
        sg.arg(format!(
            "-u{n}:{}",
            derived_uuid(&opts.seed, &format!("part{n}"))
        ));
    }
    run(sg.arg(&tmp_raw))?;
    let root_last = last_sector(&tmp_raw, 4)?;
    let root_size = (root_last + 1 - s(ROOT_START)) * SECTOR;

    let volid = &hex::encode(Sha256::digest(format!("{}\0esp", opts.seed).as_bytes()))[..8];
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "EFI-SYSTEM", "-i", volid, "--invariant"])
        .arg(format!("--offset={}", s(ESP.0)))
        .arg(&tmp_raw)
        .arg((ESP.1 * MIB / 1024).to_string())
        .env("SOURCE_DATE_EPOCH", opts.source_date_epoch.to_string()))?;
    mkfs_ext4(
        &tmp_raw,
        opts,
        "boot",
        boot_tree,
        BOOT.0 * MIB,
        BOOT.1 * MIB,
    )?;
    mkfs_ext4(&tmp_raw, opts, "root", root, ROOT_START * MIB, root_size)?;

    let early = scratch.join("early.cfg");
    write(
        &early,
        b"search --no-floppy --label boot --set=root\nset prefix=($root)/grub\nconfigfile ($root)/grub/grub.cfg\n",
        0o644,
    )?;
    let core = scratch.join("core.img");
    run(Command::new("grub-mkimage")
        .args(["-O", "i386-pc", "-o"])
        .arg(&core)
        .arg("-c")
        .arg(&early)
        .args(["-p", "/grub"])
        .args(GRUB_MODULES))?;
    install_grub_bios(&tmp_raw, &core)?;
    if File::open(&tmp_raw)
        .and_then(|f| f.metadata())
        .map(|m| m.len())
        .map_err(|e| Error::io(&tmp_raw, e))?
        != opts.size
    {
        return Err(Error::Image(format!(
            "{}: a tool changed the disk size",
            tmp_raw.display()
        )));
    }

    let qcow2 = opts.out_dir.join(format!("{}.qcow2", opts.name));
    let tmp_qcow2 = scratch.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&tmp_raw)
        .arg(&tmp_qcow2))?;
    for (t, p) in [(&tmp_raw, &raw), (&tmp_qcow2, &qcow2)] {
        fs::rename(t, p).map_err(|e| Error::io(p, e))?;
    }
    let raw_allocated = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&raw).map_err(|e| Error::io(&raw, e))?.blocks() * 512
    };
    Ok(ImageOutcome {
        raw,
        qcow2,
        raw_allocated,
        kernel_cmdline: cmdline,
    })
}

/// The image options for the build recorded in `meta_dir/meta.json`, the
/// commit being in `repo`: outputs in `meta_dir`, named
/// `NAME-VERSION-PLATFORM.x86_64.{raw,qcow2}`.
pub fn image_options_for(
    meta_dir: &Path,
    repo: &Path,
    platform: Platform,
    size: u64,
    seed: Option<String>,
) -> Result<ImageOptions> {
    Ok(read_meta(meta_dir, repo, platform, size, seed)?.0)
}

fn read_meta(
    meta_dir: &Path,
    repo: &Path,
    platform: Platform,
    size: u64,
    seed: Option<String>,
) -> Result<(ImageOptions, BuildMeta)> {
    let mp = meta_dir.join("meta.json");
    let data = fs::read(&mp).map_err(|e| Error::io(&mp, e))?;
    let meta: BuildMeta = serde_json::from_slice(&data).map_err(|e| Error::Config {
        file: mp.clone(),
        message: e.to_string(),
    })?;
    let opts = ImageOptions {
        repo: repo.to_path_buf(),
        commit: meta.ostree_commit.clone(),
        ostree_ref: meta.ostree_ref.clone(),
        remote: meta.name.clone(),
        kernel_arguments: meta.kernel_arguments.clone(),
        platform,
        size,
        out_dir: meta_dir.to_path_buf(),
        name: format!("{}-{}-{}.x86_64", meta.name, meta.version, platform.id()),
        seed: seed.unwrap_or_else(|| meta.ostree_commit.clone()),
        source_date_epoch: meta.ostree_timestamp,
        boot_tries: DEFAULT_BOOT_TRIES,
    };
    Ok((opts, meta))
}

/// Builds the image of the build recorded in `meta_dir/meta.json` (see
/// [`image_options_for`]), from the commit or, given `sysroot`, from a tree
/// made by [`make_sysroot`], and adds both files to the build's artifacts
/// as `PLATFORM-raw` and `PLATFORM-qcow2`.
pub fn build_image_for(
    meta_dir: &Path,
    repo: &Path,
    platform: Platform,
    size: u64,
    seed: Option<String>,
    sysroot: Option<&Path>,
) -> Result<ImageOutcome> {
    let (opts, mut meta) = read_meta(meta_dir, repo, platform, size, seed)?;
    let out = match sysroot {
        Some(s) => build_image_from_sysroot(&opts, s)?,
        None => build_image(&opts)?,
    };
    for (kind, p) in [("raw", &out.raw), ("qcow2", &out.qcow2)] {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        meta.artifacts.insert(
            format!("{}-{kind}", platform.id()),
            Artifact::of(meta_dir, &name)?,
        );
    }
    meta.write(meta_dir)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_derived_and_well_formed() {
        let a = derived_uuid("c0ffee", "root-fs");
        assert_eq!(a, derived_uuid("c0ffee", "root-fs"));
        assert_ne!(a, derived_uuid("c0ffee", "boot-fs"));
        assert_ne!(a, derived_uuid("c0ffef", "root-fs"));
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!("89ab".contains(&parts[3][..1]));
    }

    fn tool(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `debugfs -R REQUEST` on the ext4 file system at `offset` in `img`.
    fn debugfs(img: &Path, offset: u64, request: &str) -> String {
        tool(
            Command::new("debugfs")
                .arg("-R")
                .arg(request)
                .arg(format!("{}?offset={offset}", img.display())),
        )
    }

    /// A whole image from a small synthetic commit, inspected with the
    /// real tools: partition table, both ext4 file systems, GRUB's sectors.
    #[test]
    fn synthetic_commit_gives_a_bootable_layout() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        for (p, data) in [
            ("usr/lib/modules/6.1.0-t/vmlinuz", "kernel"),
            ("usr/lib/modules/6.1.0-t/initramfs.img", "initramfs"),
            ("usr/etc/os-release", "PRETTY_NAME=\"TestOS 1\"\n"),
            ("usr/bin/sh", "sh"),
        ] {
            let f = tree.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, data).unwrap();
        }
        for dir in ["sysroot", "var", "boot", "etc-placeholder"] {
            fs::create_dir_all(tree.join(dir)).unwrap();
        }
        std::os::unix::fs::symlink("sysroot/ostree", tree.join("ostree")).unwrap();
        let repo_path = d.path().join("repo");
        let repo = ostree_repo::Repo::create(&repo_path, ostree_repo::RepoMode::Archive).unwrap();
        let copts = ostree_repo::commit::CommitOptions {
            branch: Some("testos/x86_64/stable".into()),
            subject: "t".into(),
            timestamp: Some(1_795_651_200),
            bootable: true,
            ..Default::default()
        };
        let c = ostree_repo::commit::commit_dirs(&repo, &[tree], &copts).unwrap();
        let opts = ImageOptions {
            repo: repo_path,
            commit: ostree_repo::object::to_hex(&c),
            ostree_ref: "testos/x86_64/stable".into(),
            remote: "testos".into(),
            kernel_arguments: vec!["console=ttyS0,115200n8".into(), "rw".into()],
            platform: Platform::Qemu,
            // Small, so that comparing two images byte for byte is quick.
            size: 2 << 30,
            out_dir: d.path().join("out"),
            name: "img".into(),
            seed: "seed".into(),
            source_date_epoch: 1_795_651_200,
            boot_tries: DEFAULT_BOOT_TRIES,
        };
        let out = build_image(&opts).unwrap();
        assert!(out.kernel_cmdline.starts_with(
            "console=ttyS0,115200n8 rw root=LABEL=root ignition.platform.id=qemu ostree=/ostree/boot.1/ferrocore/"
        ), "{}", out.kernel_cmdline);
        let img = &out.raw;
        assert_eq!(fs::metadata(img).unwrap().len(), 2 << 30);
        // Mostly the two journals (64 + 16 MiB): the rest of the 4 GiB is holes.
        assert!(
            out.raw_allocated < 128 * MIB,
            "sparse: {}",
            out.raw_allocated
        );
        assert!(
            !opts.out_dir.join(".img.image-tmp").exists(),
            "scratch removed"
        );
        let info = tool(Command::new("qemu-img").arg("info").arg(&out.qcow2));
        assert!(
            info.contains("file format: qcow2") && info.contains("2 GiB"),
            "{info}"
        );

        let table = tool(Command::new("sgdisk").arg("-p").arg(img));
        assert!(
            table.contains(&format!(
                "Disk identifier (GUID): {}",
                derived_uuid("seed", "disk").to_uppercase()
            )),
            "{table}"
        );
        for (n, start, name) in [
            (1, 2048, "BIOS-BOOT"),
            (2, 4096, "EFI-SYSTEM"),
            (3, 264192, "boot"),
            (4, 1050624, "root"),
        ] {
            let line = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(&n.to_string()))
                .unwrap_or_else(|| panic!("partition {n} in\n{table}"));
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                (f[1], *f.last().unwrap()),
                (start.to_string().as_str(), name),
                "{line}"
            );
        }
        let p1 = tool(Command::new("sgdisk").arg("-i1").arg(img));
        assert!(p1.contains(TYPE_BIOS_BOOT), "{p1}");

        let boot_off = BOOT.0 * MIB;
        let root_off = ROOT_START * MIB;
        let stats = debugfs(img, boot_off, "stats");
        assert!(stats.contains("Filesystem volume name:   boot"), "{stats}");
        assert!(stats.contains(&derived_uuid("seed", "boot-fs")), "{stats}");
        assert!(debugfs(img, boot_off, "stat /loader").contains("Type: symlink"));
        let menu = debugfs(img, boot_off, "cat /loader/grub.cfg");
        assert!(
            menu.contains("menuentry 'TestOS 1 (ostree:0)' --id ostree-ferrocore-"),
            "{menu}"
        );
        assert!(
            menu.contains(
                " root=LABEL=root ignition.platform.id=qemu ostree=/ostree/boot.1/ferrocore/"
            ),
            "{menu}"
        );
        let stat = debugfs(img, boot_off, "cat /grub/grub.cfg");
        assert_eq!(stat, sysroot::grub::static_config(1));
        let env = debugfs(img, boot_off, "cat /grub/grubenv");
        assert_eq!(env.len(), sysroot::grub::ENVBLK_SIZE);
        let ls = debugfs(img, boot_off, "ls -l /");
        assert!(
            ls.contains("ignition.firstboot") && ls.contains("ostree"),
            "{ls}"
        );
        assert!(debugfs(img, boot_off, "ls /grub/i386-pc").contains("normal.mod"));

        let stats = debugfs(img, root_off, "stats");
        assert!(stats.contains("Filesystem volume name:   root"), "{stats}");
        let deploy = debugfs(img, root_off, "ls -p /ostree/deploy/ferrocore/deploy");
        let dep = deploy
            .lines()
            .filter_map(|l| l.split('/').nth(5))
            .find(|n| n.len() == 66 && n.ends_with(".0"))
            .unwrap_or_else(|| panic!("{deploy}"))
            .to_string();
        let etc = format!("/ostree/deploy/ferrocore/deploy/{dep}/etc");
        assert_eq!(
            debugfs(img, root_off, &format!("cat {etc}/machine-id")),
            "uninitialized\n"
        );
        assert!(
            debugfs(img, root_off, &format!("cat {etc}/fstab")).contains("LABEL=boot /boot ext4")
        );
        assert!(
            debugfs(img, root_off, "ls /boot").lines().count() <= 2,
            "empty mount point"
        );
        let cfg = debugfs(img, root_off, "cat /ostree/repo/config");
        assert!(cfg.contains("bootloader=grub2"), "{cfg}");
        let origin = debugfs(
            img,
            root_off,
            &format!("cat /ostree/deploy/ferrocore/deploy/{dep}.origin"),
        );
        assert!(
            origin.contains("refspec=testos:testos/x86_64/stable"),
            "{origin}"
        );

        // GRUB's sectors, patched as grub-bios-setup would.
        let mut f = File::open(img).unwrap();
        let mut mbr = [0u8; 512];
        f.read_exact(&mut mbr).unwrap();
        let bootimg = fs::read(Path::new(GRUB_I386_PC).join("boot.img")).unwrap();
        assert_eq!(&mbr[..0x5c], &bootimg[..0x5c]);
        assert_eq!(
            u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap()),
            2048
        );
        assert_eq!(&mbr[510..], &[0x55, 0xaa], "protective MBR kept");
        f.seek(SeekFrom::Start(2048 * 512)).unwrap();
        let mut s0 = [0u8; 512];
        f.read_exact(&mut s0).unwrap();
        assert_eq!(
            u64::from_le_bytes(s0[0x1f4..0x1fc].try_into().unwrap()),
            2049
        );
        assert!(u16::from_le_bytes(s0[0x1fc..0x1fe].try_into().unwrap()) > 10);

        // Same inputs, same identities and layout.
        let again = build_image(&ImageOptions {
            name: "img2".into(),
            ..opts.clone()
        })
        .unwrap();
        let t2 = tool(Command::new("sgdisk").arg("-p").arg(&again.raw));
        assert_eq!(table.replace("img", ""), t2.replace("img2", ""));
        // Every time in the file systems is the epoch (1795651200 = 0x6b077680).
        for (off, file) in [
            (root_off, "/ostree/repo/config"),
            (boot_off, "/loader/grub.cfg"),
        ] {
            let st = debugfs(img, off, &format!("stat {file}"));
            for t in [" ctime: ", " atime: ", " mtime: "] {
                assert!(st.contains(&format!("{t}0x6b077680:")), "{file} {t}\n{st}");
            }
        }
        let cmp = Command::new("cmp")
            .arg("-l")
            .arg(img)
            .arg(&again.raw)
            .output()
            .unwrap();
        let diff = String::from_utf8_lossy(&cmp.stdout);
        assert!(
            cmp.status.success(),
            "two builds of the same inputs differ in {} bytes, first (offset, a, b):\n{}",
            diff.lines().count(),
            diff.lines().take(20).collect::<Vec<_>>().join("\n")
        );
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(format!("{}?offset={root_off}", img.display()))
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );

        // From a prepared sysroot tree, which gets its boot/ back.
        let sr = d.path().join("sr");
        make_sysroot(&opts, &sr).unwrap();
        assert!(make_sysroot(&opts, &sr)
            .unwrap_err()
            .to_string()
            .contains("must not exist"));
        let from = build_image_from_sysroot(
            &ImageOptions {
                name: "img3".into(),
                ..opts.clone()
            },
            &sr,
        )
        .unwrap();
        assert_eq!(from.kernel_cmdline, out.kernel_cmdline);
        assert!(
            sr.join("boot/loader/grub.cfg").is_file() && sr.join("boot/grub/grubenv").is_file()
        );
        let menu3 = tool(
            Command::new("debugfs")
                .arg("-R")
                .arg("cat /loader/grub.cfg")
                .arg(format!("{}?offset={boot_off}", from.raw.display())),
        );
        assert_eq!(menu3, menu);
    }

    #[test]
    fn platform_and_size_are_checked() {
        assert_eq!(Platform::parse("qemu").unwrap().id(), "qemu");
        assert_eq!(Platform::parse("metal").unwrap(), Platform::Metal);
        let e = Platform::parse("aws").unwrap_err().to_string();
        assert!(e.contains("platform") && e.contains("aws"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let opts = ImageOptions {
            repo: d.path().join("repo"),
            commit: "00".repeat(32),
            ostree_ref: "r".into(),
            remote: "ferrocore".into(),
            kernel_arguments: vec![],
            platform: Platform::Qemu,
            size: 100 * MIB,
            out_dir: d.path().join("out"),
            name: "x".into(),
            seed: "s".into(),
            source_date_epoch: 0,
            boot_tries: DEFAULT_BOOT_TRIES,
        };
        let e = build_image(&opts).unwrap_err().to_string();
        assert!(e.contains("size") && e.contains("1025 MiB"), "{e}");
        assert!(!d.path().join("out").exists());
    }
}
