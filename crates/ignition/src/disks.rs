//! The disks stage (IG:internal/exec/stages/disks): GPT partitions, RAID
//! arrays, LUKS volumes and filesystems, in that order, then `udevadm settle`.
//!
//! Like upstream it drives the distro's tools (`sgdisk`, `mdadm`,
//! `cryptsetup`, `wipefs`, `mkfs.*`, `blkid`, `partx`, `udevadm`): their
//! on-disk results are then byte-for-byte what the real Ignition produces, and
//! the kernel interfaces (md ioctls, device-mapper, partition re-reads) stay
//! with the tools that own them. Only the GPT is read natively ([`crate::gpt`]).
//!
//! The partition decisions ([`decide_partitions`]) are pure with respect to
//! the disk: they only read the table and run `sgdisk --pretend`, so
//! [`crate::plan`] shares them for its dry run.
//!
//! Two deliberate departures let a second run over the same disks succeed
//! without touching data where upstream fails: an array already running with
//! exactly the configured level and members is kept (upstream's
//! `mdadm --create` fails on its busy members), and a LUKS volume already open
//! under its configured name over its device has its key proved with
//! `--test-passphrase` instead of being opened a second time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ignition_config::types::{Config, Disk, Filesystem, Luks, Partition, Raid};

use crate::error::{io_msg, Error, Result};
use crate::gpt::{GptPartition, GptTable};
use crate::resource::Fetcher;
use crate::state::State;
use crate::tools;

/// Runs a tool; stdout on success, else `tool args: status: stderr`.
pub(crate) fn tool(prog: &str, args: &[String]) -> std::result::Result<String, String> {
    let out = tools::command(prog)
        .args(args)
        .output()
        .map_err(|e| format!("running {prog}: {}", io_msg(&e)))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.is_empty() {
            err = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(format!(
            "{prog} {}: {}: {err}",
            args.join(" "),
            status_text(&out.status)
        ))
    }
}

/// Go's `exit status N` / `signal: S` wording.
fn status_text(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => s.to_string(),
    }
}

fn strs(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// What `blkid -p` finds on a device (upstream `util.GetFilesystemInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FsInfo {
    /// Filesystem / signature type (`ext4`, `crypto_LUKS`, `linux_raid_member`), "" if none.
    #[serde(rename = "type")]
    pub fs_type: String,
    /// Its UUID, as blkid prints it.
    pub uuid: String,
    /// Its label.
    pub label: String,
    /// A partition table type found on the device (`gpt`, `dos`), "" if none.
    #[serde(rename = "partitionTable")]
    pub pt_type: String,
}

/// Low-level probe (`blkid -p`, bypassing the cache so a just-made
/// filesystem is seen). Exit 2 means nothing was found.
pub(crate) fn probe(dev: &Path) -> Result<FsInfo> {
    let out = tools::command("blkid")
        .args(["-p", "-o", "export", "--"])
        .arg(dev)
        .output()
        .map_err(|e| Error::new(format!("running blkid: {}", io_msg(&e))))?;
    let mut info = FsInfo::default();
    match out.status.code() {
        Some(0) => {}
        Some(2) => return Ok(info),
        // Ambivalent (several signatures): upstream retries allowing many
        // and takes the first libblkid finds; wipefs walks the same probe
        // chain in the same order and lists them all.
        Some(8) => return first_signature(dev),
        _ => {
            return Err(Error::new(format!(
                "determining filesystem type of {:?}: blkid: {}",
                dev.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once('=') {
            match k {
                "TYPE" => info.fs_type = v.to_string(),
                "UUID" => info.uuid = v.to_string(),
                "LABEL" => info.label = v.to_string(),
                "PTTYPE" => info.pt_type = v.to_string(),
                _ => {}
            }
        }
    }
    Ok(info)
}

/// The first signature `wipefs --no-act` finds on `dev`.
fn first_signature(dev: &Path) -> Result<FsInfo> {
    let out = tool(
        "wipefs",
        &[
            "--no-act".to_string(),
            "--json".into(),
            dev.display().to_string(),
        ],
    )
    .map_err(|e| {
        Error::new(format!(
            "determining filesystem type of {:?}: {e}",
            dev.display()
        ))
    })?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::new(format!("parsing wipefs output for {}: {e}", dev.display())))?;
    let first = &v["signatures"][0];
    let s = |k: &str| first[k].as_str().unwrap_or_default().to_string();
    Ok(FsInfo {
        fs_type: s("type"),
        uuid: s("uuid"),
        label: s("label"),
        pt_type: String::new(),
    })
}

/// Waits for every device node to exist, then resolves it (what upstream's
/// `/run/ignition/dev_aliases` achieve: later steps use one stable node even
/// if udev rewrites the `/dev/disk/by-*` link meanwhile). Upstream waits on
/// systemd's `dev-*.device` units, whose default timeout is `timeout`.
pub(crate) fn wait_for(dev: &str, timeout: Duration) -> std::result::Result<PathBuf, String> {
    let start = Instant::now();
    loop {
        match std::fs::canonicalize(dev) {
            Ok(p) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "device {dev:?} did not appear within {}s",
                    timeout.as_secs()
                ))
            }
            Err(e) => return Err(format!("resolving device {dev:?}: {}", io_msg(&e))),
        }
    }
}

/// Settles udev; without a running udevd this returns at once.
fn settle() -> Result<()> {
    tool("udevadm", &strs(&["settle"]))
        .map(|_| ())
        .map_err(|e| Error::new(format!("udevadm settle failed: {e}")))
}

// ---------------------------------------------------------------- partitions

