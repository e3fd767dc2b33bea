//! `ignition plan`: what the disks stage would do to the given devices,
//! without writing anything. Partitions are decided by the stage's own code
//! ([`crate::disks`]: the GPT as read plus `sgdisk --pretend`), existing
//! filesystems and volumes are probed with `blkid -p`, and every step that
//! destroys an existing partition, filesystem or signature is flagged as
//! data loss.
//!
//! Only the listed devices (and their partitions) are inspected: a config
//! naming any other existing device is reported as a failing step, so a plan
//! never reads (or lets the operator overlook) a disk nobody pointed it at.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ignition_config::types::{Config, Filesystem};
use serde::Serialize;

use crate::disks::{self, FsInfo, PartOp};
use crate::error::{io_msg, Error, Result};
use crate::gpt::GptTable;

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// `sgdisk --zap-all`: every partition entry goes.
    WipeTable,
    /// Something new is made (partition, array, volume, filesystem).
    Create,
    /// The existing thing satisfies the config and is kept.
    Keep,
    /// A partition entry is deleted.
    Delete,
    /// A partition entry is rewritten with a new size, contents kept.
    Resize,
    /// The existing thing is destroyed and made anew.
    Recreate,
    /// Signatures are wiped and nothing is made (`format: none`).
    Wipe,
    /// Nothing to do (a partition that should not exist and does not).
    Nothing,
    /// The disks stage would fail here.
    Fail,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::WipeTable => "wipe-table",
            Action::Create => "create",
            Action::Keep => "keep",
            Action::Delete => "delete",
            Action::Resize => "resize",
            Action::Recreate => "recreate",
            Action::Wipe => "wipe",
            Action::Nothing => "nothing",
            Action::Fail => "FAIL",
        }
    }
}

/// One planned step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Config path (`$.storage.disks.0.partitions.1`).
    pub path: String,
    /// The device acted on, as configured (plus `#N` for a partition number).
    pub device: String,
    /// What happens.
    pub action: Action,
    /// Specifics (sectors, labels, why it fails).
    pub detail: String,
    /// Set when existing data is destroyed: what is lost.
    #[serde(rename = "dataLoss", skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<String>,
}

/// The whole dry run, in stage order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Steps, in the order the stage would take them.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Whether any step destroys existing data.
    pub fn data_loss(&self) -> bool {
        self.steps.iter().any(|s| s.data_loss.is_some())
    }

    /// Whether the disks stage would fail.
    pub fn fails(&self) -> bool {
        self.steps.iter().any(|s| s.action == Action::Fail)
    }

    /// Human-readable listing, one step per line, data loss on its own line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:<10} {}  {}: {}",
                s.action.word(),
                s.path,
                s.device,
                s.detail
            );
            if let Some(d) = &s.data_loss {
                let _ = writeln!(out, "{:<10} DATA LOSS: {d}", "");
            }
        }
        let lossy = self.steps.iter().filter(|s| s.data_loss.is_some()).count();
        let failing = self
            .steps
            .iter()
            .filter(|s| s.action == Action::Fail)
            .count();
        let _ = writeln!(
            out,
            "{} steps, {lossy} destroying data, {failing} failing",
            self.steps.len()
        );
        out
    }

    fn push(
        &mut self,
        path: String,
        device: String,
        action: Action,
        detail: String,
        data_loss: Option<String>,
    ) {
        self.steps.push(Step {
            path,
            device,
            action,
            detail,
            data_loss,
        });
    }
}

/// Where a configured device name leads.
enum Dev {
    /// An existing node on one of the listed devices.
    Real(PathBuf),
    /// Something this plan creates first (new partition, array, volume),
    /// with the signature left there by an old partition at the same start
    /// (sgdisk rewrites entries, not data, so the stage would find it).
    Planned(String, Option<FsInfo>),
    /// Unusable, with the reason.
    Bad(String),
}

struct Ctx {
    allowed: Vec<PathBuf>,
    /// Device names that earlier steps create, with what they are.
    planned: BTreeMap<String, (String, Option<FsInfo>)>,
}

/// The whole disk a partition node belongs to (sysfs), if it is one.
fn parent_disk(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?;
    let sys = Path::new("/sys/class/block").join(name);
    if !sys.join("partition").exists() {
        return None;
    }
    let real = std::fs::canonicalize(&sys).ok()?;
    Some(Path::new("/dev").join(real.parent()?.file_name()?))
}

/// `/dev/<disk><p>N`, the kernel's name for partition N.
fn partition_node(disk: &Path, n: i64) -> PathBuf {
    let s = disk.display().to_string();
    let sep = if s.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("{s}{sep}{n}"))
}

