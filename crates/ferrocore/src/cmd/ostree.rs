//! `ostree`: the OS image store CLI (upstream's verbs, flags, output and
//! exit codes) over the `ostree-repo` library.
//!
//! Options are parsed GLib-style (`--opt=V`, `--opt V`, `-oV`, `-o V`,
//! options anywhere, `--` ends them) because upstream's tests rely on that.

use ostree_repo::checkout::{CheckoutMode, CheckoutOptions, Overwrite};
use ostree_repo::commit::{CommitOptions, TreeSource};
use ostree_repo::display;
use ostree_repo::gvariant::{self, Value};
use ostree_repo::object::{self, Checksum, ObjectType};
use ostree_repo::{Error, Repo, RepoMode};
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod progress;
use progress::{with_status, Op};

/// Version we are compatible with; scripts and upstream's tests compare it.
const COMPAT_VERSION: &str = "2022.7";

const COMMANDS: &[(&str, &str)] = &[
    ("cat", "Concatenate contents of files"),
    ("checkout", "Check out a commit into a filesystem tree"),
    ("checksum", "Checksum a file or directory"),
    ("commit", "Commit a new revision"),
    ("config", "Change repo configuration settings"),
    ("diff", "Compare directory TARGETDIR against revision REV"),
    ("find-remotes", "Find remotes to serve the given refs"),
    ("fsck", "Check the repository for consistency"),
    ("init", "Initialize a new empty repository"),
    ("log", "Show log starting at commit or ref"),
    ("ls", "List file paths"),
    ("prune", "Search for unreachable objects"),
    ("pull-local", "Copy data from SRC_REPO"),
    (
        "pull",
        "Download data from remote repository (file:// remotes)",
    ),
    ("refs", "List refs"),
    ("remote", "Remote commands that may involve internet access"),
    ("reset", "Reset a REF to a previous COMMIT"),
    ("rev-parse", "Output the target of a rev"),
    ("show", "Output a metadata object"),
    ("sign", "Sign a commit"),
    ("static-delta", "Static delta related commands"),
    ("summary", "Manage summary metadata"),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Flag,
    Value,
}

/// (long name, short char, kind)
type Spec = &'static [(&'static str, Option<char>, Kind)];

const GLOBAL: Spec = &[
    ("repo", None, Kind::Value),
    ("verbose", Some('v'), Kind::Flag),
    ("help", Some('h'), Kind::Flag),
];

#[derive(Default)]
struct Parsed {
    values: HashMap<&'static str, Vec<String>>,
    flags: HashMap<&'static str, usize>,
    args: Vec<String>,
}

impl Parsed {
    fn flag(&self, n: &str) -> bool {
        self.flags.contains_key(n)
    }
    fn value(&self, n: &str) -> Option<&str> {
        self.values
            .get(n)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    fn values(&self, n: &str) -> &[String] {
        self.values.get(n).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A user-facing failure: message printed as `error: MSG`, exit status 1.
struct Fail(String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail(e.to_string())
    }
}

type R<T = ()> = Result<T, Fail>;

fn fail<T>(msg: impl Into<String>) -> R<T> {
    Err(Fail(msg.into()))
}

fn parse(args: &[String], spec: Spec) -> R<Parsed> {
    let all: Vec<&(&str, Option<char>, Kind)> = spec.iter().chain(GLOBAL.iter()).collect();
    let mut p = Parsed::default();
    let mut i = 0;
    let mut only_args = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if only_args || a == "-" || !a.starts_with('-') {
            p.args.push(a.clone());
            continue;
        }
        if a == "--" {
            only_args = true;
            continue;
        }
        let (entry, inline) = if let Some(long) = a.strip_prefix("--") {
            let (name, val) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            match all.iter().find(|(l, ..)| *l == name) {
                Some(e) => (*e, val),
                None => return fail(format!("Unknown option {a}")),
            }
        } else {
            let c = a[1..].chars().next().expect("non-empty");
            let rest = &a[1 + c.len_utf8()..];
            match all.iter().find(|(_, s, _)| *s == Some(c)) {
                Some(e) if e.2 == Kind::Value => (*e, (!rest.is_empty()).then(|| rest.to_string())),
                Some(e) if rest.is_empty() => (*e, None),
                _ => return fail(format!("Unknown option {a}")),
            }
        };
        match entry.2 {
            Kind::Flag => {
                if inline.is_some() {
                    return fail(format!("Option --{} does not take a value", entry.0));
                }
                *p.flags.entry(entry.0).or_default() += 1;
            }
            Kind::Value => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let Some(v) = args.get(i) else {
                            return fail(format!("Missing argument for {a}"));
                        };
                        i += 1;
                        v.clone()
                    }
                };
                p.values.entry(entry.0).or_default().push(v);
            }
        }
    }
    Ok(p)
}

fn open_repo(p: &Parsed) -> R<Repo> {
    let path = match p.value("repo") {
        Some(r) => PathBuf::from(r),
        None => match std::env::var_os("OSTREE_REPO") {
            Some(r) => PathBuf::from(r),
            // Like upstream: a repository in the current directory, then the system one.
            None if Path::new("objects").is_dir() && Path::new("config").is_file() => {
                PathBuf::from(".")
            }
            None if Path::new("/ostree/repo").is_dir() => PathBuf::from("/ostree/repo"),
            None => return fail("Command requires a --repo argument"),
        },
    };
    Ok(Repo::open(&path)?)
}

/// Entry point; `args[0]` is the program name.
pub fn main(args: &[OsString]) -> ExitCode {
    // `ostree admin ...` is the sysroot's verb; hand it everything after `admin`
    // with an `ostree` program name, so it prints upstream's `admin status` layout.
    if let Some(pos) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
    {
        if args[pos + 1] == "admin" {
            let admin_args: Vec<OsString> = std::iter::once(OsString::from("ostree"))
                .chain(args[pos + 2..].iter().cloned())
                .collect();
            return super::admin::main(&admin_args);
        }
    }
    let args: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn usage(out: &mut dyn Write) {
    let mut s = String::from("Usage:\n  ostree [OPTION…] COMMAND\n\nBuiltin Commands:\n");
    for (c, d) in COMMANDS {
        s.push_str(&format!("  {c:<17} {d}\n"));
    }
    s.push_str("\nHelp Options:\n  -h, --help        Show help options\n\nApplication Options:\n  -v, --verbose     Print debug information during command processing\n  --version         Print version information and exit\n\n");
    let _ = out.write_all(s.as_bytes());
}

fn run(args: &[String]) -> R {
    // The command is the first argument that is not an option (or the value
    // of a global option given as `--repo PATH`).
    let mut idx = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--version" {
            // One write: `ostree --version | grep -q` under pipefail must
            // not hit SIGPIPE between writes.
            let text = format!(
                "libostree:\n Version: '{COMPAT_VERSION}'\n Git: ferrocore-{}\n Features:\n  - sign-ed25519\n  - release\n",
                env!("CARGO_PKG_VERSION")
            );
            let _ = std::io::stdout().write_all(text.as_bytes());
            return Ok(());
        }
        if a == "--repo" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            idx = Some(i);
            break;
        }
        if a == "-h" || a == "--help" {
            usage(&mut std::io::stdout());
            return Ok(());
        }
        i += 1;
    }
    let Some(idx) = idx else {
        usage(&mut std::io::stderr());
        return fail("No command specified");
    };
    let cmd = args[idx].as_str();
    let rest: Vec<String> = args[..idx]
        .iter()
        .chain(&args[idx + 1..])
        .cloned()
        .collect();
    match cmd {
        "init" => init(&rest),
        "commit" => commit(&rest),
        "checkout" => checkout(&rest),
        "refs" => refs(&rest),
        "rev-parse" => rev_parse(&rest),
        "ls" => ls(&rest),
        "cat" => cat(&rest),
        "show" => show(&rest),
        "log" => log(&rest),
        "fsck" => fsck(&rest),
        "config" => config(&rest),
        "pull-local" => pull_local(&rest),
        "pull" => pull(&rest),
        "find-remotes" => find_remotes(&rest),
        "checksum" => checksum(&rest),
        "diff" => diff(&rest),
        "sign" => sign(&rest),
        "prune" => prune(&rest),
        "remote" => remote(&rest),
        "reset" => reset(&rest),
        "summary" => summary(&rest),
        "static-delta" => static_delta(&rest),
        _ => {
            usage(&mut std::io::stderr());
            fail(format!("Unknown command '{cmd}'"))
        }
    }
}

fn init(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("mode", None, Kind::Value),
            ("collection-id", None, Kind::Value),
        ],
    )?;
    let mode = RepoMode::parse(p.value("mode").unwrap_or("bare"))?;
    let path = match p.value("repo") {
        Some(r) => PathBuf::from(r),
        None => match std::env::var_os("OSTREE_REPO") {
            Some(r) => PathBuf::from(r),
            None => return fail("Command requires a --repo argument"),
        },
    };
    Repo::create_with(&path, mode, p.value("collection-id"))?;
    Ok(())
}