/// One configured partition with start/size in sectors (upstream `sgdisk.Partition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpecPart {
    /// Index in `disk.partitions` (the config path).
    pub index: usize,
    pub number: i64,
    pub start: Option<i64>,
    pub size: Option<i64>,
    pub label: Option<String>,
    pub type_guid: Option<String>,
    pub guid: Option<String>,
    pub wipe_entry: bool,
    pub should_exist: bool,
    pub resize: bool,
}

impl SpecPart {
    fn from(index: usize, p: &Partition, ss: i64) -> SpecPart {
        let sectors = |mib: Option<i64>| mib.map(|m| m * (1024 * 1024 / ss));
        SpecPart {
            index,
            number: p.number,
            start: sectors(p.start_mib),
            size: sectors(p.size_mib),
            label: p.label.clone(),
            type_guid: p.type_guid.clone().filter(|s| !s.is_empty()),
            guid: p.guid.clone().filter(|s| !s.is_empty()),
            wipe_entry: p.wipe_partition_entry == Some(true),
            should_exist: p.should_exist != Some(false),
            resize: p.resize == Some(true),
        }
    }
}

/// What happens to one configured partition (the operator-notes matrix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PartOp {
    /// shouldExist false and absent: nothing to do.
    Absent,
    /// Not there: created.
    Create,
    /// There and matching: kept as is.
    Keep,
    /// shouldExist false, wipePartitionEntry true: entry deleted.
    Delete,
    /// Matches but for its size, `resize` true: entry rewritten larger/smaller.
    Resize,
    /// Mismatch with wipePartitionEntry true: deleted and created anew.
    Recreate,
}

/// The decision for one partition, or why the stage would fail on it.
#[derive(Debug, Clone)]
pub(crate) struct PartDecision {
    pub spec: SpecPart,
    pub existing: Option<GptPartition>,
    pub op: std::result::Result<PartOp, String>,
}

/// `sgdisk` arguments for deletions then creations (upstream `buildOptions`).
fn sgdisk_args(deletes: &[i64], creates: &[SpecPart], infos: &[i64]) -> Vec<String> {
    let mut a = Vec::new();
    for n in deletes {
        a.push(format!("--delete={n}"));
    }
    for p in creates {
        let start = p.start.map_or("0".to_string(), |s| s.to_string());
        let size = p.size.map_or("0".to_string(), |s| s.to_string());
        a.push(format!("--new={}:{start}:+{size}", p.number));
        if let Some(l) = &p.label {
            a.push(format!("--change-name={}:{l}", p.number));
        }
        if let Some(t) = &p.type_guid {
            a.push(format!("--typecode={}:{t}", p.number));
        }
        if let Some(g) = &p.guid {
            a.push(format!("--partition-guid={}:{g}", p.number));
        }
    }
    for n in infos {
        a.push(format!("--info={n}"));
    }
    a
}

/// Parses `First sector: N (...)` / `Last sector: N (...)` pairs of
/// `sgdisk --pretend ... --info=X` (upstream `parseSgdiskPretend`).
fn parse_pretend(
    out: &str,
    numbers: &[i64],
) -> std::result::Result<BTreeMap<i64, (i64, i64)>, String> {
    if numbers.is_empty() {
        return Ok(BTreeMap::new());
    }
    let field = |line: &str, key: &str| -> Option<std::result::Result<i64, String>> {
        let rest = line.strip_prefix(key)?;
        let num = rest.split(' ').next().unwrap_or("");
        Some(
            num.parse()
                .map_err(|_| format!("sgdisk had unexpected output: {line:?}")),
        )
    };
    let mut res = BTreeMap::new();
    let mut first: Option<i64> = None;
    for line in out.lines() {
        if let Some(v) = field(line, "First sector: ") {
            first = Some(v?);
        } else if let Some(v) = field(line, "Last sector: ") {
            let last = v?;
            let start = first
                .take()
                .ok_or_else(|| "sgdisk had unexpected output".to_string())?;
            let n = numbers
                .get(res.len())
                .ok_or_else(|| "sgdisk had unexpected output".to_string())?;
            res.insert(*n, (start, last - start + 1));
        }
    }
    if res.len() != numbers.len() {
        return Err("sgdisk had unexpected output".into());
    }
    Ok(res)
}

fn matches_common(e: &GptPartition, s: &SpecPart) -> std::result::Result<(), String> {
    if let Some(st) = s.start {
        if st != e.start {
            return Err(format!(
                "starting sector did not match (specified {st}, got {})",
                e.start
            ));
        }
    }
    if let Some(g) = &s.guid {
        if !g.eq_ignore_ascii_case(&e.guid) {
            return Err(format!(
                "GUID did not match (specified {g:?}, got {:?})",
                e.guid
            ));
        }
    }
    if let Some(t) = &s.type_guid {
        if !t.eq_ignore_ascii_case(&e.type_guid) {
            return Err(format!(
                "type GUID did not match (specified {t:?}, got {:?})",
                e.type_guid
            ));
        }
    }
    if let Some(l) = &s.label {
        if *l != e.label {
            return Err(format!(
                "label did not match (specified {l:?}, got {:?})",
                e.label
            ));
        }
    }
    Ok(())
}

fn matches(e: &GptPartition, s: &SpecPart) -> std::result::Result<(), String> {
    matches_common(e, s)?;
    match s.size {
        Some(sz) if sz != e.size => Err(format!(
            "size did not match (specified {sz}, got {})",
            e.size
        )),
        _ => Ok(()),
    }
}

