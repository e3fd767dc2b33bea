//! `ferrocore release`: release engineering on the metadata files (release index,
//! updates metadata, stream metadata) and their signatures. Thin wrapper over the
//! `release-meta` crate; every write is atomic and stamps `last-modified`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use release_meta::index::{release_metadata_url, ArchPayload};
use release_meta::sign::{SigningKey, VerifyingKey};
use release_meta::{fsutil, time, Release, ReleaseIndex, Stream, Updates};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Manage Fedora CoreOS release metadata.
#[derive(Parser)]
#[command(name = "release")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Add one architecture's payload of a release to a release index (releases.json).
    Add {
        /// Release index to edit (created if missing; then --stream is needed).
        #[arg(long)]
        index: PathBuf,
        /// Stream name for a new index.
        #[arg(long)]
        stream: Option<String>,
        /// Release version.
        #[arg(long)]
        version: String,
        /// Architecture.
        #[arg(long, default_value = "x86_64")]
        arch: String,
        /// OSTree commit checksum.
        #[arg(long)]
        checksum: Option<String>,
        /// OCI image pinned by digest (repo@sha256:...), the payload for OCI clients.
        #[arg(long)]
        digest_ref: Option<String>,
        /// Floating OCI tag (default: <repo>:<stream>).
        #[arg(long)]
        oci_image: Option<String>,
        /// URL of the release.json (default: the Fedora bucket layout).
        #[arg(long)]
        metadata_url: Option<String>,
    },
    /// Copy a release from one stream's index to another's (testing → stable).
    Promote {
        /// Source index (e.g. testing).
        #[arg(long)]
        from: PathBuf,
        /// Destination index (e.g. stable).
        #[arg(long)]
        to: PathBuf,
        /// Release version.
        #[arg(long)]
        version: String,
    },
    /// Start, pause or resume a rollout in updates metadata.
    Rollout {
        #[command(subcommand)]
        action: RolloutCmd,
    },
    /// Mark a release as a barrier in updates metadata.
    Barrier {
        #[command(flatten)]
        target: Target,
        /// Reason (usually a tracker URL).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Mark a release as a dead-end in updates metadata.
    Deadend {
        #[command(flatten)]
        target: Target,
        /// Reason (usually a tracker URL), shown to users on the node.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Generate stream metadata (stream.json) from release metadata files, oldest first.
    StreamJson {
        /// Stream name.
        #[arg(long)]
        stream: String,
        /// Output file.
        #[arg(long, short)]
        output: PathBuf,
        /// release.json files, oldest first.
        #[arg(required = true)]
        releases: Vec<PathBuf>,
    },
    /// Create an ed25519 key pair (base64 text files).
    Keygen {
        /// Secret key output file (created with mode 0600).
        #[arg(long)]
        secret: PathBuf,
        /// Public key output file.
        #[arg(long)]
        public: PathBuf,
    },
    /// Write detached signatures (<file>.sig).
    Sign {
        /// Secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Files to sign.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check detached signatures (<file>.sig).
    Verify {
        /// Public key file.
        #[arg(long)]
        public_key: PathBuf,
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct Target {
    /// Updates metadata to edit (updates/<stream>.json; created if missing).
    #[arg(long)]
    updates: PathBuf,
    /// Release version.
    #[arg(long)]
    version: String,
}

#[derive(Subcommand)]
enum RolloutCmd {
    /// Start a rollout: start-percentage of the fleet at --start, all after --duration-minutes.
    Start {
        #[command(flatten)]
        target: Target,
        /// Start time, unix seconds (default: now).
        #[arg(long)]
        start: Option<i64>,
        /// Ramp duration in minutes (upstream guideline: 2880 = 48 h).
        #[arg(long)]
        duration_minutes: u64,
        /// Share of the fleet at start, 0.0-1.0.
        #[arg(long, default_value_t = 0.0)]
        start_percentage: f64,
        /// Skip the X.YYYYMMDD.Z.A / stream-code check of the version.
        #[arg(long)]
        no_version_check: bool,
        /// Replace an existing rollout of this version.
        #[arg(long)]
        replace: bool,
    },
    /// Freeze a rollout at the share it has reached.
    Pause {
        #[command(flatten)]
        target: Target,
    },
    /// Continue a paused rollout on its original slope.
    Resume {
        #[command(flatten)]
        target: Target,
    },
}

/// Entry point; `args[0]` is the tool name.
pub fn main(args: &[OsString]) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("release: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Edits updates metadata; a missing file is created for the stream named by its
/// file stem (`updates/<stream>.json`).
fn edit_updates(
    t: &Target,
    f: impl FnOnce(&mut Updates, i64) -> release_meta::Result<()>,
) -> anyhow::Result<()> {
    let now = time::now_unix();
    let mut u = match fsutil::read_json_if_exists(&t.updates)? {
        Some(u) => u,
        None => {
            let stem = t
                .updates
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned());
            Updates::new(&stem.context("updates file needs a name")?)
        }
    };
    f(&mut u, now)?;
    u.touch(now);
    fsutil::write_json(&t.updates, &u)?;
    Ok(())
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    let now = time::now_unix();
    match cmd {
        Cmd::Add {
            index,
            stream,
            version,
            arch,
            checksum,
            digest_ref,
            oci_image,
            metadata_url,
        } => {
            let mut idx = match fsutil::read_json_if_exists(&index)? {
                Some(i) => i,
                None => ReleaseIndex::new(
                    stream
                        .as_deref()
                        .context("--stream is needed to create a new index")?,
                ),
            };
            if let Some(s) = &stream {
                anyhow::ensure!(
                    *s == idx.stream,
                    "{} is the index of stream '{}', not '{s}'",
                    index.display(),
                    idx.stream
                );
            }
            let oci = digest_ref.map(|d| {
                let tag = oci_image.unwrap_or_else(|| {
                    let repo = d.split('@').next().unwrap_or_default();
                    format!("{repo}:{}", idx.stream)
                });
                (tag, d)
            });
            let url = metadata_url.unwrap_or_else(|| release_metadata_url(&idx.stream, &version));
            let payload = ArchPayload {
                architecture: arch,
                checksum,
                oci,
            };
            idx.add_arch(&version, &url, &payload)?;
            idx.touch(now);
            fsutil::write_json(&index, &idx)?;
        }
        Cmd::Promote { from, to, version } => {
            let src: ReleaseIndex = fsutil::read_json(&from)?;
            let mut dst: ReleaseIndex = fsutil::read_json(&to)?;
            dst.promote_from(&src, &version)?;
            dst.touch(now);
            fsutil::write_json(&to, &dst)?;
        }
        Cmd::Rollout { action } => match action {
            RolloutCmd::Start {
                target,
                start,
                duration_minutes,
                start_percentage,
                no_version_check,
                replace,
            } => edit_updates(&target, |u, now| {
                if !no_version_check {
                    release_meta::updates::check_version(&u.stream, &target.version)?;
                }
                u.add_rollout(
                    &target.version,
                    start.unwrap_or(now),
                    start_percentage,
                    duration_minutes,
                    replace,
                    now,
                )
            })?,
            RolloutCmd::Pause { target } => {
                edit_updates(&target, |u, now| u.pause_rollout(&target.version, now))?
            }
            RolloutCmd::Resume { target } => {
                edit_updates(&target, |u, now| u.resume_rollout(&target.version, now))?
            }
        },
        Cmd::Barrier { target, reason } => edit_updates(&target, |u, _| {
            u.set_barrier(&target.version, &reason);
            Ok(())
        })?,
        Cmd::Deadend { target, reason } => edit_updates(&target, |u, _| {
            u.set_deadend(&target.version, &reason);
            Ok(())
        })?,
        Cmd::StreamJson {
            stream,
            output,
            releases,
        } => {
            let rels = releases
                .iter()
                .map(|p| fsutil::read_json::<Release>(p))
                .collect::<Result<Vec<_>, _>>()?;
            fsutil::write_json(&output, &Stream::from_releases(&stream, &rels, now)?)?;
        }
        Cmd::Keygen { secret, public } => {
            let key = SigningKey::generate();
            write_secret(&secret, &key.to_base64())?;
            fsutil::write_atomic(
                &public,
                format!("{}\n", key.verifying_key().to_base64()).as_bytes(),
            )?;
        }
        Cmd::Sign { key, files } => {
            let key = SigningKey::from_file(&key)?;
            for f in files {
                println!("{}", key.sign_file(&f)?.display());
            }
        }
        Cmd::Verify { public_key, files } => {
            let key = VerifyingKey::from_file(&public_key)?;
            for f in files {
                key.verify_file(&f)?;
                println!("{}: signature OK", f.display());
            }
        }
    }
    Ok(())
}

/// Writes a secret key readable by its owner only, refusing to overwrite one.
fn write_secret(path: &Path, b64: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    writeln!(f, "{b64}").with_context(|| format!("{}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}