fn keyvalues(list: &[String], typed: bool) -> R<Vec<(String, Value)>> {
    list.iter()
        .map(|s| {
            let Some((k, v)) = s.split_once('=') else {
                return fail(format!("Missing '=' in KEY=VALUE metadata '{s}'"));
            };
            let val = if typed {
                gvariant::parse_text(v, None)
                    .map_err(|e| Fail(format!("Parsing value of '{k}': {e}")))?
            } else {
                Value::Str(v.to_string())
            };
            Ok((k.to_string(), val))
        })
        .collect()
}

fn parse_id(s: Option<&str>, what: &str) -> R<Option<u32>> {
    match s {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => Ok(None),
            Ok(n) if n <= u32::MAX as i64 => Ok(Some(n as u32)),
            _ => fail(format!("Cannot parse integer value “{v}” for --{what}")),
        },
    }
}

fn commit(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("subject", Some('s'), Kind::Value),
            ("body", Some('m'), Kind::Value),
            ("body-file", Some('F'), Kind::Value),
            ("branch", Some('b'), Kind::Value),
            ("parent", None, Kind::Value),
            ("tree", None, Kind::Value),
            ("add-metadata-string", None, Kind::Value),
            ("add-metadata", None, Kind::Value),
            ("add-detached-metadata-string", None, Kind::Value),
            ("timestamp", None, Kind::Value),
            ("owner-uid", None, Kind::Value),
            ("owner-gid", None, Kind::Value),
            ("canonical-permissions", None, Kind::Flag),
            ("no-xattrs", None, Kind::Flag),
            ("orphan", None, Kind::Flag),
            ("bootable", None, Kind::Flag),
            ("no-bindings", None, Kind::Flag),
            ("bind-ref", None, Kind::Value),
            ("table-output", None, Kind::Flag),
            ("skip-if-unchanged", None, Kind::Flag),
            ("link-checkout-speedup", None, Kind::Flag),
            ("devino-canonical", Some('I'), Kind::Flag),
            ("fsync", None, Kind::Value),
            ("base", None, Kind::Value),
            ("consume", None, Kind::Flag),
            ("statoverride", None, Kind::Value),
            ("skip-list", None, Kind::Value),
            ("mode-ro-executables", None, Kind::Flag),
            ("sign", None, Kind::Value),
            ("sign-type", None, Kind::Value),
            ("keep-metadata", None, Kind::Value),
        ],
    )?;
    let repo = open_repo(&p)?;
    let mut mode_adds = std::collections::BTreeMap::new();
    let mut mode_overrides = std::collections::BTreeMap::new();
    if let Some(f) = p.value("statoverride") {
        let text = std::fs::read_to_string(f).map_err(|e| Fail(format!("{f}: {e}")))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let Some((m, path)) = line.split_once(' ') else {
                return fail("Malformed statoverride file (no space found)");
            };
            let (over, num) = match m.strip_prefix('=') {
                Some(n) => (true, n),
                None => (false, m.trim_start_matches('+')),
            };
            let bits: u32 = num
                .parse()
                .map_err(|_| Fail(format!("{f}:{}: invalid mode '{m}'", i + 1)))?;
            if over {
                mode_overrides.insert(path.to_string(), bits);
            } else {
                mode_adds.insert(path.to_string(), bits);
            }
        }
    }
    let mut skip_list = std::collections::BTreeSet::new();
    if let Some(f) = p.value("skip-list") {
        let text = std::fs::read_to_string(f).map_err(|e| Fail(format!("{f}: {e}")))?;
        skip_list.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
    }
    let mut metadata = keyvalues(p.values("add-metadata-string"), false)?;
    metadata.extend(keyvalues(p.values("add-metadata"), true)?);
    let body = match p.value("body-file") {
        Some(f) => std::fs::read_to_string(f).map_err(|e| Fail(format!("{f}: {e}")))?,
        None => p.value("body").unwrap_or("").to_string(),
    };
    let timestamp = match p.value("timestamp") {
        Some(t) => Some(
            ostree_repo::commit::parse_timestamp(t)
                .ok_or_else(|| Fail(format!("Could not parse '{t}'")))?,
        ),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            // Upstream parses with strtoll: values beyond i64 are out of range.
            Ok(s) => match s.parse::<i64>() {
                Ok(n) => Some(u64::try_from(n).unwrap_or(0)),
                Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    return fail("Parsing SOURCE_DATE_EPOCH: Numerical result out of range")
                }
                Err(_) => {
                    return fail(format!(
                        "Failed to convert SOURCE_DATE_EPOCH '{s}' to a number"
                    ))
                }
            },
            Err(_) => None,
        },
    };
    let parent = match p.value("parent") {
        None => None,
        Some("none") => Some(None),
        Some(c) => Some(Some(
            object::from_hex(c).ok_or_else(|| Fail(format!("Invalid checksum '{c}'")))?,
        )),
    };
    let opts = CommitOptions {
        branch: p.value("branch").map(str::to_string),
        orphan: p.flag("orphan"),
        parent,
        subject: p.value("subject").unwrap_or("").to_string(),
        body,
        timestamp,
        metadata,
        detached_metadata: keyvalues(p.values("add-detached-metadata-string"), false)?,
        owner_uid: parse_id(p.value("owner-uid"), "owner-uid")?,
        owner_gid: parse_id(p.value("owner-gid"), "owner-gid")?,
        canonical_permissions: p.flag("canonical-permissions"),
        no_xattrs: p.flag("no-xattrs"),
        bind_refs: p.values("bind-ref").to_vec(),
        no_bindings: p.flag("no-bindings"),
        bootable: p.flag("bootable"),
        mode_adds,
        mode_overrides,
        skip_list,
        mode_ro_executables: p.flag("mode-ro-executables"),
        keep_metadata: p.values("keep-metadata").to_vec(),
        link_checkout_speedup: p.flag("link-checkout-speedup"),
        devino_canonical: p.flag("devino-canonical"),
        consume: p.flag("consume"),
    };
    let mut sources = Vec::new();
    if let Some(b) = p.value("base") {
        sources.push(TreeSource::Ref(b.to_string()));
    }
    for t in p.values("tree") {
        let Some((kind, v)) = t.split_once('=') else {
            return fail(format!("Missing type in tree specification '{t}'"));
        };
        sources.push(match kind {
            "dir" => TreeSource::Dir(v.into()),
            "ref" => TreeSource::Ref(v.to_string()),
            _ => return fail(format!("Invalid tree type specification '{kind}'")),
        });
    }
    if p.values("tree").is_empty() {
        sources.push(TreeSource::Dir(
            p.args
                .first()
                .map(PathBuf::from)
                .unwrap_or_else(|| ".".into()),
        ));
    }
    if p.flag("skip-if-unchanged") {
        // Compare the would-be root with the parent's root: commit as an
        // orphan first (objects are content-addressed, so this is cheap).
        if let Some(b) = &opts.branch {
            if let Some(parent) = repo.resolve_rev(b, true)? {
                let mut probe = opts.clone();
                probe.orphan = true;
                probe.branch = None;
                let out = with_status(Op::Commit, |pr| {
                    ostree_repo::commit::commit_with_progress(&repo, &sources, &probe, pr)
                })?;
                let a = repo.load_commit(&out.checksum)?;
                let b = repo.load_commit(&parent)?;
                if (a.root_tree, a.root_meta) == (b.root_tree, b.root_meta) {
                    println!("{}", object::to_hex(&parent));
                    return Ok(());
                }
            }
        }
    }
    let out = with_status(Op::Commit, |pr| {
        ostree_repo::commit::commit_with_progress(&repo, &sources, &opts, pr)
    })?;
    if !p.values("sign").is_empty() {
        let engine = sign_engine(p.value("sign-type"))?;
        for key in p.values("sign") {
            ostree_repo::sign::sign_commit(&repo, &out.checksum, engine, key)?;
        }
    }
    if p.flag("consume") {
        // The content is safely in the repository: remove the input trees.
        for s in &sources {
            if let TreeSource::Dir(d) = s {
                std::fs::remove_dir_all(d)
                    .map_err(|e| Fail(format!("Consuming {}: {e}", d.display())))?;
            }
        }
    }
    if p.flag("table-output") {
        println!("Commit: {}", object::to_hex(&out.checksum));
        println!("Metadata Total: {}", out.metadata_total);
        println!("Metadata Written: {}", out.metadata_written);
        println!("Content Total: {}", out.content_total);
        println!("Content Written: {}", out.content_written);
        println!("Content Cache Hits: {}", out.content_cache_hits);
        println!("Content Bytes Written: {}", out.content_bytes_written);
    } else {
        println!("{}", object::to_hex(&out.checksum));
    }
    Ok(())
}

