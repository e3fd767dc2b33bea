//! `ostree find-remotes`: which remotes serve given collection refs, and
//! pulling them from there (upstream's `ostree_repo_find_remotes_async`
//! and `ostree_repo_pull_from_remotes_async`).
//!
//! Only upstream's `config` finder exists here: the configured remotes
//! whose `collection-id` is one of the requested collections. The `mount`
//! (removable drives) and `lan` (Avahi) finders are refused by name
//! ([`Finder::parse`]), so a caller learns they were not searched.

use crate::object::{self, Checksum};
use crate::pull::{CollectionRef, PullLocalOptions};
use crate::pull_http::HttpPullOptions;
use crate::summary::Summary;
use crate::{validate_collection_id, Error, Repo, Result};
use std::path::Path;

/// Upstream's priority of results of the config finder (mounts would be
/// 50, the LAN 60: lower is preferred).
const CONFIG_PRIORITY: i32 = 100;

/// A source of remotes (`--finders=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finder {
    /// Remotes configured in the repository with a `collection-id`.
    Config,
}

impl Finder {
    /// Parses `--finders=` (comma-separated), with upstream's message for
    /// an unknown or repeated name. `mount` and `lan` are upstream's, but
    /// not implemented here: refused rather than silently skipped.
    pub fn parse(list: &str) -> Result<Vec<Finder>> {
        let mut out = Vec::new();
        for name in list.split(',') {
            match name {
                "config" if !out.contains(&Finder::Config) => out.push(Finder::Config),
                "mount" | "lan" => {
                    return Err(Error::Invalid(format!(
                        "Finder type ‘{name}’ is not supported by this ostree; only ‘config’ is"
                    )))
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "Unknown or duplicate finder type given in --finders option: ‘{name}’"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// One remote that serves some of the requested refs.
#[derive(Debug, Clone)]
pub struct FinderResult {
    /// The remote's name in the repository config.
    pub remote: String,
    /// Its `url`.
    pub url: String,
    /// Which finder found it.
    pub finder: Finder,
    /// Lower is preferred.
    pub priority: i32,
    /// `ostree.summary.last-modified` of the remote's summary.
    pub summary_last_modified: Option<u64>,
    /// Every requested ref with the commit this remote has for it, `None`
    /// where it has none.
    pub refs: Vec<((String, String), Option<Checksum>)>,
}

impl FinderResult {
    /// The keyring upstream would verify this remote's commits with.
    pub fn keyring(&self) -> String {
        format!("{}.trustedkeys.gpg", self.remote)
    }
}

/// Finds the configured remotes serving any of `wanted` (`(collection,
/// ref)` pairs), best first. A remote is a candidate when its
/// `collection-id` is one of the requested collections; its summary then
/// says which refs it has (the main ref list for the summary's own
/// collection, the collection map for others). A remote that has none of
/// the refs of its own collection is dropped, as upstream does; one whose
/// summary cannot be fetched is skipped, as upstream does, since another
/// remote may still serve the refs.
pub fn find_remotes(
    repo: &Repo,
    wanted: &[(String, String)],
    finders: &[Finder],
) -> Result<Vec<FinderResult>> {
    let mut distinct: Vec<&(String, String)> = Vec::new();
    for w in wanted {
        validate_collection_id(&w.0)?;
        crate::validate_ref(&w.1)?;
        if !distinct.contains(&w) {
            distinct.push(w);
        }
    }
    let mut out = Vec::new();
    if !finders.contains(&Finder::Config) {
        return Ok(out);
    }
    let mut remotes: Vec<String> = repo
        .config()
        .groups()
        .iter()
        .filter_map(|g| {
            g.strip_prefix("remote \"")
                .and_then(|r| r.strip_suffix('"'))
        })
        .map(str::to_string)
        .collect();
    remotes.sort();
    for remote in remotes {
        let Some(coll) = repo.remote_option(&remote, "collection-id") else {
            continue;
        };
        if validate_collection_id(coll).is_err() || !wanted.iter().any(|(c, _)| c == coll) {
            continue;
        }
        let Some(url) = repo.remote_option(&remote, "url") else {
            continue;
        };
        let Ok(Some(summary)) = fetch_summary(url) else {
            continue;
        };
        let refs: Vec<((String, String), Option<Checksum>)> = distinct
            .iter()
            .map(|(c, n)| {
                let found = summary.lookup(Some(c), n).map(|(r, _)| r.checksum);
                ((c.clone(), n.clone()), found)
            })
            .collect();
        if !refs
            .iter()
            .any(|((c, _), found)| c == coll && found.is_some())
        {
            continue;
        }
        out.push(FinderResult {
            remote: remote.clone(),
            url: url.to_string(),
            finder: Finder::Config,
            priority: CONFIG_PRIORITY,
            summary_last_modified: last_modified(&summary),
            refs,
        });
    }
    // Stable: equal priorities keep the remotes in name order.
    out.sort_by_key(|r| r.priority);
    Ok(out)
}

/// The summary of the repository at `url` (`file://` or `http(s)://`).
fn fetch_summary(url: &str) -> Result<Option<Summary>> {
    if let Some(path) = url.strip_prefix("file://") {
        let p = Path::new(path).join("summary");
        return match std::fs::read(&p) {
            Ok(b) => Summary::from_bytes(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
        };
    }
    crate::pull_http::fetch_summary(url)
}

fn last_modified(s: &Summary) -> Option<u64> {
    s.metadata.iter().find_map(|(k, v)| match v {
        // Stored big-endian, as every summary timestamp.
        crate::gvariant::Value::U64(x) if k == "ostree.summary.last-modified" => {
            Some(u64::from_be_bytes(x.to_le_bytes()))
        }
        _ => None,
    })
}

/// Pulls each of `wanted` from the best result that has it (refs no result
/// has are skipped, as upstream does), one pull per remote. A mirror keeps
/// refs in their collection (`refs/mirrors/` for collections other than
/// the repository's own); otherwise they land in `refs/remotes/REMOTE/`.
/// Every remote is tried; the refs of those that failed are named in the
/// error, each failure with its reason.
///
/// Unlike upstream, commits are not required to carry GPG signatures:
/// this ostree has no GPG support. Bindings are verified as in any pull.
pub fn pull_from_remotes(
    repo: &Repo,
    results: &[FinderResult],
    wanted: &[(String, String)],
    mirror: bool,
) -> Result<()> {
    let mut per_result: Vec<Vec<CollectionRef>> = vec![Vec::new(); results.len()];
    for key in wanted {
        let best = results.iter().enumerate().find_map(|(i, r)| {
            r.refs
                .iter()
                .find(|(k, c)| k == key && c.is_some())
                .map(|(_, c)| (i, *c))
        });
        if let Some((i, commit)) = best {
            if !per_result[i]
                .iter()
                .any(|r| (&r.collection, &r.name) == (&key.0, &key.1))
            {
                per_result[i].push(CollectionRef {
                    collection: key.0.clone(),
                    name: key.1.clone(),
                    commit,
                });
            }
        }
    }
    let mut failed = Vec::new();
    let mut reasons = Vec::new();
    for (result, refs) in results.iter().zip(per_result) {
        if refs.is_empty() {
            continue;
        }
        if let Err(e) = pull_one(repo, result, &refs, mirror) {
            failed.extend(
                refs.iter()
                    .map(|r| format!("({}, {})", r.collection, r.name)),
            );
            reasons.push(format!("remote ‘{}’: {e}", result.remote));
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "Failed to pull some refs from the remotes: {} ({})",
        failed.join(", "),
        reasons.join("; ")
    )))
}

fn pull_one(
    repo: &Repo,
    result: &FinderResult,
    refs: &[CollectionRef],
    mirror: bool,
) -> Result<()> {
    let remote = (!mirror).then(|| result.remote.clone());
    if let Some(path) = result.url.strip_prefix("file://") {
        let src = Repo::open(Path::new(path))?;
        let opts = PullLocalOptions {
            untrusted: true,
            remote,
            mirror,
            static_deltas: !mirror,
            collection_refs: refs.to_vec(),
            ..Default::default()
        };
        crate::pull::pull_local(&src, repo, &[], &opts)?;
        return Ok(());
    }
    if !(result.url.starts_with("http://") || result.url.starts_with("https://")) {
        return Err(Error::Invalid(format!(
            "Invalid URI scheme in {}",
            result.url
        )));
    }
    let opts = HttpPullOptions {
        remote,
        disable_static_deltas: mirror,
        collection_id: repo
            .remote_option(&result.remote, "collection-id")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        collection_refs: refs.to_vec(),
        ..Default::default()
    };
    crate::pull_http::pull_http(repo, &result.url, &[], &opts)?;
    Ok(())
}

/// Upstream's report of [`find_remotes`]' results (`ostree find-remotes`).
pub fn report(results: &[FinderResult], wanted: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, r) in results.iter().enumerate() {
        let modified = match r.summary_last_modified {
            Some(t) if t > 0 => {
                let d = crate::display::format_date(t);
                format!("{}T{}Z", &d[..10], &d[11..19])
            }
            _ => "unknown".to_string(),
        };
        let finder = match r.finder {
            Finder::Config => "OstreeRepoFinderConfig",
        };
        out.push_str(&format!(
            "Result {i}: {}\n - Finder: {finder}\n - Keyring: {}\n - Priority: {}\n - Summary last modified: {modified}\n - Refs:\n",
            r.url,
            r.keyring(),
            r.priority
        ));
        for ((c, n), commit) in &r.refs {
            let commit = commit.map_or("(not found)".to_string(), |c| object::to_hex(&c));
            out.push_str(&format!("    - ({c}, {n}) = {commit}\n"));
        }
        out.push('\n');
    }
    if results.is_empty() {
        out.push_str("No results.\n");
        return out;
    }
    let mut distinct: Vec<&(String, String)> = Vec::new();
    for w in wanted {
        if !distinct.contains(&w) {
            distinct.push(w);
        }
    }
    let found = |w: &(String, String)| {
        results
            .iter()
            .any(|r| r.refs.iter().any(|(k, c)| k == w && c.is_some()))
    };
    let n_found = distinct.iter().filter(|w| found(w)).count();
    out.push_str(&format!("{n_found}/{} refs were found.\n", distinct.len()));
    if n_found != distinct.len() {
        out.push_str("Refs not found in any remote:\n");
        for w in distinct.iter().filter(|w| !found(w)) {
            out.push_str(&format!(" - ({}, {})\n", w.0, w.1));
        }
    }
    out
}
