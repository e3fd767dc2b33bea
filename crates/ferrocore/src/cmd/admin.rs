//! `ferrocore admin`: deployments in a sysroot (upstream `ostree admin` /
//! `rpm-ostree` verbs). Thin wrapper over the `sysroot` crate.
//!
//! [`main`] is also the entry point for the `ostree admin` personality: when
//! args[0] names `ostree` (e.g. `ostree admin`), `status` prints upstream's
//! `ostree admin status` format instead of rpm-ostree's.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ostree_repo::object::to_hex;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use sysroot::bootcount::{BootComplete, BootFailed};
use sysroot::staged::Finalize;
use sysroot::upgrade::{Upgrade, UpgradeOptions};
use sysroot::{DeployOptions, KernelArgs, Sysroot};

/// Manage the deployments of a sysroot.
#[derive(Parser)]
#[command(name = "admin")]
struct Cli {
    /// Physical root (default: $OSTREE_SYSROOT or /).
    #[arg(long, global = true)]
    sysroot: Option<PathBuf>,
    /// Print the merge deployment's directory and exit.
    #[arg(long)]
    print_current_dir: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an empty physical root (boot, ostree/repo, ...).
    InitFs {
        /// Directory to initialize.
        path: PathBuf,
        /// Only create boot/ and ostree/.
        #[arg(long)]
        modern: bool,
    },
    /// Create a stateroot (ostree/deploy/NAME with its shared var).
    #[command(alias = "stateroot-init")]
    OsInit {
        /// Stateroot name.
        name: String,
    },
    /// Deploy a ref or commit as the new default.
    Deploy {
        /// Refspec (`remote:ref`, `ref`) or commit checksum in ostree/repo.
        refspec: String,
        /// Stateroot.
        #[arg(long, overrides_with = "os")]
        os: Option<String>,
        /// Set KEY=VALUE, replacing existing values of KEY.
        #[arg(long = "karg")]
        karg: Vec<String>,
        /// Append a kernel argument.
        #[arg(long = "karg-append")]
        karg_append: Vec<String>,
        /// Delete a kernel argument (KEY or KEY=VALUE).
        #[arg(long = "karg-delete")]
        karg_delete: Vec<String>,
        /// Start from no kernel arguments.
        #[arg(long = "karg-none")]
        karg_none: bool,
        /// Start from the running kernel's arguments (/proc/cmdline).
        #[arg(long = "karg-proc-cmdline", conflicts_with = "karg_none")]
        karg_proc_cmdline: bool,
        /// Do not merge /etc or kargs from the current deployment.
        #[arg(long)]
        no_merge: bool,
        /// Keep all existing deployments.
        #[arg(long)]
        retain: bool,
        /// Keep deployments ordered before the booted one.
        #[arg(long)]
        retain_pending: bool,
        /// Keep deployments ordered after the booted one.
        #[arg(long)]
        retain_rollback: bool,
        /// Add the deployment after the booted one instead of first.
        #[arg(long)]
        not_as_default: bool,
        /// Do not prune the repository.
        #[arg(long)]
        no_prune: bool,
        /// Boot tries for the new default (automatic rollback); 0 = off.
        #[arg(long)]
        boot_tries: Option<u32>,
        /// Stage: apply at shutdown (`finalize-staged`), not now.
        #[arg(long)]
        stage: bool,
        /// With --stage: do not finalize until `lock-finalization --unlock`.
        #[arg(long, requires = "stage")]
        lock_finalization: bool,
    },
    /// Apply the staged deployment (run at shutdown by
    /// ferrocore-finalize-staged.service).
    FinalizeStaged,
    /// Lock or unlock finalization of the staged deployment.
    LockFinalization {
        /// Unlock instead.
        #[arg(long)]
        unlock: bool,
    },
    /// Fetch the origin's ref (file:// remotes) and deploy it if changed.
    Upgrade {
        /// Stateroot.
        #[arg(long, overrides_with = "os")]
        os: Option<String>,
        /// Deploy this commit instead of the ref's head.
        #[arg(long)]
        override_commit: Option<String>,
        /// Permit a target older than the current deployment.
        #[arg(long)]
        allow_downgrade: bool,
        /// Only fetch.
        #[arg(long, conflicts_with = "deploy_only")]
        pull_only: bool,
        /// Do not fetch; deploy what the repository has.
        #[arg(long)]
        deploy_only: bool,
        /// Boot tries for the new default (automatic rollback); 0 = off.
        #[arg(long)]
        boot_tries: Option<u32>,
    },
    /// Follow another ref (`REF`, `REMOTE:REF` or `REMOTE:`) and deploy it.
    Switch {
        /// New refspec.
        refspec: String,
        /// Stateroot.
        #[arg(long, overrides_with = "os")]
        os: Option<String>,
        /// Do not fetch; deploy what the repository has.
        #[arg(long)]
        deploy_only: bool,
    },
    /// Installer helpers (upstream `ostree admin instutil`).
    Instutil {
        #[command(subcommand)]
        cmd: InstutilCmd,
    },
    /// Add a remote and make a deployment's origin follow it.
    SetOrigin {
        /// Deployment index.
        #[arg(long, default_value_t = 0)]
        index: usize,
        /// Remote option KEY=VALUE (e.g. gpg-verify=false).
        #[arg(long = "set")]
        set: Vec<String>,
        /// Remote name.
        remote: String,
        /// Remote URL.
        url: String,
        /// Ref to follow (default: the current one).
        branch: Option<String>,
    },
    /// Remove a deployment by index.
    Undeploy {
        /// Deployment index.
        index: usize,
    },
    /// Protect a deployment from garbage collection.
    Pin {
        /// Deployment indices.
        #[arg(required = true)]
        index: Vec<usize>,
        /// Remove the protection instead.
        #[arg(long, short = 'u')]
        unpin: bool,
    },
    /// Remove protection from garbage collection.
    Unpin {
        /// Deployment indices.
        #[arg(required = true)]
        index: Vec<usize>,
    },
    /// Remove unreferenced deployments, boot files and repo objects.
    Cleanup,
    /// Show or edit the kernel arguments of a deployment (default: index 0).
    Kargs {
        /// Deployment index.
        #[arg(long, default_value_t = 0)]
        deployment: usize,
        /// Set KEY=VALUE, replacing existing values of KEY.
        #[arg(long)]
        replace: Vec<String>,
        /// Append an argument.
        #[arg(long)]
        append: Vec<String>,
        /// Delete an argument.
        #[arg(long)]
        delete: Vec<String>,
        #[command(subcommand)]
        action: Option<KargsCmd>,
    },
    /// Make the previous deployment the default.
    Rollback,
    /// List deployments.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Text layout: `rpm-ostree` or `ostree` (`ostree admin status`);
        /// default: `ostree` when invoked as ostree, else `rpm-ostree`.
        #[arg(long, value_parser = ["rpm-ostree", "ostree"])]
        format: Option<String>,
    },
    /// Report a successful boot (boot counting / automatic rollback).
    BootComplete,
    /// Report a boot whose health checks failed: on a deployment on
    /// probation, reboot (with --reboot) so the boot loader spends a try and
    /// falls back once they are spent. Fails on a deployment marked good.
    BootFailed {
        /// Run `systemctl reboot` when on probation.
        #[arg(long)]
        reboot: bool,
    },
    /// Show local changes of /etc against its defaults (M/A/D).
    ConfigDiff {
        /// Stateroot.
        #[arg(long, overrides_with = "os")]
        os: Option<String>,
    },
}