fn checkout(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("user-mode", Some('U'), Kind::Flag),
            ("union", None, Kind::Flag),
            ("union-add", None, Kind::Flag),
            ("union-identical", None, Kind::Flag),
            // Empty files are always copied now; upstream keeps -z as a no-op.
            ("force-copy-zerosized", Some('z'), Kind::Flag),
            ("bareuseronly-dirs", Some('M'), Kind::Flag),
            ("allow-noent", None, Kind::Flag),
            ("disable-cache", None, Kind::Flag),
            ("process-passthrough-whiteouts", None, Kind::Flag),
            ("subpath", None, Kind::Value),
            ("require-hardlinks", Some('H'), Kind::Flag),
            ("force-copy", Some('C'), Kind::Flag),
            ("fsync", None, Kind::Value),
            ("skip-list", None, Kind::Value),
        ],
    )?;
    let mut skip_list = std::collections::BTreeSet::new();
    if let Some(f) = p.value("skip-list") {
        let text = std::fs::read_to_string(f).map_err(|e| Fail(format!("{f}: {e}")))?;
        skip_list.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_string));
    }
    let repo = open_repo(&p)?;
    let Some(rev) = p.args.first() else {
        return fail("COMMIT must be specified");
    };
    let dest = p.args.get(1).cloned().unwrap_or_else(|| {
        // Upstream defaults the destination to the basename of the rev.
        rev.rsplit('/').next().unwrap_or(rev).to_string()
    });
    let c = resolve(&repo, rev)?;
    let opts = CheckoutOptions {
        mode: if p.flag("user-mode") {
            CheckoutMode::User
        } else {
            CheckoutMode::None
        },
        overwrite: if p.flag("union") {
            Overwrite::UnionFiles
        } else if p.flag("union-add") {
            Overwrite::AddFiles
        } else if p.flag("union-identical") {
            Overwrite::UnionIdentical
        } else {
            Overwrite::None
        },
        subpath: p.value("subpath").map(str::to_string),
        require_hardlinks: p.flag("require-hardlinks"),
        force_copy: p.flag("force-copy"),
        skip_list,
        bareuseronly_dirs: p.flag("bareuseronly-dirs"),
        disable_cache: p.flag("disable-cache"),
        passthrough_whiteouts: p.flag("process-passthrough-whiteouts"),
    };
    if let (Some(sub), true) = (&opts.subpath, p.flag("allow-noent")) {
        if let Err(ostree_repo::Error::NotFound(_)) = display::lookup(&repo, &c, sub) {
            return Ok(());
        }
    }
    ostree_repo::checkout::checkout(&repo, &c, Path::new(&dest), &opts)?;
    Ok(())
}

fn resolve(repo: &Repo, rev: &str) -> R<Checksum> {
    Ok(repo.resolve_rev(rev, false)?.expect("allow_noent is false"))
}