/// Decides every partition of `disk` against `table` (the disk as it is, or
/// an empty table when `fresh`, i.e. after `wipeTable`). Zero start/size are
/// resolved by `sgdisk --pretend` as if every configured partition were
/// recreated, exactly as upstream does; nothing is written.
pub(crate) fn decide_partitions(
    disk: &Disk,
    dev: &Path,
    table: &GptTable,
    fresh: bool,
) -> std::result::Result<Vec<PartDecision>, String> {
    let ss = table.sector_size;
    // Number-0 partitions go last (stable), so explicit numbers are placed first.
    let mut specs: Vec<SpecPart> = disk
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| SpecPart::from(i, p, ss))
        .collect();
    specs.sort_by_key(|p| p.number == 0);

    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    for p in &specs {
        let mut c = p.clone();
        if let Some(e) = table.get(p.number) {
            deletes.push(p.number);
            // Unspecified start/size of a partition that cannot be wiped
            // means "keep what is there".
            if c.start.is_none() && !c.wipe_entry {
                c.start = Some(e.start);
            }
            if c.size.is_none() && !c.wipe_entry {
                c.size = Some(e.size);
            }
        }
        if c.should_exist {
            // sgdisk does not escape names in its output: leave them out.
            c.label = None;
            creates.push(c);
        }
    }
    let inspect: Vec<i64> = specs
        .iter()
        .filter(|p| p.number != 0 && (p.start == Some(0) || p.size == Some(0)))
        .map(|p| p.number)
        .collect();
    // Always pretend, as upstream: sgdisk then also vets the whole layout
    // (overlaps, sizes beyond the disk) before anything is written.
    let dims = {
        let mut args = vec!["--pretend".to_string()];
        if fresh {
            args.push("--clear".into());
        }
        args.extend(sgdisk_args(&deletes, &creates, &inspect));
        args.push(dev.display().to_string());
        let out = tool("sgdisk", &args)
            .map_err(|e| format!("Failed to pretend to create partitions: {e}"))?;
        parse_pretend(&out, &inspect)?
    };

    let mut res = Vec::new();
    for mut p in specs {
        if let Some(&(start, size)) = dims.get(&p.number) {
            if p.start.is_some() {
                p.start = Some(start);
            }
            if p.size.is_some() {
                p.size = Some(size);
            }
        }
        let existing = table.get(p.number).cloned();
        let op = match &existing {
            None if !p.should_exist => Ok(PartOp::Absent),
            None => Ok(PartOp::Create),
            Some(_) if !p.should_exist && !p.wipe_entry => Err(format!(
                "partition {} exists but is specified as nonexistant and wipePartitionEntry is false",
                p.number
            )),
            Some(_) if !p.should_exist => Ok(PartOp::Delete),
            Some(e) => match matches(e, &p) {
                Ok(()) => Ok(PartOp::Keep),
                Err(_) if p.wipe_entry => Ok(PartOp::Recreate),
                Err(_) if p.resize && matches_common(e, &p).is_ok() => Ok(PartOp::Resize),
                Err(m) => Err(format!("Partition {} didn't match: {m}", p.number)),
            },
        };
        res.push(PartDecision {
            spec: p,
            existing,
            op,
        });
    }
    Ok(res)
}