#[derive(Subcommand)]
enum InstutilCmd {
    /// Set the kernel arguments of the booted (else first) deployment.
    SetKargs {
        /// Start from the deployment's current arguments.
        #[arg(long)]
        merge: bool,
        /// Start from /proc/cmdline.
        #[arg(long)]
        import_proc_cmdline: bool,
        /// Set KEY=VALUE, replacing existing values of KEY.
        #[arg(long)]
        replace: Vec<String>,
        /// Append an argument.
        #[arg(long)]
        append: Vec<String>,
        /// Arguments appended in order (upstream appends every positional).
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KargsCmd {
    /// Edit the kernel arguments of all deployments (upstream syntax).
    EditInPlace {
        /// Append KEY[=VALUE] where not already present.
        #[arg(long = "append-if-missing")]
        append_if_missing: Vec<String>,
        /// Delete KEY[=VALUE] where present.
        #[arg(long = "delete-if-present")]
        delete_if_present: Vec<String>,
        /// Accepted and ignored, as upstream does.
        #[arg(hide = true)]
        _refspec: Vec<String>,
    },
}

/// Runs `admin` with args[0] = program name.
pub fn main(args: &[OsString]) -> ExitCode {
    let ostree_style = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n.to_string_lossy().starts_with("ostree"));
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli, ostree_style) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn sysroot_path(cli: &Cli) -> PathBuf {
    cli.sysroot
        .clone()
        .or_else(|| std::env::var_os("OSTREE_SYSROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn run(cli: Cli, ostree_style: bool) -> anyhow::Result<()> {
    let path = sysroot_path(&cli);
    let cmd = match cli.cmd {
        Some(Cmd::InitFs { path, modern }) => {
            Sysroot::init_fs_with(&path, modern)
                .with_context(|| format!("init-fs {}", path.display()))?;
            return Ok(());
        }
        Some(c) => c,
        None if cli.print_current_dir => {
            let sr = Sysroot::load(&path)?;
            let os = sr.booted_deployment().map(|d| d.osname.clone());
            let d = match os {
                Some(os) => sr.merge_deployment(&os),
                None => sr.deployments().first(),
            }
            .context("No deployments")?;
            println!("{}", std::fs::canonicalize(sr.deployment_dir(d))?.display());
            return Ok(());
        }
        None => bail!("no command given; see --help"),
    };
    let mut sr = Sysroot::load(&path)?;
    match cmd {
        Cmd::InitFs { .. } => unreachable!("handled above"),
        Cmd::OsInit { name } => {
            sr.os_init(&name)?;
            println!("ostree/deploy/{name} initialized as OSTree root");
        }
        Cmd::Deploy {
            refspec,
            os,
            karg,
            karg_append,
            karg_delete,
            karg_none,
            karg_proc_cmdline,
            no_merge,
            retain,
            retain_pending,
            retain_rollback,
            not_as_default,
            no_prune,
            boot_tries,
            stage,
            lock_finalization,
        } => {
            let repo = sr.repo()?;
            let commit = repo
                .resolve_rev(&refspec, false)?
                .with_context(|| format!("Refspec '{refspec}' not found"))?;
            let csum = to_hex(&commit);
            let opts = DeployOptions {
                osname: os,
                refspec: Some(refspec),
                kargs_override: if karg_proc_cmdline {
                    Some(proc_cmdline_kargs()?)
                } else {
                    karg_none.then(KernelArgs::default)
                },
                karg_replace: karg,
                karg_append,
                karg_delete,
                no_merge,
                retain,
                retain_pending,
                retain_rollback,
                not_as_default,
                no_prune,
                boot_tries,
                ..Default::default()
            };
            if stage {
                let d = sr.stage(&csum, &opts, lock_finalization)?;
                println!(
                    "Staged {}.{} ({}); it is applied at shutdown{}",
                    d.csum,
                    d.deployserial,
                    d.osname,
                    if lock_finalization {
                        " once unlocked"
                    } else {
                        ""
                    }
                );
                return Ok(());
            }
            let (before, count) = (sr.bootversion(), sr.deployments().len() as i64);
            let d = sr.deploy(&csum, &opts)?;
            // Upstream's wording; tests match "Bootloader updated" (with
            // `sysroot.bootloader=none` every boot version swap says so).
            let swap = before != sr.bootversion();
            println!(
                "{}; bootconfig swap: {}; bootversion: boot.{}.{}, deployment count change: {}",
                if swap {
                    "Bootloader updated"
                } else {
                    "Transaction complete"
                },
                if swap { "yes" } else { "no" },
                sr.bootversion(),
                sr.subbootversion(),
                sr.deployments().len() as i64 - count
            );
            println!("Deployed {}.{} ({})", d.csum, d.deployserial, d.osname);
        }
        Cmd::Upgrade {
            os,
            override_commit,
            allow_downgrade,
            pull_only,
            deploy_only,
            boot_tries,
        } => {
            let opts = UpgradeOptions {
                osname: os,
                override_commit,
                allow_downgrade,
                pull_only,
                deploy_only,
                boot_tries,
            };
            match sr.upgrade(&opts)? {
                Upgrade::Deployed(d) => {
                    println!("Deployed {}.{} ({})", d.csum, d.deployserial, d.osname)
                }
                Upgrade::NoUpdate => println!("No update available."),
                Upgrade::Pulled(c) => println!("Fetched {c}"),
            }
        }
        Cmd::Switch {
            refspec,
            os,
            deploy_only,
        } => {
            let opts = UpgradeOptions {
                osname: os,
                deploy_only,
                ..Default::default()
            };
            let d = sr.switch(&refspec, &opts)?;
            println!("Deployed {}.{} ({})", d.csum, d.deployserial, d.osname);
        }
        Cmd::Instutil {
            cmd:
                InstutilCmd::SetKargs {
                    merge,
                    import_proc_cmdline,
                    replace,
                    append,
                    args,
                },
        } => {
            let d = sr
                .booted_deployment()
                .or(sr.deployments().first())
                .context("No deployments")?;
            let index = d.index;
            let mut k = if import_proc_cmdline {
                proc_cmdline_kargs()?
            } else if merge {
                d.kargs.clone()
            } else {
                KernelArgs::default()
            };
            for a in &replace {
                k.replace(a);
            }
            for a in append.iter().chain(&args) {
                k.append(a);
            }
            sr.set_kargs(index, k)?;
        }
        Cmd::SetOrigin {
            index,
            set,
            remote,
            url,
            branch,
        } => {
            let settings = set
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--set {kv}: expected KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            sr.set_origin(index, &remote, &url, branch.as_deref(), &settings)?;
        }
        Cmd::FinalizeStaged => match sr.finalize_staged()? {
            Finalize::Finalized(d) => {
                println!("Finalized staged deployment {}.{}", d.csum, d.deployserial)
            }
            Finalize::Locked => println!("Finalization locked; staged deployment not applied"),
            Finalize::NothingStaged => println!("No staged deployment"),
        },
        Cmd::LockFinalization { unlock } => {
            if sr.staged_deployment()?.is_none() {
                bail!("No staged deployment");
            }
            sr.set_finalization_locked(!unlock)?;
        }
        Cmd::Undeploy { index } => {
            let d = sr.undeploy(index)?;
            println!("Deleted deployment {}.{}", d.csum, d.deployserial);
        }
        Cmd::Pin { index, unpin } => pin(&mut sr, &index, !unpin)?,
        Cmd::Unpin { index } => pin(&mut sr, &index, false)?,
        Cmd::Cleanup => {
            let s = sr.cleanup()?;
            for d in &s.deployments {
                println!("Deleted deployment {d}");
            }
            if s.pruned_objects > 0 {
                println!("Freed objects: {}", s.pruned_objects);
            }
        }
        Cmd::Kargs {
            deployment,
            replace,
            append,
            delete,
            action,
        } => {
            if let Some(KargsCmd::EditInPlace {
                append_if_missing,
                delete_if_present,
                ..
            }) = action
            {
                sr.edit_kargs_in_place(|k| {
                    for a in &append_if_missing {
                        k.append_if_missing(a);
                    }
                    for a in &delete_if_present {
                        k.delete_if_present(a)?;
                    }
                    Ok(())
                })?;
                return Ok(());
            }
            let d = sr
                .deployments()
                .get(deployment)
                .with_context(|| format!("no deployment {deployment}"))?;
            let mut k = d.kargs.clone();
            if replace.is_empty() && append.is_empty() && delete.is_empty() {
                println!("{k}");
                return Ok(());
            }
            for a in &replace {
                k.replace(a);
            }
            for a in &append {
                k.append(a);
            }
            for a in &delete {
                k.delete(a)?;
            }
            sr.set_kargs(deployment, k)?;
            println!("Kernel arguments updated.");
        }
        Cmd::Rollback => {
            let d = sr.rollback()?;
            println!(
                "Moving '{}.{}' to be first deployment",
                d.csum, d.deployserial
            );
        }
        Cmd::Status { json, format } => {
            let st = sr.status()?;
            let ostree_style = format.map_or(ostree_style, |f| f == "ostree");
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else if ostree_style {
                print!("{}", sysroot::status::render_ostree(&st));
            } else {
                print!("{}", sysroot::status::render(&st));
            }
        }
        Cmd::BootComplete => match sr.boot_complete()? {
            BootComplete::MarkedGood(d) => {
                println!("Marked {}.{} good", d.csum, d.deployserial)
            }
            BootComplete::RolledBack { failed, default } => println!(
                "Deployment {}.{} used up its boot tries; recorded as failed; default is now {}.{}",
                failed.csum, failed.deployserial, default.csum, default.deployserial
            ),
            BootComplete::Nothing => {}
        },
        Cmd::BootFailed { reboot } => {
            let (on_probation, d) = match sr.boot_failed()? {
                BootFailed::OnProbation(d) => (true, d),
                BootFailed::NotCounted(d) => (false, d),
            };
            let name = format!("{}.{}", d.csum, d.deployserial);
            if !on_probation {
                bail!(
                    "health checks failed on deployment {name}, which is marked good: \
                     no automatic rollback (roll back with `ferrocore admin rollback`)"
                );
            }
            eprintln!(
                "health checks failed on deployment {name}, on probation: {}",
                if reboot {
                    "rebooting to spend a boot try"
                } else {
                    "a reboot spends a boot try"
                }
            );
            if reboot {
                let st = std::process::Command::new("systemctl")
                    .arg("reboot")
                    .status()
                    .context("running systemctl reboot")?;
                if !st.success() {
                    bail!("systemctl reboot: {st}");
                }
            }
        }
        Cmd::ConfigDiff { os } => {
            let os = match os {
                Some(o) => o,
                None => sr
                    .booted_deployment()
                    .or(sr.deployments().first())
                    .context("No deployments")?
                    .osname
                    .clone(),
            };
            let d = sr
                .merge_deployment(&os)
                .with_context(|| format!("No deployment of stateroot {os}"))?;
            let dir = sr.deployment_dir(d);
            let diff = sysroot::etcmerge::diff(&dir.join("usr/etc"), &dir.join("etc"))?;
            for (tag, list) in [
                ("M", &diff.modified),
                ("A", &diff.added),
                ("D", &diff.removed),
            ] {
                for p in list {
                    println!("{tag}    {p}");
                }
            }
        }
    }
    Ok(())
}

/// The running kernel's arguments minus those the boot loader or ostree
/// set per boot (upstream's `--karg-proc-cmdline` filter).
fn proc_cmdline_kargs() -> anyhow::Result<KernelArgs> {
    let text = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let mut k = KernelArgs::parse(&text);
    for key in ["ostree", "initrd", "BOOT_IMAGE"] {
        k.remove_key(key);
    }
    Ok(k)
}

fn pin(sr: &mut Sysroot, indices: &[usize], pinned: bool) -> anyhow::Result<()> {
    for &i in indices {
        sr.set_pinned(i, pinned)?;
        let d = &sr.deployments()[i];
        println!(
            "Deployment {}.{} is now {}",
            d.csum,
            d.deployserial,
            if pinned { "pinned" } else { "unpinned" }
        );
    }
    Ok(())
}