fn refs(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("list", None, Kind::Flag),
            ("create", None, Kind::Value),
            ("delete", None, Kind::Flag),
            ("force", None, Kind::Flag),
            ("alias", Some('A'), Kind::Flag),
            ("collections", Some('c'), Kind::Flag),
        ],
    )?;
    let repo = open_repo(&p)?;
    if p.flag("collections") {
        return refs_collections(&repo, &p);
    }
    if let Some(newref) = p.value("create") {
        let [target] = p.args.as_slice() else {
            return fail("If --create is specified, exactly one existing ref must be specified");
        };
        if p.flag("alias") {
            if newref.contains(':') {
                return fail("Cannot create alias to remote ref");
            }
            if repo.read_ref(None, target)?.is_none() {
                return fail(format!("Cannot create alias to non-existent ref: {target}"));
            }
            repo.set_alias(newref, target)?;
            return Ok(());
        }
        let (remote, name) = ostree_repo::parse_refspec(newref)?;
        let c = resolve(&repo, target)?;
        if !p.flag("force") && repo.read_ref(remote, name)?.is_some() {
            return fail(format!(
                "--create specified but ref {newref} already exists"
            ));
        }
        repo.set_ref(remote, name, Some(&c))?;
        return Ok(());
    }
    if p.flag("delete") {
        if p.args.is_empty() {
            return fail("At least one ref must be specified");
        }
        for prefix in &p.args {
            let matching = repo.list_refs(Some(prefix))?;
            for name in matching.keys() {
                match name.split_once(':') {
                    Some((remote, n)) => repo.delete_ref(Some(remote), n)?,
                    None => repo.delete_ref(None, name)?,
                }
            }
        }
        return Ok(());
    }
    let mut out = String::new();
    if p.flag("alias") {
        for (a, t) in repo.list_aliases()? {
            out.push_str(&format!("{a} -> {t}\n"));
        }
    } else if p.args.is_empty() {
        for name in repo.list_refs(None)?.keys() {
            out.push_str(name);
            out.push('\n');
        }
    } else {
        for prefix in &p.args {
            for name in repo.list_refs(Some(prefix))?.keys() {
                // Upstream prints names relative to the prefix unless --list.
                // A remote prefix keeps its `REMOTE:` and loses the rest.
                let (remote, local_prefix) = match prefix.split_once(':') {
                    Some((r, rest)) => (Some(r), rest),
                    None => (None, prefix.as_str()),
                };
                let bare = match remote {
                    Some(r) => name.strip_prefix(r).and_then(|n| n.strip_prefix(':')),
                    None => Some(name.as_str()),
                };
                let relative = bare
                    .filter(|_| !p.flag("list"))
                    .and_then(|n| n.strip_prefix(local_prefix))
                    .map(|n| n.trim_start_matches('/'))
                    .filter(|n| !n.is_empty());
                let shown = match (relative, remote) {
                    (Some(rel), Some(r)) => format!("{r}:{rel}"),
                    (Some(rel), None) => rel.to_string(),
                    (None, _) => name.clone(),
                };
                out.push_str(&shown);
                out.push('\n');
            }
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

/// `refs --collections`: collection refs as `(COLLECTION, REF)`, or with
/// `--create=COLLECTION:REF TARGET` / `--delete` to change them.
fn refs_collections(repo: &Repo, p: &Parsed) -> R {
    if let Some(newref) = p.value("create") {
        let [target] = p.args.as_slice() else {
            return fail("If --create is specified, exactly one existing ref must be specified");
        };
        let Some((coll, name)) = newref.split_once(':') else {
            return fail(format!(
                "Invalid collection–ref {newref}: expected COLLECTION:REF"
            ));
        };
        let c = resolve(repo, target)?;
        let exists = repo
            .list_collection_refs()?
            .contains_key(&(coll.to_string(), name.to_string()));
        if exists && !p.flag("force") {
            return fail(format!(
                "--create specified but ref {newref} already exists"
            ));
        }
        repo.set_collection_ref(coll, name, Some(&c))?;
        return Ok(());
    }
    // With --collections, arguments select collection IDs.
    let all = repo.list_collection_refs_with_remotes()?;
    if p.flag("delete") {
        if p.args.is_empty() {
            return fail("At least one ref must be specified");
        }
        for (coll, name) in all.keys().filter(|(c, _)| p.args.contains(c)) {
            repo.set_collection_ref(coll, name, None)?;
        }
        return Ok(());
    }
    let mut out = String::new();
    for (coll, name) in all.keys() {
        if p.args.is_empty() || p.args.contains(coll) {
            out.push_str(&format!("({coll}, {name})\n"));
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn rev_parse(args: &[String]) -> R {
    let p = parse(args, &[("single", Some('S'), Kind::Flag)])?;
    let repo = open_repo(&p)?;
    if p.flag("single") {
        let commits = repo.list_objects(&[ObjectType::Commit])?;
        return match commits.as_slice() {
            [] => fail("No commit objects found"),
            [(c, _)] => {
                println!("{}", object::to_hex(c));
                Ok(())
            }
            _ => fail("Multiple commit objects found"),
        };
    }
    if p.args.is_empty() {
        return fail("A ref argument is required");
    }
    for rev in &p.args {
        println!("{}", object::to_hex(&resolve(&repo, rev)?));
    }
    Ok(())
}

fn ls(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("recursive", Some('R'), Kind::Flag),
            ("dironly", Some('d'), Kind::Flag),
            ("checksum", Some('C'), Kind::Flag),
            ("xattrs", Some('X'), Kind::Flag),
            ("nul-filenames-only", None, Kind::Flag),
        ],
    )?;
    let repo = open_repo(&p)?;
    let Some(rev) = p.args.first() else {
        return fail("An COMMIT argument is required");
    };
    let c = resolve(&repo, rev)?;
    let f = display::LsFlags {
        checksum: p.flag("checksum"),
        xattrs: p.flag("xattrs"),
        nul: false,
    };
    let paths: Vec<String> = if p.args.len() > 1 {
        p.args[1..].to_vec()
    } else {
        vec!["/".into()]
    };
    let mut out = String::new();
    for path in &paths {
        let e = display::lookup(&repo, &c, path)
            .map_err(|e| Fail(format!("Inspecting path '{path}': {e}")))?;
        let norm = path.trim_end_matches('/');
        if p.flag("nul-filenames-only") {
            out.push_str(if norm.is_empty() { "/" } else { norm });
            out.push('\0');
            continue;
        }
        display::ls_line(&repo, &e, norm, &f, &mut out)?;
        if let (display::Entry::Dir(t, _), false) = (&e, p.flag("dironly")) {
            display::ls_children(&repo, t, norm, p.flag("recursive"), &f, &mut out)?;
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn cat(args: &[String]) -> R {
    let p = parse(args, &[])?;
    let repo = open_repo(&p)?;
    let Some(rev) = p.args.first() else {
        return fail("A COMMIT argument is required");
    };
    let c = resolve(&repo, rev)?;
    let mut stdout = std::io::stdout().lock();
    for path in &p.args[1..] {
        match display::lookup_follow(&repo, &c, path)? {
            display::Entry::File(fc) => {
                let mut obj = repo.open_content(&fc)?;
                std::io::copy(&mut obj.payload, &mut stdout)
                    .map_err(|e| Fail(format!("writing output: {e}")))?;
            }
            display::Entry::Dir(..) => return fail(format!("Can't open directory: {path}")),
        }
    }
    Ok(())
}

fn show(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("print-metadata-key", None, Kind::Value),
            ("print-detached-metadata-key", None, Kind::Value),
            ("raw", None, Kind::Flag),
            ("no-byteswap", Some('B'), Kind::Flag),
        ],
    )?;
    let repo = open_repo(&p)?;
    let Some(rev) = p.args.first() else {
        return fail("An object argument is required");
    };
    let c = resolve(&repo, rev)?;
    let mut out = String::new();
    // Upstream byteswaps values for display on little-endian hosts unless -B.
    let swap = |v: Value| {
        if p.flag("no-byteswap") {
            v
        } else {
            display::byteswap(v)
        }
    };
    if let Some(key) = p.value("print-metadata-key") {
        let cm = repo.load_commit(&c)?;
        let v = cm
            .meta(key)
            .ok_or_else(|| Fail(format!("No such metadata key '{key}'")))?;
        out.push_str(&gvariant::print(&swap(v.clone()), true));
        out.push('\n');
    } else if let Some(key) = p.value("print-detached-metadata-key") {
        let d = repo.read_commit_detached_metadata(&c)?.ok_or_else(|| {
            Fail(format!(
                "No detached metadata for commit {}",
                object::to_hex(&c)
            ))
        })?;
        let t = gvariant::Type::parse("a{sv}").expect("static type");
        let dict = gvariant::decode(&t, &d).map_err(|e| Fail(e.to_string()))?;
        let entries = gvariant::vardict_entries(&dict).unwrap_or_default();
        let v = entries
            .iter()
            .find(|(k, _)| k == key)
            .ok_or_else(|| Fail(format!("No such detached metadata key '{key}'")))?;
        out.push_str(&gvariant::print(&swap(v.1.clone()), true));
        out.push('\n');
    } else if p.flag("raw") {
        let data = repo.read_metadata(ObjectType::Commit, &c)?;
        let t = gvariant::Type::parse(object::Commit::TYPE).expect("static type");
        let v = gvariant::decode(&t, &data).map_err(|e| Fail(e.to_string()))?;
        out.push_str(&format!(
            "commit {}\n{}\n",
            object::to_hex(&c),
            gvariant::print(&display::byteswap(v), true)
        ));
    } else {
        display::dump_commit(&repo, &c, &mut out)?;
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn log(args: &[String]) -> R {
    let p = parse(args, &[("raw", None, Kind::Flag)])?;
    let repo = open_repo(&p)?;
    let Some(rev) = p.args.first() else {
        return fail("A rev argument is required");
    };
    let mut c = resolve(&repo, rev)?;
    let mut out = String::new();
    loop {
        let cm = display::dump_commit(&repo, &c, &mut out)?;
        match cm.parent {
            Some(parent) if repo.has_object(ObjectType::Commit, &parent) => c = parent,
            Some(_) => {
                out.push_str("<< History beyond this commit not fetched >>\n");
                break;
            }
            None => break,
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn fsck(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("quiet", Some('q'), Kind::Flag),
            ("delete", None, Kind::Flag),
            ("all", Some('a'), Kind::Flag),
            ("add-tombstones", None, Kind::Flag),
            ("verify-bindings", None, Kind::Flag),
            ("verify-back-refs", None, Kind::Flag),
        ],
    )?;
    let mut repo = open_repo(&p)?;
    let quiet = p.flag("quiet");
    if !quiet {
        println!("Validating refs...");
        println!("Validating refs in collections...");
        println!("Enumerating commits...");
    }
    let opts = ostree_repo::fsck::FsckOptions {
        all: p.flag("all"),
        delete: p.flag("delete"),
        add_tombstones: p.flag("add-tombstones"),
        verify_bindings: p.flag("verify-bindings"),
        verify_back_refs: p.flag("verify-back-refs"),
    };
    let report = ostree_repo::fsck::fsck(&repo, &opts, &|_, _| {})?;
    for e in &report.errors {
        eprintln!("{e}");
    }
    for c in &report.marked_partial {
        eprintln!("Marking commit as partial: {}", object::to_hex(c));
    }
    if !report.errors.is_empty() {
        return fail(format!("{} errors found", report.errors.len()));
    }
    if !quiet {
        println!(
            "Verifying content integrity of {} commit objects...",
            report.commits
        );
    }
    if p.flag("add-tombstones") {
        for c in &report.tombstone_candidates {
            println!("Adding tombstone for commit {}", object::to_hex(c));
        }
        ostree_repo::fsck::add_tombstones(&mut repo, &report.tombstone_candidates)?;
    } else if report.partial > 0 {
        println!("{} partial commits not verified", report.partial);
    }
    println!(
        "fsck objects ({}/{}) 100%\nobject fsck of {} commits completed successfully - no errors found.",
        report.objects, report.objects, report.commits
    );
    Ok(())
}

fn config(args: &[String]) -> R {
    let p = parse(args, &[("group", None, Kind::Value)])?;
    let mut repo = open_repo(&p)?;
    let Some(op) = p.args.first() else {
        return fail("At least one argument is required");
    };
    let split = |key: &str| -> R<(String, String)> {
        match p.value("group") {
            Some(g) => Ok((g.to_string(), key.to_string())),
            None => match key.rsplit_once('.') {
                Some((g, k)) if !g.is_empty() && !k.is_empty() => {
                    Ok((g.to_string(), k.to_string()))
                }
                _ => fail(format!("Section key '{key}' must contain a \".\"")),
            },
        }
    };
    match op.as_str() {
        "get" => {
            let [_, key] = p.args.as_slice() else {
                return fail(if p.args.len() > 2 {
                    "Too many arguments given"
                } else {
                    "You must specify a key"
                });
            };
            let (g, k) = split(key)?;
            match repo.config().get(&g, &k) {
                Some(v) => println!("{v}"),
                None if !repo.config().has_group(&g) => {
                    return fail(format!("Key file does not have group “{g}”"))
                }
                None => return fail(format!("Key file does not have key “{k}” in group “{g}”")),
            }
        }
        "set" => {
            let [_, key, value] = p.args.as_slice() else {
                return fail(if p.args.len() > 3 {
                    "Too many arguments given"
                } else {
                    "You must specify a key and a value"
                });
            };
            let (g, k) = split(key)?;
            let mut kf = repo.config().clone();
            kf.set(&g, &k, value);
            repo.write_config(kf)?;
        }
        "unset" => {
            let [_, key] = p.args.as_slice() else {
                return fail(if p.args.len() > 2 {
                    "Too many arguments given"
                } else {
                    "You must specify a key"
                });
            };
            let (g, k) = split(key)?;
            let mut kf = repo.config().clone();
            if kf.remove(&g, &k) {
                repo.write_config(kf)?;
            }
        }
        other => return fail(format!("Unknown operation {other}")),
    }
    Ok(())
}

fn pull_local(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("depth", None, Kind::Value),
            ("untrusted", None, Kind::Flag),
            ("commit-metadata-only", None, Kind::Flag),
            ("remote", None, Kind::Value),
            ("disable-fsync", None, Kind::Flag),
            ("bareuseronly-files", None, Kind::Flag),
            ("require-static-deltas", None, Kind::Flag),
            ("disable-static-deltas", None, Kind::Flag),
            ("dry-run", None, Kind::Flag),
            ("disable-verify-bindings", None, Kind::Flag),
        ],
    )?;
    let dst = open_repo(&p)?;
    let Some(src_path) = p.args.first() else {
        return fail("DESTINATION must be specified");
    };
    let src = Repo::open(Path::new(src_path))?;
    let depth = match p.value("depth") {
        Some(d) => d
            .parse()
            .map_err(|_| Fail(format!("Cannot parse integer value “{d}” for --depth")))?,
        None => 0,
    };
    let opts = ostree_repo::pull::PullLocalOptions {
        depth,
        untrusted: p.flag("untrusted"),
        commit_metadata_only: p.flag("commit-metadata-only"),
        remote: p.value("remote").map(str::to_string),
        bareuseronly_files: p.flag("bareuseronly-files"),
        // Copying local objects is cheap: deltas only on request, as upstream.
        static_deltas: false,
        require_static_deltas: p.flag("require-static-deltas"),
        dry_run: p.flag("dry-run"),
        disable_verify_bindings: p.flag("disable-verify-bindings"),
        ..Default::default()
    };
    let refs = &p.args[1..];
    let stats = if opts.dry_run {
        ostree_repo::pull::pull_local(&src, &dst, refs, &opts)?
    } else {
        with_status(Op::Pull, |pr| {
            ostree_repo::pull::pull_local_with_progress(&src, &dst, refs, &opts, pr)
        })?
    };
    if opts.dry_run {
        print_delta_dry_run(&stats.delta);
        return Ok(());
    }
    println!(
        "{} metadata, {} content objects imported; {} bytes content written",
        stats.metadata, stats.content, stats.content_bytes
    );
    Ok(())
}

fn diff(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("owner-uid", None, Kind::Value),
            ("owner-gid", None, Kind::Value),
            ("no-xattrs", None, Kind::Flag),
            ("stats", None, Kind::Flag),
        ],
    )?;
    let repo = open_repo(&p)?;
    let [a, b] = p.args.as_slice() else {
        return fail("REV and TARGETDIR must be specified");
    };
    // As upstream: an argument that looks like a path is a directory,
    // anything else a revision.
    let side = |s: &str| -> R<ostree_repo::diff::Side> {
        if s.starts_with('/') || s.starts_with("./") || s == "." {
            Ok(ostree_repo::diff::Side::Dir(s.into()))
        } else {
            Ok(ostree_repo::diff::Side::Commit(resolve(&repo, s)?))
        }
    };
    let opts = ostree_repo::diff::DiffOptions {
        owner_uid: parse_id(p.value("owner-uid"), "owner-uid")?,
        owner_gid: parse_id(p.value("owner-gid"), "owner-gid")?,
        no_xattrs: p.flag("no-xattrs"),
    };
    let d = ostree_repo::diff::diff(&repo, &side(a)?, &side(b)?, &opts)?;
    let mut out = String::new();
    for (tag, list) in [("M", &d.modified), ("D", &d.removed), ("A", &d.added)] {
        for path in list {
            out.push_str(&format!("{tag}    {path}\n"));
        }
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

fn checksum(args: &[String]) -> R {
    let p = parse(args, &[("ignore-xattrs", None, Kind::Flag)])?;
    if p.args.is_empty() {
        return fail("A filename must be given");
    }
    for f in &p.args {
        let c = ostree_repo::commit::checksum_path(Path::new(f), p.flag("ignore-xattrs"))?;
        println!("{}", object::to_hex(&c));
    }
    Ok(())
}

/// The engine for `--sign-type` (default ed25519); the dummy engine is for
/// upstream's tests only and, as upstream, needs OSTREE_DUMMY_SIGN_ENABLED=1.
fn sign_engine(name: Option<&str>) -> R<ostree_repo::sign::SignEngine> {
    let engine = ostree_repo::sign::SignEngine::parse(name.unwrap_or("ed25519"))?;
    if engine == ostree_repo::sign::SignEngine::Dummy
        && std::env::var("OSTREE_DUMMY_SIGN_ENABLED").as_deref() != Ok("1")
    {
        return fail("dummy signature type is only for ostree testing");
    }
    Ok(engine)
}

fn sign(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("verify", None, Kind::Flag),
            ("sign-type", Some('s'), Kind::Value),
            ("keys-file", None, Kind::Value),
            ("keys-dir", None, Kind::Value),
        ],
    )?;
    let repo = open_repo(&p)?;
    let Some(rev) = p.args.first() else {
        return fail("Need a COMMIT to sign or verify");
    };
    let c = resolve(&repo, rev)?;
    let mut keys: Vec<String> = p.args[1..].to_vec();
    if let Some(f) = p.value("keys-file") {
        keys.extend(ostree_repo::sign::read_keys_file(Path::new(f))?);
    }
    if p.flag("verify") {
        let engine = match sign_engine(p.value("sign-type")) {
            Ok(e) => e,
            // Upstream reports a disabled engine as a failed verification.
            Err(_) => return fail("No valid signatures found"),
        };
        if engine == ostree_repo::sign::SignEngine::Ed25519
            && keys.is_empty()
            && p.value("keys-file").is_none()
        {
            // System-wide trusted keys (minus revoked ones), as upstream.
            let dirs: Vec<PathBuf> = match p.value("keys-dir") {
                Some(d) => vec![d.into()],
                None => vec!["/etc/ostree".into(), "/usr/share/ostree".into()],
            };
            for d in dirs {
                keys.extend(ostree_repo::sign::keys_from_dir(&d, engine)?);
            }
        }
        return match ostree_repo::sign::verify_commit(&repo, &c, engine, &keys)? {
            Some(k) if engine == ostree_repo::sign::SignEngine::Ed25519 => {
                println!("ed25519: Signature verified successfully with key '{k}'");
                Ok(())
            }
            Some(_) => {
                println!("{}: Signature verified", engine.name());
                Ok(())
            }
            None if engine == ostree_repo::sign::SignEngine::Ed25519 => fail(format!(
                "ed25519: Signature couldn't be verified; tried {} keys",
                keys.len()
            )),
            None => fail("No valid signatures found"),
        };
    }
    if keys.is_empty() {
        return fail("No keys specified");
    }
    let engine = sign_engine(p.value("sign-type"))?;
    for k in &keys {
        ostree_repo::sign::sign_commit(&repo, &c, engine, k)?;
    }
    Ok(())
}

fn remote_group(name: &str) -> String {
    format!("remote \"{name}\"")
}

fn remote(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("set", None, Kind::Value),
            ("no-gpg-verify", None, Kind::Flag),
            ("no-sign-verify", None, Kind::Flag),
            ("if-not-exists", None, Kind::Flag),
            ("if-exists", None, Kind::Flag),
            ("force", None, Kind::Flag),
            ("show-urls", Some('u'), Kind::Flag),
            ("custom-backend", None, Kind::Value),
            ("sysroot", None, Kind::Value),
            ("collection-id", None, Kind::Value),
            // Accepted and ignored, as by an upstream built without GPG
            // (our `--version` lists no `gpgme`): there is no keyring.
            ("gpg-import", None, Kind::Value),
        ],
    )?;
    // `remote --sysroot=PATH` works on the sysroot's system repository, as upstream.
    let mut repo = match p.value("sysroot") {
        Some(sysroot) if p.value("repo").is_none() => {
            Repo::open(&Path::new(sysroot).join("ostree/repo"))?
        }
        _ => open_repo(&p)?,
    };
    let Some(op) = p.args.first() else {
        return fail("No \"remote\" subcommand specified");
    };
    let mut kf = repo.config().clone();
    match op.as_str() {
        "add" => {
            // A remote served by an external backend (e.g. ostree-rs-ext
            // containers) may have no URL.
            let custom = p.value("custom-backend");
            let (Some(name), url) = (p.args.get(1), p.args.get(2)) else {
                return fail("NAME and URL must be specified");
            };
            if url.is_none() && custom.is_none() {
                return fail("NAME and URL must be specified");
            }
            let g = remote_group(name);
            // Upstream: a system repo reached through a deployment (`--sysroot`
            // naming a root with an `etc/`) keeps its remotes in that root's
            // `etc/ostree/remotes.d/NAME.conf`, unless
            // `core.add-remotes-config-dir` is false.
            let remotes_d = p
                .value("sysroot")
                .filter(|_| p.value("repo").is_none())
                .map(|s| Path::new(s).join("etc"))
                .filter(|etc| etc.is_dir())
                .filter(|_| kf.get("core", "add-remotes-config-dir") != Some("false"))
                .map(|etc| etc.join("ostree/remotes.d"));
            if kf.has_group(&g) {
                if p.flag("if-not-exists") {
                    return Ok(());
                }
                if !p.flag("force") {
                    return fail(format!(
                        "Remote configuration for \"{name}\" already exists: (in config)"
                    ));
                }
                kf.remove_group(&g);
            }
            let mut own = ostree_repo::keyfile::KeyFile::default();
            let target = if remotes_d.is_some() {
                &mut own
            } else {
                &mut kf
            };
            if let Some(url) = url {
                target.set(&g, "url", url);
            }
            if let Some(b) = custom {
                target.set(&g, "custom-backend", b);
            }
            if p.args.len() > 3 {
                let branches: String = p.args[3..].iter().map(|b| format!("{b};")).collect();
                target.set(&g, "branches", &branches);
            }
            for kv in p.values("set") {
                let Some((k, v)) = kv.split_once('=') else {
                    return fail(format!("Missing '=' in KEY=VALUE for --set '{kv}'"));
                };
                target.set(&g, k, v);
            }
            if p.flag("no-gpg-verify") {
                target.set(&g, "gpg-verify", "false");
            }
            if p.flag("no-sign-verify") {
                target.set(&g, "sign-verify", "false");
            }
            // Written as given, after the other keys, as upstream does.
            if let Some(c) = p.value("collection-id") {
                target.set(&g, "collection-id", c);
            }
            if let Some(dir) = remotes_d {
                let file = dir.join(format!("{name}.conf"));
                if file.exists() && !p.flag("force") {
                    if p.flag("if-not-exists") {
                        return Ok(());
                    }
                    return fail(format!(
                        "Remote configuration for \"{name}\" already exists: {}",
                        file.display()
                    ));
                }
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Fail(format!("{}: {e}", dir.display())))?;
                let tmp = dir.join(format!(".{name}.conf.tmp"));
                std::fs::write(&tmp, own.to_text())
                    .and_then(|()| std::fs::rename(&tmp, &file))
                    .map_err(|e| Fail(format!("{}: {e}", file.display())))?;
                return Ok(());
            }
            repo.write_config(kf)?;
        }
        "delete" => {
            let Some(name) = p.args.get(1) else {
                return fail("NAME must be specified");
            };
            if !kf.remove_group(&remote_group(name)) {
                if p.flag("if-exists") {
                    return Ok(());
                }
                return fail(format!("Remote \"{name}\" not found"));
            }
            repo.write_config(kf)?;
        }
        "list" => {
            let mut names: Vec<(String, String)> = kf
                .groups()
                .iter()
                .filter_map(|g| {
                    g.strip_prefix("remote \"")
                        .and_then(|r| r.strip_suffix('"'))
                })
                .map(|n| {
                    (
                        n.to_string(),
                        kf.get(&remote_group(n), "url").unwrap_or("").to_string(),
                    )
                })
                .collect();
            names.sort();
            let width = names.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (n, u) in names {
                if p.flag("show-urls") {
                    println!("{n:<width$}  {u}");
                } else {
                    println!("{n}");
                }
            }
        }
        "show-url" => {
            let Some(name) = p.args.get(1) else {
                return fail("NAME must be specified");
            };
            match kf.get(&remote_group(name), "url") {
                Some(u) => println!("{u}"),
                None if kf.has_group(&remote_group(name)) => {
                    return fail(format!("No \"url\" option in remote \"{name}\""))
                }
                None => return fail(format!("Remote \"{name}\" not found")),
            }
        }
        "refs" => {
            let Some(name) = p.args.get(1) else {
                return fail("NAME must be specified");
            };
            let g = remote_group(name);
            let Some(url) = kf.get(&g, "url") else {
                if kf.has_group(&g) {
                    return fail(format!("No \"url\" option in remote \"{name}\""));
                }
                return fail(format!("Remote \"{name}\" not found"));
            };
            let names: Vec<String> = if let Some(path) = url.strip_prefix("file://") {
                Repo::open(Path::new(path))?
                    .list_refs(None)?
                    .into_keys()
                    .filter(|k| !k.contains(':'))
                    .collect()
            } else {
                ostree_repo::pull_http::fetch_summary(url)?
                    .ok_or_else(|| {
                        Fail("Remote refs not available; server has no summary file".into())
                    })?
                    .refs
                    .into_iter()
                    .map(|r| r.name)
                    .collect()
            };
            let mut out = String::new();
            for n in names {
                out.push_str(&format!("{name}:{n}\n"));
            }
            let _ = std::io::stdout().write_all(out.as_bytes());
        }
        other => return fail(format!("Unknown \"remote\" subcommand '{other}'")),
    }
    Ok(())
}