/// Holders (md, dm) or mounts of a partition: rewriting its entry under a
/// user would corrupt it (upstream 2.18+ refuses the same way).
fn partition_in_use(disk: &Path, number: i64) -> Option<String> {
    let name = disk.file_name()?.to_string_lossy().into_owned();
    let sep = if name.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    let part = format!("{name}{sep}{number}");
    let holders = Path::new("/sys/class/block").join(&part).join("holders");
    if let Ok(rd) = std::fs::read_dir(&holders) {
        let h: Vec<String> = rd
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        if !h.is_empty() {
            return Some(format!("/dev/{part} is held by {}", h.join(", ")));
        }
    }
    let dev = format!("/dev/{part}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .find(|l| l.split(' ').next() == Some(dev.as_str()))
        .map(|l| format!("{dev} is mounted at {}", l.split(' ').nth(1).unwrap_or("?")))
}

/// The sgdisk deletions and creations that carry out `decisions`; the
/// first undecidable partition is an error at its config path.
pub(crate) fn commit_ops(
    decisions: &[PartDecision],
    at: &str,
) -> Result<(Vec<i64>, Vec<SpecPart>)> {
    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    for d in decisions {
        let pat = format!("{at}.partitions.{}", d.spec.index);
        match d.op.clone().map_err(|m| Error::at(&pat, m))? {
            PartOp::Absent | PartOp::Keep => {}
            PartOp::Create => creates.push(d.spec.clone()),
            PartOp::Delete => deletes.push(d.spec.number),
            PartOp::Recreate => {
                deletes.push(d.spec.number);
                creates.push(d.spec.clone());
            }
            PartOp::Resize => {
                // Same entry with only the size changed.
                // decide_partitions only resizes an existing partition.
                let Some(e) = d.existing.clone() else {
                    return Err(Error::at(&pat, "resize of a partition that does not exist"));
                };
                deletes.push(d.spec.number);
                let mut p = d.spec.clone();
                p.guid = Some(e.guid);
                p.type_guid = Some(e.type_guid);
                p.label = Some(e.label);
                p.start = Some(e.start);
                creates.push(p);
            }
        }
    }
    Ok((deletes, creates))
}

/// Partition number -> (start, size) in sectors.
pub(crate) type Placement = BTreeMap<i64, (i64, i64)>;

/// Where sgdisk will put each created partition: `sgdisk --pretend` of the
/// very commit, with `--info` per partition. Number-0 partitions get the
/// lowest free number, as sgdisk assigns them. Returns number -> (start, size)
/// and the numbers given to number-0 partitions (config index -> number).
pub(crate) fn pretend_commit(
    dev: &Path,
    table: &GptTable,
    fresh: bool,
    deletes: &[i64],
    creates: &[SpecPart],
) -> std::result::Result<(Placement, BTreeMap<usize, i64>), String> {
    let mut used: Vec<i64> = table
        .partitions
        .iter()
        .map(|p| p.number)
        .filter(|n| !deletes.contains(n))
        .collect();
    used.extend(creates.iter().map(|c| c.number).filter(|n| *n != 0));
    let mut assigned = BTreeMap::new();
    let mut numbers = Vec::new();
    for c in creates {
        let n = if c.number == 0 {
            let n = (1..).find(|n| !used.contains(n)).unwrap_or(1);
            used.push(n);
            assigned.insert(c.index, n);
            n
        } else {
            c.number
        };
        numbers.push(n);
    }
    let mut args = vec!["--pretend".to_string()];
    if fresh {
        args.push("--clear".into());
    }
    args.extend(sgdisk_args(deletes, creates, &numbers));
    args.push(dev.display().to_string());
    let out = tool("sgdisk", &args)
        .map_err(|e| format!("Failed to pretend to create partitions: {e}"))?;
    Ok((parse_pretend(&out, &numbers)?, assigned))
}

fn partition_disk(disk: &Disk, at: &str, dev: &Path) -> Result<()> {
    let dev_s = dev.display().to_string();
    if disk.wipe_table == Some(true) {
        tool("sgdisk", &[String::from("--zap-all"), dev_s.clone()])
            .map_err(|e| Error::at(format!("{at}.wipeTable"), e))?;
    }
    let table = crate::gpt::read(dev).map_err(|e| e.or_at(at))?;
    let decisions = decide_partitions(disk, dev, &table, false).map_err(|e| Error::at(at, e))?;
    for d in &decisions {
        if matches!(d.op, Ok(PartOp::Delete | PartOp::Resize | PartOp::Recreate)) {
            if let Some(why) = partition_in_use(dev, d.spec.number) {
                return Err(Error::at(
                    format!("{at}.partitions.{}", d.spec.index),
                    format!("refusing to modify partition {}: {why}", d.spec.number),
                ));
            }
        }
    }
    let (deletes, creates) = commit_ops(&decisions, at)?;
    if deletes.is_empty() && creates.is_empty() {
        return Ok(());
    }
    let mut args = sgdisk_args(&deletes, &creates, &[]);
    args.push(dev_s.clone());
    tool("sgdisk", &args).map_err(|e| Error::at(at, format!("commit failure: {e}")))?;
    // The kernel does not always pick up sgdisk's re-read request (loop
    // devices, busy disks): tell it about each partition explicitly.
    tool("partx", &[String::from("-u"), dev_s])
        .map_err(|e| Error::at(at, format!("updating the kernel's partition table: {e}")))?;
    settle()
}

// ---------------------------------------------------------------------- RAID

/// `mdadm --create` arguments (upstream `createRaids`), devices resolved.
pub(crate) fn mdadm_args(md: &Raid, devices: &[String]) -> Vec<String> {
    let spares = md.spares.unwrap_or(0);
    let mut a = strs(&[
        "--create",
        &md.name,
        "--force",
        "--run",
        "--homehost",
        "any",
    ]);
    a.push("--level".into());
    a.push(md.level.clone().unwrap_or_default());
    a.push("--raid-devices".into());
    a.push((md.devices.len() as i64 - spares).to_string());
    if spares > 0 {
        a.push("--spare-devices".into());
        a.push(spares.to_string());
    }
    a.extend(md.options.iter().cloned());
    a.extend(devices.iter().cloned());
    a
}

/// The node `mdadm --create NAME` makes: a bare name goes under `/dev/md/`.
pub(crate) fn array_node(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/dev/md/{name}")
    }
}

/// A configured level as the kernel reports it (`md/level` in sysfs):
/// mdadm also takes `1`, `mirror`, `stripe`.
fn kernel_level(level: &str) -> String {
    match level {
        "mirror" => "raid1".to_string(),
        "stripe" => "raid0".to_string(),
        l if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => format!("raid{l}"),
        l => l.to_string(),
    }
}