impl Ctx {
    fn resolve(&self, dev: &str) -> Dev {
        if let Some((what, old)) = self.planned.get(dev) {
            return Dev::Planned(what.clone(), old.clone());
        }
        match std::fs::canonicalize(dev) {
            Ok(p) => {
                if let Some((what, old)) = self.planned.get(&p.display().to_string()) {
                    return Dev::Planned(what.clone(), old.clone());
                }
                let ok = self.allowed.contains(&p)
                    || parent_disk(&p).is_some_and(|d| self.allowed.contains(&d));
                if ok {
                    Dev::Real(p)
                } else {
                    Dev::Bad(format!(
                        "{dev} ({}) is not one of the --devices given, nor a partition of one",
                        p.display()
                    ))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Dev::Bad(format!(
                "{dev} does not exist and nothing in the config creates it"
            )),
            Err(e) => Dev::Bad(format!("resolving {dev}: {}", io_msg(&e))),
        }
    }
}

fn describe(i: &FsInfo) -> String {
    let mut s = if i.fs_type.is_empty() {
        format!("a {} partition table", i.pt_type)
    } else {
        format!("{} signature", i.fs_type)
    };
    if !i.label.is_empty() {
        let _ = write!(s, " label {:?}", i.label);
    }
    if !i.uuid.is_empty() {
        let _ = write!(s, " UUID {}", i.uuid);
    }
    s
}

/// Probe that treats "nothing found" and probe errors alike for reporting.
fn probe_desc(dev: &Path) -> Option<String> {
    match disks::probe(dev) {
        Ok(i) if i.fs_type.is_empty() && i.pt_type.is_empty() => None,
        Ok(i) => Some(describe(&i)),
        Err(e) => Some(format!("unreadable contents ({})", e.message)),
    }
}

fn mib(sectors: i64, ss: i64) -> String {
    let b = sectors * ss;
    if b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

/// Plans the disks stage of `cfg` against `devices` (whole disks or
/// partitions that the config may touch). Fails only when a listed device
/// cannot be resolved; everything else becomes a step.
pub fn plan(cfg: &Config, devices: &[PathBuf]) -> Result<Plan> {
    let mut allowed = Vec::new();
    for d in devices {
        allowed.push(
            std::fs::canonicalize(d)
                .map_err(|e| Error::new(format!("device {}: {}", d.display(), io_msg(&e))))?,
        );
    }
    let mut cx = Ctx {
        allowed,
        planned: BTreeMap::new(),
    };
    let mut plan = Plan::default();
    let st = &cfg.storage;

    for (i, disk) in st.disks.iter().enumerate() {
        let at = format!("$.storage.disks.{i}");
        let dev = match cx.resolve(&disk.device) {
            Dev::Real(p) => p,
            Dev::Planned(w, _) => {
                plan.push(
                    at,
                    disk.device.clone(),
                    Action::Fail,
                    format!("partitioning {w} is not supported by a plan"),
                    None,
                );
                continue;
            }
            Dev::Bad(why) => {
                plan.push(
                    format!("{at}.device"),
                    disk.device.clone(),
                    Action::Fail,
                    why,
                    None,
                );
                continue;
            }
        };
        let mut table = match crate::gpt::read(&dev) {
            Ok(t) => t,
            Err(e) => {
                plan.push(at, disk.device.clone(), Action::Fail, e.message, None);
                continue;
            }
        };
        let node_info = |n: i64| probe_desc(&partition_node(&dev, n));
        let original = table.clone();
        let mut fresh = false;
        if disk.wipe_table == Some(true) {
            let mut lost: Vec<String> = table
                .partitions
                .iter()
                .map(|p| match node_info(p.number) {
                    Some(d) => format!("partition {} {:?} ({d})", p.number, p.label),
                    None => format!("partition {} {:?}", p.number, p.label),
                })
                .collect();
            if !table.present {
                if let Some(d) = probe_desc(&dev) {
                    lost.push(format!("whole-disk {d}"));
                }
            }
            let detail = format!("{} partition entries removed", table.partitions.len());
            plan.push(
                format!("{at}.wipeTable"),
                disk.device.clone(),
                Action::WipeTable,
                detail,
                (!lost.is_empty()).then(|| lost.join("; ")),
            );
            table = GptTable {
                sector_size: table.sector_size,
                ..Default::default()
            };
            fresh = true;
        }
        let decisions = match disks::decide_partitions(disk, &dev, &table, fresh) {
            Ok(d) => d,
            Err(e) => {
                plan.push(at, disk.device.clone(), Action::Fail, e, None);
                continue;
            }
        };
        let ss = table.sector_size;
        // Where the commit would really put things (only meaningful when no
        // partition fails: the stage stops before committing otherwise).
        let mut placed = BTreeMap::new();
        let mut assigned = BTreeMap::new();
        if decisions.iter().all(|d| d.op.is_ok()) {
            if let Ok((del, cre)) = disks::commit_ops(&decisions, &at) {
                if !cre.is_empty() {
                    match disks::pretend_commit(&dev, &table, fresh, &del, &cre) {
                        Ok((p, a)) => {
                            placed = p;
                            assigned = a;
                        }
                        Err(e) => {
                            plan.push(at, disk.device.clone(), Action::Fail, e, None);
                            continue;
                        }
                    }
                }
            }
        }
        for d in decisions {
            let p = &d.spec;
            let pat = format!("{at}.partitions.{}", p.index);
            let number = assigned.get(&p.index).copied().unwrap_or(p.number);
            let devname = if number == 0 {
                format!("{} #next", disk.device)
            } else {
                format!("{} #{number}", disk.device)
            };
            let (start, size) = match placed.get(&number) {
                Some(&(a, b)) => (Some(a), Some(b)),
                None => (p.start, p.size),
            };
            let geometry = |start: Option<i64>, size: Option<i64>| {
                let s = start.map_or("sgdisk's default start".to_string(), |s| {
                    format!("start sector {s}")
                });
                let z = size.map_or("the largest free size".to_string(), |z| {
                    format!("{z} sectors ({})", mib(z, ss))
                });
                format!("{s}, {z}")
            };
            let mut names = Vec::new();
            if let Some(l) = &p.label {
                names.push(format!("label {l:?}"));
            }
            if let Some(t) = &p.type_guid {
                names.push(format!("type {t}"));
            }
            if let Some(g) = &p.guid {
                names.push(format!("GUID {g}"));
            }
            let names = if names.is_empty() {
                String::new()
            } else {
                format!(", {}", names.join(", "))
            };
            let contents = || {
                if fresh {
                    None
                } else {
                    d.existing.as_ref().and_then(|e| node_info(e.number))
                }
            };
            let (action, detail, loss) = match &d.op {
                Err(m) => (Action::Fail, m.clone(), None),
                Ok(PartOp::Absent) => (Action::Nothing, "absent, as required".to_string(), None),
                Ok(PartOp::Keep) => (
                    Action::Keep,
                    format!(
                        "matches ({})",
                        geometry(
                            d.existing.as_ref().map(|e| e.start),
                            d.existing.as_ref().map(|e| e.size)
                        )
                    ),
                    None,
                ),
                Ok(PartOp::Create) => (
                    Action::Create,
                    format!("{}{names}", geometry(start, size)),
                    None,
                ),
                Ok(PartOp::Delete) => (
                    Action::Delete,
                    "entry removed (shouldExist false)".to_string(),
                    contents().map(|c| format!("partition {} holds {c}", p.number)),
                ),
                Ok(PartOp::Recreate) => (
                    Action::Recreate,
                    format!(
                        "did not match; entry rewritten: {}{names}",
                        geometry(start, size)
                    ),
                    contents().map(|c| format!("partition {} holds {c}", p.number)),
                ),
                Ok(PartOp::Resize) => {
                    let old = d.existing.as_ref().map_or(0, |e| e.size);
                    let new = p.size.unwrap_or(old);
                    let shrink = new < old;
                    (
                        Action::Resize,
                        format!(
                            "{} -> {} sectors ({} -> {}), contents kept",
                            old,
                            new,
                            mib(old, ss),
                            mib(new, ss)
                        ),
                        contents().filter(|_| shrink).map(|c| {
                            format!("shrinking partition {} cuts off the end of {c}", p.number)
                        }),
                    )
                }
            };
            if matches!(action, Action::Create | Action::Recreate) {
                let mut what = format!("new partition {number} on {}", disk.device);
                let old = original
                    .partitions
                    .iter()
                    .find(|o| Some(o.start) == start)
                    .and_then(|o| {
                        let info = disks::probe(&partition_node(&dev, o.number)).ok()?;
                        (!info.fs_type.is_empty()).then(|| {
                            let _ =
                                write!(what, " (starting where old partition {} did)", o.number);
                            info
                        })
                    });
                let what = (what, old);
                if number != 0 {
                    cx.planned.insert(
                        partition_node(&dev, number).display().to_string(),
                        what.clone(),
                    );
                }
                if let Some(l) = &p.label {
                    cx.planned
                        .insert(format!("/dev/disk/by-partlabel/{l}"), what.clone());
                }
                if let Some(g) = &p.guid {
                    cx.planned.insert(
                        format!("/dev/disk/by-partuuid/{}", g.to_lowercase()),
                        what.clone(),
                    );
                }
            }
            plan.push(pat, devname, action, detail, loss);
        }
    }

    for (i, md) in st.raid.iter().enumerate() {
        let at = format!("$.storage.raid.{i}");
        let mut losses = Vec::new();
        let mut bad = None;
        // Resolved nodes of the members, while all of them exist already.
        let mut members = Some(Vec::new());
        for (j, m) in md.devices.iter().enumerate() {
            match cx.resolve(m) {
                Dev::Real(p) => {
                    if let Some(d) = probe_desc(&p) {
                        losses.push(format!("member {m} holds {d}"));
                    }
                    if let Some(v) = members.as_mut() {
                        v.push(p);
                    }
                }
                Dev::Planned(..) => members = None,
                Dev::Bad(why) => bad = bad.or(Some((format!("{at}.devices.{j}"), why))),
            }
        }
        let dev = disks::array_node(&md.name);
        if let Some((p, why)) = bad {
            plan.push(p, dev, Action::Fail, why, None);
            continue;
        }
        if let Some(node) = members.and_then(|m| disks::running_array(md, &m)) {
            plan.push(
                at,
                dev,
                Action::Keep,
                format!(
                    "array {} already running with the configured level and members",
                    node.display()
                ),
                None,
            );
            // Built from listed devices only: what it holds may be inspected.
            cx.allowed.push(node);
            continue;
        }
        let spares = md.spares.unwrap_or(0);
        plan.push(
            at,
            dev.clone(),
            Action::Create,
            format!(
                "mdadm {} over {} devices ({spares} spare)",
                md.level.as_deref().unwrap_or("?"),
                md.devices.len()
            ),
            (!losses.is_empty()).then(|| losses.join("; ")),
        );
        cx.planned
            .insert(dev, (format!("new RAID array {}", md.name), None));
    }

    for (i, l) in st.luks.iter().enumerate() {
        let at = format!("$.storage.luks.{i}");
        let device = l.device.clone().unwrap_or_default();
        let mapper = format!("/dev/mapper/{}", l.name);
        let clevis =
            l.clevis.tpm2.is_some() || !l.clevis.tang.is_empty() || l.clevis.custom.pin.is_some();
        let step = if clevis {
            (
                format!("{at}.clevis"),
                Action::Fail,
                "clevis is not supported by ferrocore (use keyFile)".to_string(),
                None,
            )
        } else {
            match cx.resolve(&device) {
                Dev::Bad(why) => (format!("{at}.device"), Action::Fail, why, None),
                Dev::Planned(w, _) => (at.clone(), Action::Create, format!("LUKS2 on {w}"), None),
                Dev::Real(p) => match disks::probe(&p) {
                    Err(e) => (at.clone(), Action::Fail, e.message, None),
                    Ok(info) if l.wipe_volume == Some(true) => {
                        let loss = (!info.fs_type.is_empty()).then(|| format!("{device} holds {}", describe(&info)));
                        (at.clone(), if loss.is_some() { Action::Recreate } else { Action::Create }, "wipefs, luksFormat (LUKS2)".into(), loss)
                    }
                    Ok(info) if info.fs_type == "crypto_LUKS" => {
                        let mut why = Vec::new();
                        if l.key_file.key().is_empty() {
                            why.push("config must specify keyfile".to_string());
                        }
                        if let Some(lab) = l.label.as_ref().filter(|lab| **lab != info.label) {
                            why.push(format!("volume label {:?} doesn't match expected label {lab:?}", info.label));
                        }
                        if let Some(u) = l.uuid.as_ref().filter(|u| **u != info.uuid) {
                            why.push(format!("volume UUID {:?} doesn't match expected UUID {u:?}", info.uuid));
                        }
                        if why.is_empty() {
                            match disks::open_mapping(&l.name, &p.display().to_string()) {
                                Err(e) => (at.clone(), Action::Fail, format!("luks device could not be reused: {e}"), None),
                                Ok(true) => {
                                    // Open over a listed device: what it holds may be inspected.
                                    if let Ok(dm) = std::fs::canonicalize(&mapper) {
                                        cx.allowed.push(dm);
                                    }
                                    plan.push(at.clone(), device.clone(), Action::Keep, format!("existing LUKS volume, open as {mapper}, kept if the key opens it ({})", describe(&info)), None);
                                    continue;
                                }
                                Ok(false) => (at.clone(), Action::Keep, format!("existing LUKS volume reused if the key opens it ({})", describe(&info)), None),
                            }
                        } else {
                            (at.clone(), Action::Fail, format!("luks device could not be reused: {}", why.join("; ")), None)
                        }
                    }
                    Ok(info) if !info.fs_type.is_empty() => (
                        at.clone(),
                        Action::Fail,
                        format!("volume is not of the correct type (found {}) and a volume wipe was not requested", info.fs_type),
                        None,
                    ),
                    Ok(_) => (at.clone(), Action::Create, "luksFormat (LUKS2)".into(), None),
                },
            }
        };
        plan.push(step.0, device.clone(), step.1, step.2, step.3);
        let what = (format!("LUKS volume {}", l.name), None);
        cx.planned.insert(mapper, what.clone());
        cx.planned
            .insert(format!("/dev/disk/by-id/dm-name-{}", l.name), what);
    }

    for (i, fs) in st.filesystems.iter().enumerate() {
        let at = format!("$.storage.filesystems.{i}");
        let Some(format) = fs.format.as_deref() else {
            continue;
        };
        if format != "none" && disks::mkfs_command(fs, "-").is_err() {
            plan.push(
                format!("{at}.format"),
                fs.device.clone(),
                Action::Fail,
                format!("unsupported filesystem format: {format:?}"),
                None,
            );
            continue;
        }
        let mut what = format.to_string();
        if let Some(l) = &fs.label {
            let _ = write!(what, " label {l:?}");
        }
        if let Some(u) = &fs.uuid {
            let _ = write!(what, " UUID {u}");
        }
        let make = if format == "none" {
            Action::Wipe
        } else {
            Action::Create
        };
        let step = match cx.resolve(&fs.device) {
            Dev::Bad(why) => (format!("{at}.device"), Action::Fail, why, None),
            Dev::Planned(w, None) => (at.clone(), make, format!("{what} on {w}"), None),
            Dev::Planned(w, Some(info)) => {
                let (a, d, l) = fs_step(fs, &info, &what, make);
                (
                    at.clone(),
                    a,
                    format!("{d} (on {w}: old {} still there)", describe(&info)),
                    l,
                )
            }
            Dev::Real(p) => match disks::probe(&p) {
                Err(e) => (at.clone(), Action::Fail, e.message, None),
                Ok(info) => {
                    let (a, d, l) = fs_step(fs, &info, &what, make);
                    (at.clone(), a, d, l)
                }
            },
        };
        plan.push(step.0, fs.device.clone(), step.1, step.2, step.3);
    }
    Ok(plan)
}

/// The filesystem rule (upstream `createFilesystem`) applied to what is on
/// the device: (action, detail, data loss).
fn fs_step(
    fs: &Filesystem,
    info: &FsInfo,
    what: &str,
    make: Action,
) -> (Action, String, Option<String>) {
    let found = !info.fs_type.is_empty() || !info.pt_type.is_empty();
    let loss = || found.then(|| format!("{} holds {}", fs.device, describe(info)));
    if fs.wipe_filesystem == Some(true) {
        let action = if found && make == Action::Create {
            Action::Recreate
        } else {
            make
        };
        return (action, format!("wipefs, then {what}"), loss());
    }
    if disks::fs_reusable(fs, info) {
        return (
            Action::Keep,
            format!("existing {} reused", describe(info)),
            None,
        );
    }
    if !info.fs_type.is_empty() {
        return (
            Action::Fail,
            format!(
                "filesystem is not of the correct type, label, or UUID (found {}, {:?}, {}) and a filesystem wipe was not requested",
                info.fs_type, info.label, info.uuid
            ),
            None,
        );
    }
    (make, what.to_string(), loss())
}

/// Reads, parses and validates a config file (any 3.x spec), then plans it.
pub fn plan_file(config: &Path, devices: &[PathBuf]) -> Result<Plan> {
    let raw = std::fs::read(config).map_err(|e| crate::error::path_err("open", config, &e))?;
    let cfg = match ignition_config::parse(&raw) {
        Ok((c, _)) => c,
        Err(e) => {
            let text = e.report().map(|r| r.to_string()).unwrap_or_default();
            return Err(Error::new(format!(
                "{}: {e} {}",
                config.display(),
                text.trim()
            )));
        }
    };
    plan(&cfg, devices)
}