/// `pull` from a remote: `http(s)://` archive repos over HTTP, `file://`
/// with the same traversal as `pull-local`; writes `refs/remotes/REMOTE/`.
fn pull(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("depth", None, Kind::Value),
            ("commit-metadata-only", None, Kind::Flag),
            ("mirror", None, Kind::Flag),
            ("disable-fsync", None, Kind::Flag),
            // Every object is already fsynced before it is published.
            ("per-object-fsync", None, Kind::Flag),
            ("disable-static-deltas", None, Kind::Flag),
            ("require-static-deltas", None, Kind::Flag),
            ("dry-run", None, Kind::Flag),
            ("bareuseronly-files", None, Kind::Flag),
            ("http-trusted", None, Kind::Flag),
            ("timestamp-check", Some('T'), Kind::Flag),
            ("timestamp-check-from-rev", None, Kind::Value),
            ("disable-verify-bindings", None, Kind::Flag),
        ],
    )?;
    let repo = open_repo(&p)?;
    let Some(remote_name) = p.args.first() else {
        return fail("REMOTE must be specified");
    };
    let (remote_name, mut refs) = match remote_name.split_once(':') {
        Some((r, rf)) => (r.to_string(), vec![rf.to_string()]),
        None => (remote_name.clone(), Vec::new()),
    };
    refs.extend(p.args[1..].iter().cloned());
    let g = remote_group(&remote_name);
    if let Some(b) = repo.config().get(&g, "custom-backend") {
        return fail(format!(
            "Cannot pull via ostree: remote '{remote_name}' uses custom backend '{b}'"
        ));
    }
    if let Some(msg) = repo.config().get(&g, "unconfigured-state") {
        return fail(format!("remote '{remote_name}' is unconfigured; {msg}"));
    }
    let Some(url) = repo.config().get(&g, "url") else {
        return fail(format!("Remote \"{remote_name}\" not found"));
    };
    if refs.is_empty() {
        if let Some(b) = repo.config().get(&g, "branches") {
            refs.extend(b.split(';').filter(|s| !s.is_empty()).map(str::to_string));
        }
    }
    let depth = match p.value("depth") {
        Some(d) => d
            .parse()
            .map_err(|_| Fail(format!("Cannot parse integer value “{d}” for --depth")))?,
        None => 0,
    };
    let remote = (!p.flag("mirror")).then(|| remote_name.clone());
    if url.starts_with("http://") || url.starts_with("https://") {
        let opts = ostree_repo::pull_http::HttpPullOptions {
            depth,
            commit_metadata_only: p.flag("commit-metadata-only"),
            remote,
            disable_static_deltas: p.flag("disable-static-deltas") || p.flag("mirror"),
            require_static_deltas: p.flag("require-static-deltas"),
            dry_run: p.flag("dry-run"),
            bareuseronly_files: p.flag("bareuseronly-files"),
            trusted: p.flag("http-trusted"),
            timestamp_check: p.flag("timestamp-check"),
            timestamp_check_from: match p.value("timestamp-check-from-rev") {
                Some(r) => Some(
                    object::from_hex(r).ok_or_else(|| Fail(format!("Invalid checksum '{r}'")))?,
                ),
                None => None,
            },
            collection_id: repo
                .remote_option(&remote_name, "collection-id")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            disable_verify_bindings: p.flag("disable-verify-bindings"),
            collection_refs: Vec::new(),
        };
        let start = std::time::Instant::now();
        let stats = if opts.dry_run {
            ostree_repo::pull_http::pull_http(&repo, url, &refs, &opts)?
        } else {
            with_status(Op::Pull, |pr| {
                ostree_repo::pull_http::pull_http_with_progress(&repo, url, &refs, &opts, pr)
            })?
        };
        if opts.dry_run {
            print_delta_dry_run(&stats.written.delta);
        } else if let Some(line) = stats.status_line(start.elapsed().as_secs()) {
            println!("{line}");
        }
        return Ok(());
    }
    let Some(path) = url.strip_prefix("file://") else {
        return fail(format!("Invalid URI scheme in {url}"));
    };
    let src = Repo::open(Path::new(path))?;
    // A mirror with nothing named takes everything the source publishes
    // (mirrored collections included), which the pull works out itself.
    if refs.is_empty() && !p.flag("mirror") {
        refs.extend(
            src.list_refs(None)?
                .into_keys()
                .filter(|k| !k.contains(':')),
        );
    }
    if p.flag("dry-run") && !p.flag("require-static-deltas") {
        return fail("Dry run option is only supported with --require-static-deltas");
    }
    let opts = ostree_repo::pull::PullLocalOptions {
        depth,
        untrusted: true,
        commit_metadata_only: p.flag("commit-metadata-only"),
        remote,
        bareuseronly_files: p.flag("bareuseronly-files"),
        static_deltas: !p.flag("disable-static-deltas") && !p.flag("mirror"),
        require_static_deltas: p.flag("require-static-deltas"),
        dry_run: p.flag("dry-run"),
        mirror: p.flag("mirror"),
        disable_verify_bindings: p.flag("disable-verify-bindings"),
        collection_refs: Vec::new(),
    };
    if opts.dry_run {
        let stats = ostree_repo::pull::pull_local(&src, &repo, &refs, &opts)?;
        print_delta_dry_run(&stats.delta);
    } else {
        with_status(Op::Pull, |pr| {
            ostree_repo::pull::pull_local_with_progress(&src, &repo, &refs, &opts, pr)
        })?;
    }
    Ok(())
}