/// The running array `md` names, when it already is what `md` describes:
/// same level, same number of active devices, and exactly the configured
/// `members` (resolved nodes) as its component devices. Upstream always runs
/// `mdadm --create`, which fails on the busy members of a running array;
/// keeping such an array instead makes a second run of the stage (or a
/// re-provisioning that finds the array assembled by udev) succeed without
/// touching data, while any difference still goes to mdadm as upstream.
pub(crate) fn running_array(md: &Raid, members: &[PathBuf]) -> Option<PathBuf> {
    let node = std::fs::canonicalize(array_node(&md.name)).ok()?;
    let sys = Path::new("/sys/class/block").join(node.file_name()?);
    let read = |f: &str| {
        std::fs::read_to_string(sys.join("md").join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    if matches!(read("array_state")?.as_str(), "clear" | "inactive") {
        return None;
    }
    if read("level")? != kernel_level(md.level.as_deref()?) {
        return None;
    }
    let active = md.devices.len() as i64 - md.spares.unwrap_or(0);
    if read("raid_disks")? != active.to_string() {
        return None;
    }
    let mut have: Vec<String> = std::fs::read_dir(sys.join("slaves"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let mut want: Vec<String> = members
        .iter()
        .filter_map(|m| m.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    have.sort();
    want.sort();
    (have == want).then_some(node)
}

fn create_raid(md: &Raid, at: &str, timeout: Duration) -> Result<()> {
    let mut nodes = Vec::new();
    for (j, d) in md.devices.iter().enumerate() {
        let p = wait_for(d, timeout).map_err(|e| Error::at(format!("{at}.devices.{j}"), e))?;
        nodes.push(p);
    }
    if running_array(md, &nodes).is_some() {
        return Ok(());
    }
    let devs: Vec<String> = nodes.iter().map(|p| p.display().to_string()).collect();
    tool("mdadm", &mdadm_args(md, &devs))
        .map_err(|e| Error::at(at, format!("mdadm failed: {e}")))?;
    Ok(())
}

// ---------------------------------------------------------------------- LUKS

/// A key file for cryptsetup, 0400 in the temp dir, removed on drop.
struct TempKey(PathBuf);

impl TempKey {
    fn new(data: &[u8]) -> Result<TempKey> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut rnd = [0u8; 8];
        random(&mut rnd)?;
        let p = tools::scratch_dir().join(format!("ignition-luks-{}", hex::encode(rnd)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&p)
            .map_err(|e| crate::error::path_err("creating keyfile", &p, &e))?;
        let key = TempKey(p);
        f.write_all(data)
            .map_err(|e| crate::error::path_err("writing keyfile", &key.0, &e))?;
        Ok(key)
    }
}

impl Drop for TempKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn random(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Error::new(format!("reading /dev/urandom: {}", io_msg(&e))))
}

/// `cryptsetup luksOpen` arguments; `--persistent` stores the discard flag
/// and open options in the header, so crypttab need not repeat them.
fn luks_open_args(l: &Luks, dev: &str, key: &Path) -> Vec<String> {
    let mut a = vec![
        "luksOpen".to_string(),
        dev.to_string(),
        l.name.clone(),
        "--key-file".into(),
        key.display().to_string(),
        "--persistent".into(),
    ];
    if l.discard == Some(true) {
        a.push("--allow-discards".into());
    }
    a.extend(l.open_options.iter().cloned());
    a
}

/// Whether the existing LUKS2 header matches the config (upstream
/// `reuseLuksDevice`), then opens it, which proves the key.
fn reuse_luks(l: &Luks, dev: &str, info: &FsInfo, key: &Path) -> std::result::Result<(), String> {
    if l.key_file.key().is_empty() {
        return Err("config must specify keyfile".into());
    }
    if let Some(lab) = &l.label {
        if info.label != *lab {
            return Err(format!(
                "volume label {:?} doesn't match expected label {lab:?}",
                info.label
            ));
        }
    }
    if let Some(u) = &l.uuid {
        let got = tool("cryptsetup", &[String::from("luksUUID"), dev.to_string()])?;
        if got.trim() != u {
            return Err(format!(
                "volume UUID {:?} doesn't match expected UUID {u:?}",
                got.trim()
            ));
        }
    }
    let dump = tool(
        "cryptsetup",
        &strs(&["luksDump", "--dump-json-metadata", dev]),
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&dump).map_err(|e| format!("parsing luks metadata: {e}"))?;
    let discards = v["config"]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "allow-discards"));
    if discards != (l.discard == Some(true)) {
        return Err(format!(
            "volume allow-discards flag {discards} doesn't match expected value {}",
            l.discard == Some(true)
        ));
    }
    if open_mapping(&l.name, dev)? {
        // Already open over this very device (a second run of the stage):
        // a second mapping cannot be made, so only the key is proved.
        let mut a = strs(&["open", "--test-passphrase", "--key-file"]);
        a.push(key.display().to_string());
        a.push(dev.to_string());
        return tool("cryptsetup", &a)
            .map(|_| ())
            .map_err(|_| "failed to open device using specified keyfile".to_string());
    }
    tool("cryptsetup", &luks_open_args(l, dev, key))
        .map(|_| ())
        .map_err(|_| "failed to open device using specified keyfile".to_string())
}

/// Whether `/dev/mapper/<name>` is active over `dev`; an active mapping of
/// that name over another device is an error (opening would clash with it).
pub(crate) fn open_mapping(name: &str, dev: &str) -> std::result::Result<bool, String> {
    let Ok(dm) = std::fs::canonicalize(Path::new("/dev/mapper").join(name)) else {
        return Ok(false);
    };
    let dev_name = std::fs::canonicalize(dev)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_os_string()));
    let slaves = dm
        .file_name()
        .map(|n| Path::new("/sys/class/block").join(n).join("slaves"));
    let over_dev = match (dev_name, slaves) {
        (Some(d), Some(s)) => s.join(d).exists(),
        _ => false,
    };
    if over_dev {
        Ok(true)
    } else {
        Err(format!(
            "a device-mapper device named {name:?} ({}) is already active over another device",
            dm.display()
        ))
    }
}

/// Whether `dev` holds a LUKS2 header; a LUKS1 header is an error (it can be
/// neither reused nor silently overwritten).
fn is_luks2(dev: &str) -> std::result::Result<bool, String> {
    let ok = |args: &[&str]| {
        tools::command("cryptsetup")
            .args(args)
            .output()
            .map(|o| o.status.success())
            .map_err(|e| format!("running cryptsetup: {}", io_msg(&e)))
    };
    if ok(&["isLuks", dev, "--type", "luks2"])? {
        return Ok(true);
    }
    if ok(&["isLuks", dev])? {
        return Err(format!(
            "{dev} is a luks device but not luks2; Ignition cannot reuse it"
        ));
    }
    Ok(false)
}