/// `find-remotes [--pull [--mirror]] [--finders=LIST] COLLECTION-ID REF...`:
/// the remotes serving those collection refs, optionally pulled from.
fn find_remotes(args: &[String]) -> R {
    use ostree_repo::find_remotes::{self as fr, Finder};
    let p = parse(
        args,
        &[
            // Accepted for upstream's scripts; summaries are not cached
            // here, and a pull syncs once per transaction anyway.
            ("cache-dir", None, Kind::Value),
            ("disable-fsync", None, Kind::Flag),
            ("finders", None, Kind::Value),
            ("pull", None, Kind::Flag),
            ("mirror", None, Kind::Flag),
        ],
    )?;
    let repo = open_repo(&p)?;
    if p.args.is_empty() {
        return fail("At least one COLLECTION-ID REF pair must be specified");
    }
    if p.args.len() % 2 != 0 {
        return fail("Only complete COLLECTION-ID REF pairs may be specified");
    }
    if p.flag("mirror") && !p.flag("pull") {
        return fail("When --mirror is specified, --pull must also be");
    }
    // Upstream's default adds the mount and LAN finders, which this ostree
    // does not have: the configured remotes are all it can search.
    let finders = match p.value("finders") {
        Some(list) => Finder::parse(list)?,
        None => vec![Finder::Config],
    };
    let wanted: Vec<(String, String)> = p
        .args
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    let results = fr::find_remotes(&repo, &wanted, &finders)?;
    print!("{}", fr::report(&results, &wanted));
    if results.is_empty() || !p.flag("pull") {
        return Ok(());
    }
    fr::pull_from_remotes(&repo, &results, &wanted, p.flag("mirror"))?;
    println!(
        "Pulled {}/{} refs successfully.",
        wanted.len(),
        wanted.len()
    );
    Ok(())
}

/// Upstream's `pull --dry-run` report of the static-delta parts to fetch.
fn print_delta_dry_run(d: &ostree_repo::delta::DeltaNeeds) {
    use ostree_repo::pull_http::format_size;
    println!(
        "Delta update: 0/{} parts, {}/{}, {} total uncompressed",
        d.needed_parts,
        format_size(0),
        format_size(d.size),
        format_size(d.usize)
    );
}

fn reset(args: &[String]) -> R {
    let p = parse(args, &[])?;
    let repo = open_repo(&p)?;
    let [r, target] = p.args.as_slice() else {
        return fail("A ref and commit argument is required");
    };
    let (remote, name) = ostree_repo::parse_refspec(r)?;
    let current = repo
        .read_ref(remote, name)?
        .ok_or_else(|| Fail(format!("Refspec '{r}' not found")))?;
    let c = resolve(&repo, target)?;
    // Upstream only allows moving a ref back along its own history.
    let mut cur = Some(current);
    let mut found = false;
    while let Some(x) = cur {
        if x == c {
            found = true;
            break;
        }
        cur = if repo.has_object(ObjectType::Commit, &x) {
            repo.load_commit(&x)?.parent
        } else {
            None
        };
    }
    if !found {
        return fail(format!(
            "Commit {} is not in the history of {r}",
            object::to_hex(&c)
        ));
    }
    repo.set_ref(remote, name, Some(&c))?;
    Ok(())
}

fn prune(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("refs-only", None, Kind::Flag),
            ("depth", None, Kind::Value),
            ("no-prune", None, Kind::Flag),
            ("delete-commit", None, Kind::Value),
            ("keep-younger-than", None, Kind::Value),
            ("only-branch", None, Kind::Value),
            ("retain-branch-depth", None, Kind::Value),
            ("static-deltas-only", None, Kind::Flag),
            ("commit-only", None, Kind::Flag),
        ],
    )?;
    let mut repo = open_repo(&p)?;
    let depth = match p.value("depth") {
        Some(d) => d
            .parse()
            .map_err(|_| Fail(format!("Cannot parse integer value “{d}” for --depth")))?,
        None => -1,
    };
    let keep_younger_than = match p.value("keep-younger-than") {
        None => None,
        Some(v) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Some(
                parse_relative_date(v, now)
                    .ok_or_else(|| Fail(format!("Could not parse '{v}'")))?,
            )
        }
    };
    let delete_commit = match p.value("delete-commit") {
        Some(c) => Some(resolve(&repo, c)?),
        None => None,
    };
    let mut retain_branch_depth = Vec::new();
    for bd in p.values("retain-branch-depth") {
        let Some((branch, d)) = bd.split_once('=') else {
            return fail(format!("Invalid value {bd}, must specify BRANCH=DEPTH"));
        };
        let depth = parse_c_int(d).ok_or_else(|| Fail(format!("Invalid depth {d}")))?;
        retain_branch_depth.push((branch.to_string(), depth));
    }
    if delete_commit.is_some() && !p.flag("static-deltas-only") && !p.flag("no-prune") {
        // Upstream's CLI records that commits are now deleted on purpose.
        repo.enable_tombstone_commits()?;
    }
    let opts = ostree_repo::prune::PruneOptions {
        refs_only: p.flag("refs-only"),
        depth,
        dry_run: p.flag("no-prune"),
        delete_commit,
        static_deltas_only: p.flag("static-deltas-only"),
        keep_younger_than,
        only_branches: p.values("only-branch").to_vec(),
        retain_branch_depth,
        commit_only: p.flag("commit-only"),
    };
    let st = ostree_repo::prune::prune(&repo, &opts)?;
    println!("Total objects: {}", st.total);
    if st.pruned == 0 {
        println!("No unreachable objects");
    } else if opts.dry_run {
        println!(
            "Would delete: {} objects, freeing {} bytes",
            st.pruned, st.freed
        );
    } else {
        println!("Deleted {} objects, {} bytes freed", st.pruned, st.freed);
    }
    Ok(())
}

/// An integer the way `g_ascii_strtoll` reads `--retain-branch-depth`
/// values: optional sign and leading digits; `None` if there are none.
fn parse_c_int(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let v: i64 = digits[..end].parse().ok()?;
    Some(if neg { -v } else { v })
}

/// `--keep-younger-than` values: an absolute date or `N <unit>s ago`.
fn parse_relative_date(v: &str, now: u64) -> Option<u64> {
    if let Some(t) = ostree_repo::commit::parse_timestamp(v) {
        return Some(t);
    }
    let w: Vec<&str> = v.split_whitespace().collect();
    let (n, unit) = match w.as_slice() {
        [n, unit, "ago"] | [n, unit] => (n.parse::<u64>().ok()?, unit.trim_end_matches('s')),
        _ => return None,
    };
    let secs = match unit {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86400,
        "week" => 7 * 86400,
        "month" => 30 * 86400,
        "year" => 365 * 86400,
        _ => return None,
    };
    now.checked_sub(n * secs)
}