fn create_luks(
    l: &Luks,
    at: &str,
    fetcher: &mut Fetcher,
    state: &mut State,
    timeout: Duration,
) -> Result<()> {
    if l.clevis.tpm2.is_some()
        || !l.clevis.tang.is_empty()
        || l.clevis.threshold.is_some()
        || l.clevis.custom.pin.is_some()
    {
        return Err(Error::at(
            format!("{at}.clevis"),
            "clevis is not supported by ferrocore (use keyFile)",
        ));
    }
    if l.cex.enabled == Some(true) {
        return Err(Error::at(
            format!("{at}.cex"),
            "cex is not supported by ferrocore",
        ));
    }
    let device = l.device.as_deref().unwrap_or_default();
    let dev = wait_for(device, timeout)
        .map_err(|e| Error::at(format!("{at}.device"), e))?
        .display()
        .to_string();
    let data = if l.key_file.key().is_empty() {
        // Upstream: 4096 random bytes, hex encoded (clevis chokes on binary keys).
        let mut b = vec![0u8; 4096];
        random(&mut b)?;
        hex::encode(b).into_bytes()
    } else {
        crate::files::fetch(fetcher, &l.key_file, &format!("{at}.keyFile"))?
    };
    let key = TempKey::new(&data)?;
    // Recorded before formatting so a reused volume's key is persisted too.
    state
        .luks_persist_key_files
        .get_or_insert_with(Default::default)
        .insert(
            l.name.clone(),
            serde_json::Value::String(format!(
                "data:;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&data)
            )),
        );
    let run = |args: Vec<String>, what: &str| {
        tool("cryptsetup", &args).map_err(|e| Error::at(at, format!("{what}: {e}")))
    };
    if l.wipe_volume != Some(true) {
        let luks2 = is_luks2(&dev).map_err(|e| Error::at(at, e))?;
        let info = probe(Path::new(&dev)).map_err(|e| e.or_at(at))?;
        if luks2 {
            reuse_luks(l, &dev, &info, &tools::path_for_tool(&key.0)).map_err(|e| {
                Error::at(
                    at,
                    format!("volume wipe was not requested and luks device {device:?} could not be reused: {e}"),
                )
            })?;
            return settle();
        }
        if !info.fs_type.is_empty() {
            return Err(Error::at(
                at,
                format!(
                    "volume at {device:?} is not of the correct type (found {}) and a volume wipe was not requested",
                    info.fs_type
                ),
            ));
        }
    } else {
        tool("wipefs", &strs(&["-a", &dev]))
            .map_err(|e| Error::at(at, format!("wipefs failed: {e}")))?;
    }
    let mut args = strs(&["luksFormat", "--type", "luks2", "--key-file"]);
    args.push(tools::path_for_tool(&key.0).display().to_string());
    if let Some(lab) = l.label.as_deref().filter(|s| !s.is_empty()) {
        args.extend(strs(&["--label", lab]));
    }
    if let Some(u) = l.uuid.as_deref().filter(|s| !s.is_empty()) {
        args.extend(strs(&["--uuid", u]));
    }
    args.extend(l.options.iter().cloned());
    // cryptsetup asks for "YES" on a terminal; never block on one.
    args.push("--batch-mode".into());
    args.push(dev.clone());
    run(args, "cryptsetup failed")?;
    run(
        luks_open_args(l, &dev, &tools::path_for_tool(&key.0)),
        "opening luks device",
    )?;
    settle()
}

/// Files stage part for LUKS (upstream `createCrypttabEntries`): key files
/// recorded by the disks stage go to `/etc/luks/<name>` (0600, dir 0700) and
/// one `name UUID=<uuid> /etc/luks/<name> luks` line per volume is appended
/// to `/etc/crypttab` (0600).
pub(crate) fn write_crypttab(root: &Path, cfg: &Config, state: &State) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if cfg.storage.luks.is_empty() {
        return Ok(());
    }
    let keys = state.luks_persist_key_files.clone().unwrap_or_default();
    let etc_luks = crate::path::join_path(root, "/etc/luks")
        .map_err(|e| Error::new(format!("building keyfile dir path: {}", io_msg(&e))))?;
    let mut lines = String::new();
    for (i, l) in cfg.storage.luks.iter().enumerate() {
        let at = format!("$.storage.luks.{i}");
        let dev = l.device.as_deref().unwrap_or_default();
        let uuid = tool("cryptsetup", &strs(&["luksUUID", dev]))
            .map_err(|e| Error::at(&at, format!("gathering luks uuid: {e}")))?;
        let url = keys.get(&l.name).and_then(|v| v.as_str()).ok_or_else(|| {
            Error::at(
                &at,
                format!("no key file for {:?} recorded by the disks stage", l.name),
            )
        })?;
        let data = crate::resource::decode_data_url(url)
            .map_err(|e| Error::at(&at, format!("reading keyfile for {}: {e}", l.name)))?;
        if !etc_luks.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&etc_luks)
                .map_err(|e| crate::error::path_err("mkdir", &etc_luks, &e))?;
            crate::passwd::set_mode(&etc_luks, 0o700)?;
        }
        crate::state::write_atomic(&etc_luks.join(&l.name), &data, 0o600)?;
        lines.push_str(&format!(
            "{} UUID={} /etc/luks/{} luks\n",
            l.name,
            uuid.trim(),
            l.name
        ));
    }
    let tab = crate::path::join_path(root, "/etc/crypttab")
        .map_err(|e| Error::new(format!("building crypttab filepath: {}", io_msg(&e))))?;
    let mut old = match std::fs::read(&tab) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(crate::error::path_err("open", &tab, &e)),
    };
    old.extend_from_slice(lines.as_bytes());
    crate::state::write_atomic(&tab, &old, 0o600)
}

// --------------------------------------------------------------- filesystems

/// Lower-cases a UUID and, for FAT, drops the dash of `A1B2-C3D4`, which
/// mkfs.fat does not accept (upstream `canonicalizeFilesystemUUID`).
pub(crate) fn canonical_uuid(format: &str, uuid: &str) -> String {
    let mut u = uuid.to_lowercase();
    if format == "vfat" && u.len() >= 5 && u.as_bytes()[4] == b'-' {
        u.remove(4);
    }
    u
}