fn summary(args: &[String]) -> R {
    let p = parse(
        args,
        &[
            ("update", Some('u'), Kind::Flag),
            ("view", None, Kind::Flag),
            ("raw", None, Kind::Flag),
            ("add-metadata", Some('m'), Kind::Value),
        ],
    )?;
    let mut repo = open_repo(&p)?;
    if p.flag("update") {
        let extra = keyvalues(p.values("add-metadata"), true)?;
        ostree_repo::summary::regenerate(&mut repo, &extra)?;
        return Ok(());
    }
    if !(p.flag("view") || p.flag("raw")) {
        return fail("No option specified; use -u to update summary");
    }
    let path = repo.path().join("summary");
    let bytes = std::fs::read(&path).map_err(|_| Fail("No summary file".into()))?;
    let s = ostree_repo::summary::Summary::from_bytes(&bytes)?;
    let mut out = String::new();
    if p.flag("raw") {
        let t = gvariant::Type::parse(ostree_repo::summary::TYPE).expect("static type");
        let v = gvariant::decode(&t, &bytes).map_err(|e| Fail(e.to_string()))?;
        out.push_str(&gvariant::print(&display::byteswap(v), true));
        out.push('\n');
    } else {
        out.push_str(&display::summary_view(&s));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

/// The size options of `static-delta generate`, in upstream's megabytes
/// of 1000 × 1000 bytes.
fn mb_option(p: &Parsed, name: &str, default: u64) -> R<u64> {
    match p.value(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .and_then(|m| m.checked_mul(ostree_repo::delta::MB))
            .ok_or_else(|| Fail(format!("Cannot parse integer value “{v}” for --{name}"))),
    }
}

/// What upstream's `static-delta generate` reports about the delta it made.
/// We never use rollsum, so its lines stay at zero; upstream's per-file
/// rollsum lines have no counterpart.
fn generate_report(st: &ostree_repo::delta::GenerateStats) -> String {
    let mut s = format!(
        "modified: {}\nnew reachable: metadata={} content regular={} symlink={}\nrollsum for 0/{} modified\n",
        st.modified, st.new_metadata, st.new_regular, st.new_symlinks, st.modified
    );
    for i in 0..st.bsdiff {
        s.push_str(&format!("processing bsdiff: [{i}/{}]\n", st.bsdiff));
    }
    for (c, size) in &st.fallback_objects {
        // GLib puts a no-break space between number and unit (fallbacks
        // are over a megabyte, so there always is a unit).
        let size = ostree_repo::pull_http::format_size(*size).replacen(' ', "\u{a0}", 1);
        s.push_str(&format!("fallback for {} ({size})\n", object::to_hex(c)));
    }
    for (i, (n, compressed, uncompressed)) in st.part_sizes.iter().enumerate() {
        s.push_str(&format!(
            "part {} n:{n} compressed:{compressed} uncompressed:{uncompressed}\n",
            i + 1
        ));
    }
    s.push_str(&format!(
        "uncompressed={} compressed={} loose={}\nrollsum=0 objects, 0 bytes\nbsdiff={} objects\n",
        st.uncompressed, st.compressed, st.loose, st.bsdiff
    ));
    s
}

fn static_delta(args: &[String]) -> R {
    use ostree_repo::delta::{self, DeltaName};
    let p = parse(
        args,
        &[
            ("from", None, Kind::Value),
            ("to", None, Kind::Value),
            ("empty", None, Kind::Flag),
            ("inline", None, Kind::Flag),
            ("if-not-exists", Some('n'), Kind::Flag),
            ("min-fallback-size", None, Kind::Value),
            ("max-chunk-size", None, Kind::Value),
            ("max-bsdiff-size", None, Kind::Value),
            ("disable-bsdiff", None, Kind::Flag),
            ("swap-endianness", None, Kind::Flag),
            ("set-endianness", None, Kind::Value),
            ("filename", None, Kind::Value),
            ("sign", None, Kind::Value),
            ("sign-type", None, Kind::Value),
            ("keys-file", None, Kind::Value),
        ],
    )?;
    // Public keys for verify/apply-offline: arguments after the delta/path,
    // plus --keys-file.
    let public_keys = || -> R<Vec<String>> {
        let mut keys: Vec<String> = p.args.iter().skip(2).cloned().collect();
        if let Some(f) = p.value("keys-file") {
            keys.extend(ostree_repo::sign::read_keys_file(Path::new(f))?);
        }
        Ok(keys)
    };
    let repo = open_repo(&p)?;
    let Some(sub) = p.args.first() else {
        return fail("No subcommand specified");
    };
    let arg = p.args.get(1).map(String::as_str);
    let delta_arg = |what: &str| -> R<DeltaName> {
        match arg {
            Some(a) => Ok(DeltaName::parse(a)?),
            None => fail(format!("{what} requires a DELTA argument")),
        }
    };
    let mut out = String::new();
    match sub.as_str() {
        "list" => {
            let list = delta::list(&repo)?;
            if list.is_empty() {
                out.push_str("(No static deltas)\n");
            }
            for d in list {
                out.push_str(&format!("{d}\n"));
            }
        }
        "show" => out.push_str(&delta::show(&repo, &delta_arg("show")?)?),
        "delete" => delta::delete(&repo, &delta_arg("delete")?)?,
        "reindex" => delta::reindex(&repo)?,
        "indexes" => {
            for c in delta::indexes(&repo)? {
                out.push_str(&format!("{}\n", object::to_hex(&c)));
            }
        }
        "apply-offline" => {
            let Some(path) = arg else {
                return fail("PATH must be specified");
            };
            let keys = public_keys()?;
            let verify = match p.value("sign-type") {
                Some(t) => Some((sign_engine(Some(t))?, keys.as_slice())),
                None if !keys.is_empty() => Some((sign_engine(None)?, keys.as_slice())),
                None => None,
            };
            delta::apply_offline_verified(&repo, Path::new(path), verify)?;
        }
        "verify" => {
            let name = delta_arg("verify")?;
            let engine = sign_engine(p.value("sign-type"))?;
            let sbpath = repo.path().join(name.relpath()).join("superblock");
            let data = std::fs::read(&sbpath)
                .map_err(|e| Fail(format!("reading {}: {e}", sbpath.display())))?;
            match delta::verify_signature(&data, engine, &public_keys()?) {
                Ok(()) => out.push_str("Verification OK\n"),
                Err(e) => {
                    println!("Verification fails");
                    return Err(e.into());
                }
            }
        }
        "generate" => {
            let to_rev = match (p.value("to"), arg) {
                (Some(t), _) | (None, Some(t)) => t,
                (None, None) => return fail("--to requires an argument"),
            };
            if p.flag("empty") && p.value("from").is_some() {
                return fail("Cannot specify both --empty and --from=COMMIT");
            }
            let to = resolve(&repo, to_rev)?;
            let from = if p.flag("empty") {
                None
            } else {
                Some(resolve(
                    &repo,
                    &p.value("from")
                        .map(str::to_string)
                        .unwrap_or(format!("{to_rev}^")),
                )?)
            };
            let name = DeltaName { from, to };
            if p.flag("if-not-exists")
                && repo
                    .path()
                    .join(name.relpath())
                    .join("superblock")
                    .is_file()
            {
                println!("Delta {name} already exists.");
                return Ok(());
            }
            let mut opts = delta::GenerateOptions::new(from, to);
            opts.inline = p.flag("inline");
            opts.min_fallback_size =
                mb_option(&p, "min-fallback-size", delta::DEFAULT_MIN_FALLBACK_SIZE)?;
            opts.max_chunk_size = mb_option(&p, "max-chunk-size", delta::DEFAULT_MAX_CHUNK_SIZE)?;
            opts.bsdiff = !p.flag("disable-bsdiff");
            opts.max_bsdiff_size =
                mb_option(&p, "max-bsdiff-size", delta::DEFAULT_MAX_BSDIFF_SIZE)?;
            for secret in p.values("sign") {
                opts.sign
                    .push((sign_engine(p.value("sign-type"))?, secret.clone()));
            }
            if let Some(f) = p.value("keys-file") {
                let engine = sign_engine(p.value("sign-type"))?;
                for k in ostree_repo::sign::read_keys_file(Path::new(f))? {
                    opts.sign.push((engine, k));
                }
            }
            opts.swap_endianness = match p.value("set-endianness") {
                Some("big") => true,
                Some("little") => false,
                Some(e) => return fail(format!("Invalid endianness '{e}'")),
                None => p.flag("swap-endianness"),
            };
            println!(
                "Generating static delta:\n  From: {}\n  To:   {}",
                from.map(|c| object::to_hex(&c))
                    .unwrap_or_else(|| "empty".into()),
                object::to_hex(&to)
            );
            let st = delta::generate(&repo, &opts)?;
            // Upstream's statistics, which its 2022 CLI prints on stderr.
            eprint!("{}", generate_report(&st));
        }
        other => return fail(format!("Unknown static-delta subcommand '{other}'")),
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glib_style_options() {
        let a: Vec<String> = ["-bfoo", "--subject", "s", "dir", "--tree=dir=x", "--", "-x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = parse(
            &a,
            &[
                ("branch", Some('b'), Kind::Value),
                ("subject", Some('s'), Kind::Value),
                ("tree", None, Kind::Value),
            ],
        )
        .ok()
        .unwrap();
        assert_eq!(p.value("branch"), Some("foo"));
        assert_eq!(p.value("subject"), Some("s"));
        assert_eq!(p.values("tree"), ["dir=x".to_string()]);
        assert_eq!(p.args, ["dir".to_string(), "-x".to_string()]);
        assert!(parse(&["--nope".to_string()], &[]).is_err());
    }

    #[test]
    fn relative_dates() {
        assert_eq!(
            parse_relative_date("2 days ago", 1_000_000),
            Some(1_000_000 - 2 * 86400)
        );
        assert_eq!(parse_relative_date("@5", 1_000_000), Some(5));
        assert_eq!(parse_relative_date("soon", 1_000_000), None);
    }
}