/// Whether an existing filesystem satisfies the config without mkfs.
pub(crate) fn fs_reusable(fs: &Filesystem, info: &FsInfo) -> bool {
    let want = match fs.format.as_deref() {
        Some("none") | None => "",
        Some(f) => f,
    };
    info.fs_type == want
        && fs.label.as_ref().is_none_or(|l| *l == info.label)
        && fs
            .uuid
            .as_ref()
            .is_none_or(|u| canonical_uuid(&info.fs_type, &info.uuid) == canonical_uuid(want, u))
}

/// mkfs program and arguments for `fs` on `dev`; None for `none`.
pub(crate) fn mkfs_command(
    fs: &Filesystem,
    dev: &str,
) -> std::result::Result<Option<(String, Vec<String>)>, String> {
    let format = fs.format.as_deref().unwrap_or_default();
    let mut a: Vec<String> = fs.options.clone();
    let uuid = fs.uuid.as_deref().map(|u| canonical_uuid(format, u));
    let label = fs.label.clone();
    let prog = match format {
        "btrfs" | "ext4" | "swap" => {
            a.push(
                if format == "btrfs" {
                    "--force"
                } else if format == "ext4" {
                    "-F"
                } else {
                    "-f"
                }
                .into(),
            );
            if let Some(u) = uuid {
                a.extend(["-U".to_string(), u]);
            }
            if let Some(l) = label {
                a.extend(["-L".to_string(), l]);
            }
            match format {
                "btrfs" => "mkfs.btrfs",
                "ext4" => "mkfs.ext4",
                _ => "mkswap",
            }
        }
        "xfs" => {
            a.push("-f".into());
            if let Some(u) = uuid {
                a.extend(["-m".to_string(), format!("uuid={u}")]);
            }
            if let Some(l) = label {
                a.extend(["-L".to_string(), l]);
            }
            "mkfs.xfs"
        }
        "vfat" => {
            // mkfs.fat has no force flag: it always overwrites.
            if let Some(u) = uuid {
                a.extend(["-i".to_string(), u]);
            }
            if let Some(l) = label {
                a.extend(["-n".to_string(), l]);
            }
            "mkfs.fat"
        }
        "none" => return Ok(None),
        other => return Err(format!("unsupported filesystem format: {other:?}")),
    };
    a.push(dev.to_string());
    Ok(Some((prog.to_string(), a)))
}

fn create_filesystem(fs: &Filesystem, at: &str, timeout: Duration) -> Result<()> {
    if fs.format.is_none() {
        return Ok(());
    }
    let dev = wait_for(&fs.device, timeout).map_err(|e| Error::at(format!("{at}.device"), e))?;
    let dev_s = dev.display().to_string();
    if fs.wipe_filesystem != Some(true) {
        let info = probe(&dev).map_err(|e| e.or_at(at))?;
        if fs_reusable(fs, &info) {
            return Ok(());
        }
        if !info.fs_type.is_empty() {
            return Err(Error::at(
                at,
                format!(
                    "filesystem at {:?} is not of the correct type, label, or UUID (found {}, {:?}, {}) and a filesystem wipe was not requested",
                    fs.device, info.fs_type, info.label, info.uuid
                ),
            ));
        }
    }
    tool("wipefs", &strs(&["-a", &dev_s]))
        .map_err(|e| Error::at(at, format!("wipefs failed: {e}")))?;
    match mkfs_command(fs, &dev_s).map_err(|e| Error::at(format!("{at}.format"), e))? {
        None => Ok(()),
        Some((prog, args)) => tool(&prog, &args)
            .map(|_| ())
            .map_err(|e| Error::at(at, format!("mkfs failed: {e}"))),
    }
}

/// Runs the disks stage on `cfg`. `timeout` bounds the wait for each device.
pub(crate) fn run(
    cfg: &Config,
    state: &mut State,
    fetcher: &mut Fetcher,
    timeout: Duration,
) -> Result<()> {
    let s = &cfg.storage;
    if s.disks.is_empty() && s.raid.is_empty() && s.filesystems.is_empty() && s.luks.is_empty() {
        return Ok(());
    }
    for (i, disk) in s.disks.iter().enumerate() {
        let at = format!("$.storage.disks.{i}");
        let dev =
            wait_for(&disk.device, timeout).map_err(|e| Error::at(format!("{at}.device"), e))?;
        partition_disk(disk, &at, &dev)?;
    }
    for (i, md) in s.raid.iter().enumerate() {
        create_raid(md, &format!("$.storage.raid.{i}"), timeout)?;
    }
    if !s.luks.is_empty() {
        // Reset like upstream: only this run's volumes are persisted.
        state.luks_persist_key_files = Some(Default::default());
    }
    for (i, l) in s.luks.iter().enumerate() {
        create_luks(l, &format!("$.storage.luks.{i}"), fetcher, state, timeout)?;
    }
    // Filesystems are made in parallel, as upstream; the first failing one
    // (config order) is reported, the others are appended to its message.
    // The workers run the tools where this thread would (a per-thread setting).
    let tools_root = tools::root();
    let results: Vec<Result<()>> = std::thread::scope(|sc| {
        let handles: Vec<_> = s
            .filesystems
            .iter()
            .enumerate()
            .map(|(i, fs)| {
                let tools_root = tools_root.clone();
                sc.spawn(move || {
                    let _tools = tools::in_root(tools_root.as_deref());
                    create_filesystem(fs, &format!("$.storage.filesystems.{i}"), timeout)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::new("filesystem worker panicked")))
            })
            .collect()
    });
    let mut errs = results.into_iter().filter_map(|r| r.err());
    if let Some(mut first) = errs.next() {
        for e in errs {
            first.message.push('\n');
            first.message.push_str(&e.to_string());
        }
        return Err(first);
    }
    settle()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two superblocks on one device (xfs at 0, ext4 at 1 KiB): blkid
    /// refuses to choose, the probe takes the first, as upstream does.
    #[test]
    fn ambivalent_devices_report_the_first_signature() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a.img"), t.path().join("b.img"));
        std::fs::File::create(&a)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        std::fs::File::create(&b)
            .unwrap()
            .set_len(320 << 20)
            .unwrap();
        tool("mkfs.ext4", &["-q".into(), a.display().to_string()]).unwrap();
        tool(
            "mkfs.xfs",
            &[
                "-q".into(),
                "-L".into(),
                "x".into(),
                b.display().to_string(),
            ],
        )
        .unwrap();
        // Only the ext4 superblock is copied, so the image stays sparse.
        use std::os::unix::fs::FileExt;
        let mut sb = vec![0u8; 1024];
        std::fs::File::open(&a)
            .unwrap()
            .read_exact_at(&mut sb, 1024)
            .unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
        f.write_all_at(&sb, 1024).unwrap();
        let info = probe(&b).unwrap();
        assert_eq!((info.fs_type.as_str(), info.label.as_str()), ("xfs", "x"));
        assert_eq!(info.uuid.len(), 36);
    }

    #[test]
    fn pretend_output() {
        let out = "Partition number (1):\nPartition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)\nFirst sector: 2048 (at 1024.0 KiB)\nLast sector: 133119 (at 65.0 MiB)\nPartition size: 131072 sectors (64.0 MiB)\nFirst sector: 133120 (at 65.0 MiB)\nLast sector: 262110 (at 128.0 MiB)\n";
        let m = parse_pretend(out, &[1, 3]).unwrap();
        assert_eq!(m[&1], (2048, 131072));
        assert_eq!(m[&3], (133120, 128991));
        assert!(parse_pretend(out, &[1]).is_err());
        assert!(parse_pretend("First sector: 1 (x)\n", &[1]).is_err());
        assert!(parse_pretend("First sector: x (y)\nLast sector: 2 (z)\n", &[1]).is_err());
    }

    #[test]
    fn sgdisk_arguments() {
        let p = SpecPart {
            index: 0,
            number: 2,
            start: Some(0),
            size: None,
            label: Some("a b".into()),
            type_guid: Some("T".into()),
            guid: None,
            wipe_entry: false,
            should_exist: true,
            resize: false,
        };
        assert_eq!(
            sgdisk_args(&[1], &[p], &[2]),
            [
                "--delete=1",
                "--new=2:0:+0",
                "--change-name=2:a b",
                "--typecode=2:T",
                "--info=2"
            ]
        );
    }

    #[test]
    fn uuids_and_reuse() {
        assert_eq!(canonical_uuid("vfat", "AB12-CD34"), "ab12cd34");
        assert_eq!(canonical_uuid("ext4", "AB12-CD34"), "ab12-cd34");
        let fs = Filesystem {
            device: "/dev/x".into(),
            format: Some("vfat".into()),
            label: Some("EFI".into()),
            uuid: Some("ab12cd34".into()),
            ..Default::default()
        };
        let mut info = FsInfo {
            fs_type: "vfat".into(),
            uuid: "AB12-CD34".into(),
            label: "EFI".into(),
            pt_type: String::new(),
        };
        assert!(fs_reusable(&fs, &info));
        info.label = "other".into();
        assert!(!fs_reusable(&fs, &info));
        let none = Filesystem {
            format: Some("none".into()),
            ..Default::default()
        };
        assert!(fs_reusable(&none, &FsInfo::default()));
        assert!(!fs_reusable(&none, &info));
    }

    #[test]
    fn mkfs_arguments() {
        let mut fs = Filesystem {
            format: Some("xfs".into()),
            label: Some("data".into()),
            uuid: Some("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0".into()),
            options: vec!["-b".into(), "size=4096".into()],
            ..Default::default()
        };
        let (p, a) = mkfs_command(&fs, "/dev/d").unwrap().unwrap();
        assert_eq!(p, "mkfs.xfs");
        assert_eq!(
            a,
            [
                "-b",
                "size=4096",
                "-f",
                "-m",
                "uuid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "-L",
                "data",
                "/dev/d"
            ]
        );
        fs.format = Some("vfat".into());
        fs.options.clear();
        fs.uuid = Some("AB12-CD34".into());
        let (p, a) = mkfs_command(&fs, "/dev/d").unwrap().unwrap();
        assert_eq!(
            (p.as_str(), a),
            (
                "mkfs.fat",
                strs(&["-i", "ab12cd34", "-n", "data", "/dev/d"])
            )
        );
        fs.format = Some("zfs".into());
        assert_eq!(
            mkfs_command(&fs, "/dev/d").unwrap_err(),
            "unsupported filesystem format: \"zfs\""
        );
        fs.format = Some("none".into());
        assert!(mkfs_command(&fs, "/dev/d").unwrap().is_none());
    }

    #[test]
    fn mdadm_arguments() {
        let md = Raid {
            name: "data".into(),
            level: Some("raid1".into()),
            devices: vec!["/dev/a".into(), "/dev/b".into(), "/dev/c".into()],
            spares: Some(1),
            options: vec!["--metadata=1.2".into()],
        };
        assert_eq!(
            mdadm_args(&md, &strs(&["/dev/x", "/dev/y", "/dev/z"])),
            strs(&[
                "--create",
                "data",
                "--force",
                "--run",
                "--homehost",
                "any",
                "--level",
                "raid1",
                "--raid-devices",
                "2",
                "--spare-devices",
                "1",
                "--metadata=1.2",
                "/dev/x",
                "/dev/y",
                "/dev/z"
            ])
        );
    }
}
