//! Matrix diffs: which variants of a fresh matrix need building, which disappeared, and which must be kept
//! because their whole group vanished or shrank too much to be trusted.
//!
//! **Identity.** A variant is the same variant in OLD and NEW when distribution, architecture and `kversion`
//! agree, plus kernel-crawler's `kernelversion` where the release was uploaded more than once (the
//! `_<kernelversion>` suffix of `output`, or the release appearing in its list with more than one
//! `kernelversion`). A release listed once whose `kernelversion` number changes is the same variant, and so
//! is one whose store prefix moved with a driver minor release.
//!
//! **Modified** means a build input changed, each change given as a [`ChangeReason`]:
//! * the driver version, and the store prefix (`output`) where it differs;
//! * the header packages, compared as a set of file names, never by URL or order: kernel-crawler reorders
//!   header lists between runs and mirrors serve the same file from other hosts and paths. A file with the
//!   same name but a different SHA256 (or size) where both sides know it is a change; a file renamed with an
//!   unchanged SHA256 is not;
//! * the kernel config digest, the builder and the build key, each only when both sides carry one.
//!
//! **Safe diffs.** Entries are grouped by (distribution, suite, architecture). A group of OLD that NEW lacks
//! entirely, or where NEW has fewer than [`DiffOptions::shrink_threshold`] × OLD's entries (default: fewer
//! than half), is *held*: a crawl that lost a mirror or a distribution should not read as "delete all of
//! it". Entries of a held group that NEW lacks are reported as kept, not removed. Entries of held groups that
//! NEW still has are compared as usual.
//!
//! The result is deterministic: every list is sorted by `output` (then distribution, architecture, release
//! and `kernelversion`), whatever the order of the inputs.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use kmf_types::{Arch, MatrixEntry};
use serde::Serialize;

use crate::generate::sanitize;
use crate::MatrixError;

/// [`DiffOptions::shrink_threshold`]'s default: a group is held when NEW has fewer than half of OLD's entries.
pub const DEFAULT_SHRINK_THRESHOLD: f64 = 0.5;

/// How [`diff`] treats groups that shrink.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiffOptions {
    /// A group (distribution, suite, architecture) is held when NEW has fewer than this fraction of OLD's
    /// entries of it. A group missing from NEW is always held, so 0 holds only missing groups and 1 holds
    /// every group that shrank at all.
    pub shrink_threshold: f64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            shrink_threshold: DEFAULT_SHRINK_THRESHOLD,
        }
    }
}

/// OLD and NEW compared. Every list is sorted by `output`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatrixDiff {
    /// Variants only NEW has.
    pub added: Vec<MatrixEntry>,
    /// Variants both have, with changed build inputs.
    pub modified: Vec<Modified>,
    /// Variants only OLD has, outside held groups.
    pub removed: Vec<MatrixEntry>,
    /// Groups that vanished or shrank past the threshold, sorted by distribution, suite, architecture.
    pub held: Vec<HeldGroup>,
    /// Variants only OLD has, in held groups: kept, not removed.
    pub kept: Vec<MatrixEntry>,
    /// Variants both have with the same build inputs.
    pub unchanged: usize,
}

/// A variant whose build inputs changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Modified {
    pub old: MatrixEntry,
    pub new: MatrixEntry,
    /// Never empty.
    pub reasons: Vec<ChangeReason>,
}

/// Why a variant counts as modified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ChangeReason {
    DriverVersion {
        old: String,
        new: String,
    },
    /// The store prefix moved (a driver minor release, or a hand-edited matrix).
    Output {
        old: String,
        new: String,
    },
    /// Header package files (by file name) that only one side has.
    HeaderPackages {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Same file name, different SHA256.
    HeaderSha256 {
        file: String,
        old: String,
        new: String,
    },
    /// Same file name, no SHA256 on one side, different sizes.
    HeaderSize {
        file: String,
        old: u64,
        new: u64,
    },
    KernelConfig {
        old: String,
        new: String,
    },
    Builder {
        old: String,
        new: String,
    },
    BuildKey {
        old: String,
        new: String,
    },
}

impl fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeReason::DriverVersion { old, new } => write!(f, "driver version {old} -> {new}"),
            ChangeReason::Output { old, new } => write!(f, "output {old} -> {new}"),
            ChangeReason::HeaderPackages { added, removed } => {
                f.write_str("header packages")?;
                for name in added {
                    write!(f, " +{name}")?;
                }
                for name in removed {
                    write!(f, " -{name}")?;
                }
                Ok(())
            }
            ChangeReason::HeaderSha256 { file, old, new } => {
                write!(f, "{file} sha256 {} -> {}", short(old), short(new))
            }
            ChangeReason::HeaderSize { file, old, new } => {
                write!(f, "{file} size {old} -> {new}")
            }
            ChangeReason::KernelConfig { old, new } => {
                write!(f, "kernel config sha256 {} -> {}", short(old), short(new))
            }
            ChangeReason::Builder { old, new } => write!(f, "builder {old} -> {new}"),
            ChangeReason::BuildKey { old, new } => {
                write!(f, "build key {} -> {}", short(old), short(new))
            }
        }
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Why a group is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// NEW has no entry of the group.
    Missing,
    /// NEW has fewer entries of the group than the shrink threshold allows.
    Shrunk,
}

/// A group (distribution, suite, architecture) whose absent entries are kept rather than removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HeldGroup {
    pub distribution: String,
    /// Empty when the entries name no suite (kernel-crawler lists).
    pub suite: String,
    pub architecture: Arch,
    /// Entries of the group in OLD.
    pub old: usize,
    /// Entries of the group in NEW.
    pub new: usize,
    /// OLD's entries of the group that NEW lacks: listed in [`MatrixDiff::kept`].
    pub kept: usize,
    pub reason: HoldReason,
}

impl HeldGroup {
    /// `debian/bookworm/x86_64`, or `ubuntu/x86_64` without a suite.
    pub fn label(&self) -> String {
        if self.suite.is_empty() {
            format!("{}/{}", self.distribution, self.architecture)
        } else {
            format!("{}/{}/{}", self.distribution, self.suite, self.architecture)
        }
    }
}

impl fmt::Display for HeldGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            HoldReason::Missing => write!(
                f,
                "group {} is missing from NEW ({} entries in OLD)",
                self.label(),
                self.old
            )?,
            HoldReason::Shrunk => write!(
                f,
                "group {} shrank from {} entries in OLD to {} in NEW",
                self.label(),
                self.old,
                self.new
            )?,
        }
        write!(
            f,
            "; its {} entries absent from NEW are kept, not removed",
            self.kept
        )
    }
}

/// Counts of a [`MatrixDiff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Added plus modified: the length of [`MatrixDiff::to_build`].
    pub build: usize,
    pub added: usize,
    pub modified: usize,
    pub removed: usize,
    pub held_groups: usize,
    pub kept: usize,
    pub unchanged: usize,
}

impl MatrixDiff {
    /// The variants to build: added ones and NEW's version of modified ones, sorted by `output`. Written as
    /// JSON it is a matrix for `build --matrix`.
    pub fn to_build(&self) -> Vec<MatrixEntry> {
        let mut out: Vec<MatrixEntry> = self
            .added
            .iter()
            .chain(self.modified.iter().map(|m| &m.new))
            .cloned()
            .collect();
        out.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        out
    }

    /// One line per held group: what happened to it and that its entries are kept.
    pub fn warnings(&self) -> Vec<String> {
        self.held.iter().map(ToString::to_string).collect()
    }

    pub fn summary(&self) -> DiffSummary {
        DiffSummary {
            build: self.added.len() + self.modified.len(),
            added: self.added.len(),
            modified: self.modified.len(),
            removed: self.removed.len(),
            held_groups: self.held.len(),
            kept: self.kept.len(),
            unchanged: self.unchanged,
        }
    }

    /// Nothing to build, remove or hold.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.modified.is_empty()
            && self.removed.is_empty()
            && self.held.is_empty()
    }
}

/// Compares two matrices. Each list should name each variant once ([`check_unique`]); where one does not,
/// the first entry of a variant counts and later ones are ignored.
pub fn diff(old: &[MatrixEntry], new: &[MatrixEntry], opts: &DiffOptions) -> MatrixDiff {
    let old_ids = identities(old);
    let new_ids = identities(new);

    let mut new_index: HashMap<&Identity, usize> = HashMap::with_capacity(new.len());
    let mut new_groups: HashMap<Group, usize> = HashMap::new();
    for (j, id) in new_ids.iter().enumerate() {
        if let Entry::Vacant(slot) = new_index.entry(id) {
            slot.insert(j);
            *new_groups.entry(group(&new[j])).or_default() += 1;
        }
    }

    let mut seen_old: HashSet<&Identity> = HashSet::with_capacity(old.len());
    let mut old_groups: HashMap<Group, usize> = HashMap::new();
    let mut matched = vec![false; new.len()];
    let mut modified = Vec::new();
    let mut absent = Vec::new();
    let mut unchanged = 0;
    for (i, id) in old_ids.iter().enumerate() {
        if !seen_old.insert(id) {
            continue;
        }
        *old_groups.entry(group(&old[i])).or_default() += 1;
        match new_index.get(id) {
            Some(&j) => {
                matched[j] = true;
                let reasons = changes(&old[i], &new[j]);
                if reasons.is_empty() {
                    unchanged += 1;
                } else {
                    modified.push(Modified {
                        old: old[i].clone(),
                        new: new[j].clone(),
                        reasons,
                    });
                }
            }
            None => absent.push(i),
        }
    }
    let mut added: Vec<&MatrixEntry> = new_index
        .values()
        .filter(|&&j| !matched[j])
        .map(|&j| &new[j])
        .collect();

    let mut holds: HashMap<Group, HoldReason> = HashMap::new();
    for (g, &n_old) in &old_groups {
        let n_new = new_groups.get(g).copied().unwrap_or(0);
        if n_new == 0 {
            holds.insert(*g, HoldReason::Missing);
        } else if (n_new as f64) < opts.shrink_threshold * n_old as f64 {
            holds.insert(*g, HoldReason::Shrunk);
        }
    }
    let mut kept_per_group: BTreeMap<Group, usize> = BTreeMap::new();
    let (mut kept, mut removed): (Vec<&MatrixEntry>, Vec<&MatrixEntry>) = absent
        .into_iter()
        .map(|i| &old[i])
        .partition(|e| holds.contains_key(&group(e)));
    for e in &kept {
        *kept_per_group.entry(group(e)).or_default() += 1;
    }
    let held = kept_per_group
        .into_iter()
        .map(|(g, n_kept)| HeldGroup {
            distribution: g.distribution.to_string(),
            suite: g.suite.to_string(),
            architecture: g.architecture,
            old: old_groups[&g],
            new: new_groups.get(&g).copied().unwrap_or(0),
            kept: n_kept,
            reason: holds[&g],
        })
        .collect();

    for list in [&mut added, &mut removed, &mut kept] {
        list.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    }
    modified.sort_by(|a, b| sort_key(&a.new).cmp(&sort_key(&b.new)));
    let owned = |v: Vec<&MatrixEntry>| v.into_iter().cloned().collect();
    MatrixDiff {
        added: owned(added),
        modified,
        removed: owned(removed),
        held,
        kept: owned(kept),
        unchanged,
    }
}

/// Fails on the first variant a matrix names twice (same distribution, architecture, release and upload).
pub fn check_unique(entries: &[MatrixEntry]) -> Result<(), MatrixError> {
    let ids = identities(entries);
    let mut seen: HashMap<&Identity, usize> = HashMap::with_capacity(entries.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(&first) = seen.get(id) {
            return Err(MatrixError::DuplicateVariant {
                label: entries[i].label(),
                kernelversion: entries[i].kernelversion.clone(),
                first,
                second: i,
            });
        }
        seen.insert(id, i);
    }
    Ok(())
}

/// What makes two entries the same variant.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Identity<'a> {
    distribution: &'a str,
    architecture: Arch,
    kversion: &'a str,
    /// `kernelversion`, only for releases uploaded more than once.
    upload: Option<&'a str>,
}

fn identities(entries: &[MatrixEntry]) -> Vec<Identity<'_>> {
    // Per release: its first kernelversion, and whether another one was seen (an exact duplicate is not
    // a second upload).
    let mut releases: HashMap<(&str, Arch, &str), (&str, bool)> =
        HashMap::with_capacity(entries.len());
    for e in entries {
        releases
            .entry((&e.distribution, e.architecture, &e.kversion))
            .and_modify(|(first, repeated)| *repeated |= *first != e.kernelversion)
            .or_insert((&e.kernelversion, false));
    }
    entries
        .iter()
        .map(|e| {
            let (_, repeated) =
                releases[&(e.distribution.as_str(), e.architecture, e.kversion.as_str())];
            Identity {
                distribution: &e.distribution,
                architecture: e.architecture,
                kversion: &e.kversion,
                upload: (repeated || has_upload_suffix(e)).then_some(e.kernelversion.as_str()),
            }
        })
        .collect()
}

/// `output` ends in `/<kversion>_<kernelversion>`, as `generate` writes it for re-uploaded releases.
fn has_upload_suffix(e: &MatrixEntry) -> bool {
    let suffix = sanitize(&e.kernelversion);
    e.output
        .strip_suffix(suffix.as_str())
        .and_then(|s| s.strip_suffix('_'))
        .and_then(|s| s.strip_suffix(e.kversion.as_str()))
        .is_some_and(|s| s.is_empty() || s.ends_with('/'))
}

/// The grouping of safe diffs: distribution, suite (empty if none), architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Group<'a> {
    distribution: &'a str,
    suite: &'a str,
    architecture: Arch,
}

fn group(e: &MatrixEntry) -> Group<'_> {
    Group {
        distribution: &e.distribution,
        suite: e.suite.as_deref().unwrap_or(""),
        architecture: e.architecture,
    }
}

/// Output order; the tail only matters for hand-made matrices that reuse an output.
fn sort_key(e: &MatrixEntry) -> (&str, &str, Arch, &str, &str) {
    (
        &e.output,
        &e.distribution,
        e.architecture,
        &e.kversion,
        &e.kernelversion,
    )
}

fn changes(old: &MatrixEntry, new: &MatrixEntry) -> Vec<ChangeReason> {
    let mut reasons = Vec::new();
    if old.driverversion != new.driverversion {
        reasons.push(ChangeReason::DriverVersion {
            old: old.driverversion.clone(),
            new: new.driverversion.clone(),
        });
    }
    if old.output != new.output {
        reasons.push(ChangeReason::Output {
            old: old.output.clone(),
            new: new.output.clone(),
        });
    }
    header_changes(old, new, &mut reasons);
    if let Some((o, n)) = both_differ(&old.kernelconfigsha256, &new.kernelconfigsha256, true) {
        reasons.push(ChangeReason::KernelConfig { old: o, new: n });
    }
    if let Some((o, n)) = both_differ(&old.builder, &new.builder, false) {
        reasons.push(ChangeReason::Builder { old: o, new: n });
    }
    if let Some((o, n)) = both_differ(&old.buildkey, &new.buildkey, false) {
        reasons.push(ChangeReason::BuildKey { old: o, new: n });
    }
    reasons
}

/// Both values, when both sides have one and they differ (hex digests compared case-insensitively).
fn both_differ(old: &Option<String>, new: &Option<String>, hex: bool) -> Option<(String, String)> {
    let (o, n) = (old.as_ref()?, new.as_ref()?);
    let same = if hex {
        o.eq_ignore_ascii_case(n)
    } else {
        o == n
    };
    (!same).then(|| (o.clone(), n.clone()))
}

fn header_changes(old: &MatrixEntry, new: &MatrixEntry, reasons: &mut Vec<ChangeReason>) {
    if old.headerpackages == new.headerpackages && old.kernelurls == new.kernelurls {
        return;
    }
    let (a, b) = (packages(old), packages(new));
    let (mut only_old, mut only_new) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    loop {
        let order = match (a.get(i), b.get(j)) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(p), Some(q)) => p.name.cmp(&q.name),
        };
        match order {
            Ordering::Less => {
                only_old.push(&a[i]);
                i += 1;
            }
            Ordering::Greater => {
                only_new.push(&b[j]);
                j += 1;
            }
            Ordering::Equal => {
                content_change(&a[i], &b[j], reasons);
                i += 1;
                j += 1;
            }
        }
    }
    // The same content under another file name (a mirror's spelling) is not a change.
    only_new.retain(|q| {
        let renamed = q.sha256.and_then(|y| {
            only_old
                .iter()
                .position(|p| p.sha256.is_some_and(|x| x.eq_ignore_ascii_case(y)))
        });
        renamed.map(|pos| only_old.remove(pos)).is_none()
    });
    if !only_new.is_empty() || !only_old.is_empty() {
        let names = |v: Vec<&Pkg>| v.iter().map(|p| p.name.to_string()).collect();
        reasons.push(ChangeReason::HeaderPackages {
            added: names(only_new),
            removed: names(only_old),
        });
    }
}

/// Same file name: a change only where both sides know the SHA256 (or, failing that, the size).
fn content_change(p: &Pkg, q: &Pkg, reasons: &mut Vec<ChangeReason>) {
    match (p.sha256, q.sha256) {
        (Some(x), Some(y)) => {
            if !x.eq_ignore_ascii_case(y) {
                reasons.push(ChangeReason::HeaderSha256 {
                    file: p.name.to_string(),
                    old: x.to_string(),
                    new: y.to_string(),
                });
            }
        }
        _ => {
            if let (Some(x), Some(y)) = (p.size, q.size) {
                if x != y {
                    reasons.push(ChangeReason::HeaderSize {
                        file: p.name.to_string(),
                        old: x,
                        new: y,
                    });
                }
            }
        }
    }
}

/// A header package as the diff sees it: its decoded file name and what is known of its content.
struct Pkg<'a> {
    name: Cow<'a, str>,
    sha256: Option<&'a str>,
    size: Option<u64>,
}

/// An entry's header packages (as [`MatrixEntry::header_packages`] gives them), sorted by file name, one per
/// name: the same file listed from two hosts is one package, and the copy that knows its SHA256 counts.
fn packages(e: &MatrixEntry) -> Vec<Pkg<'_>> {
    let mut pkgs: Vec<Pkg> = if e.headerpackages.is_empty() {
        e.kernelurls
            .iter()
            .map(|u| Pkg {
                name: percent_decode(url_file_name(u)),
                sha256: None,
                size: None,
            })
            .collect()
    } else {
        e.headerpackages
            .iter()
            .map(|p| Pkg {
                name: percent_decode(p.file_name()),
                sha256: p.sha256.as_deref(),
                size: p.size,
            })
            .collect()
    };
    pkgs.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(b.sha256.is_some().cmp(&a.sha256.is_some()))
    });
    pkgs.dedup_by(|later, kept| later.name == kept.name);
    pkgs
}

/// The last path segment of a URL, as [`kmf_types::HeaderPackage::file_name`] takes it.
fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// `linux-headers-5.10.0-18-amd64_5.10.140-1%2Bdeb11u1_amd64.deb` and its `+` spelling name one file.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmf_types::{output_version, HeaderPackage};
    use sha2::Digest;

    /// A variant as `generate` writes it, one header package per URL.
    fn entry(distro: &str, arch: Arch, release: &str, urls: &[&str]) -> MatrixEntry {
        MatrixEntry {
            kversion: release.into(),
            distribution: distro.into(),
            architecture: arch,
            kernelurls: urls.iter().map(|u| u.to_string()).collect(),
            output: format!("{}/{distro}/{arch}/{release}", output_version("0.1.1")),
            driverversion: "0.1.1".into(),
            kernelversion: "1".into(),
            target: String::new(),
            flavour: None,
            packageversion: None,
            suite: None,
            headerpackages: Vec::new(),
            kernelconfigsha256: None,
            builder: None,
            buildkey: None,
        }
    }

    /// Debian kernels `6.1.0-<i>` of one suite and arch, each with two header packages.
    fn debian(abis: std::ops::Range<usize>, suite: &str, arch: Arch) -> Vec<MatrixEntry> {
        abis.map(|i| {
            let release = format!("6.1.0-{i}-{}", arch.deb_arch());
            let mut e = entry(
                "debian",
                arch,
                &release,
                &[
                    &format!(
                        "http://a/pool/linux-headers-{release}_6.1.{i}-1_{}.deb",
                        arch.deb_arch()
                    ),
                    &format!("http://a/pool/linux-headers-6.1.0-{i}-common_6.1.{i}-1_all.deb"),
                ],
            );
            e.suite = Some(suite.into());
            e
        })
        .collect()
    }

    fn with_sha(mut e: MatrixEntry) -> MatrixEntry {
        e.headerpackages = e
            .kernelurls
            .iter()
            .map(|u| {
                let mut p = HeaderPackage::from_url(u);
                p.sha256 = Some(hex::encode(sha2::Sha256::digest(p.file_name())));
                p.size = Some(1000 + p.file_name().len() as u64);
                p
            })
            .collect();
        e
    }

    fn moved(mut e: MatrixEntry) -> MatrixEntry {
        let relocate = |u: &str| {
            format!(
                "https://elsewhere.example/mirror/x/{}",
                u.rsplit('/').next().unwrap()
            )
        };
        e.kernelurls = e.kernelurls.iter().rev().map(|u| relocate(u)).collect();
        e.headerpackages = e
            .headerpackages
            .iter()
            .rev()
            .map(|p| HeaderPackage {
                url: relocate(&p.url),
                path: Some("pool/elsewhere".into()),
                ..p.clone()
            })
            .collect();
        e
    }

    fn d(old: &[MatrixEntry], new: &[MatrixEntry]) -> MatrixDiff {
        diff(old, new, &DiffOptions::default())
    }

    #[test]
    fn identical_matrices_have_nothing_to_build() {
        let m = debian(0..5, "bookworm", Arch::X86_64);
        let out = d(&m, &m);
        assert!(out.is_empty());
        assert_eq!(out.unchanged, 5);
        assert!(out.to_build().is_empty());
        assert!(out.warnings().is_empty());
    }

    #[test]
    fn reordered_and_moved_headers_are_no_change() {
        let old: Vec<_> = debian(0..4, "bookworm", Arch::X86_64)
            .into_iter()
            .map(with_sha)
            .collect();
        let new: Vec<_> = old.iter().cloned().map(moved).collect();
        assert_ne!(old, new);
        let out = d(&old, &new);
        assert!(out.is_empty(), "{out:#?}");
        assert_eq!(out.unchanged, 4);

        // Without digests, file names alone decide.
        let old = debian(0..4, "bookworm", Arch::X86_64);
        let new: Vec<_> = old.iter().cloned().map(moved).collect();
        assert!(d(&old, &new).is_empty());

        // The same file from two hosts is one package; `%2B` is `+`.
        let old = vec![entry(
            "ubuntu",
            Arch::X86_64,
            "5.4.0-1-generic",
            &["http://a/p/h_5.4+1_amd64.deb"],
        )];
        let new = vec![entry(
            "ubuntu",
            Arch::X86_64,
            "5.4.0-1-generic",
            &[
                "http://b/q/h_5.4%2B1_amd64.deb",
                "http://c/h_5.4+1_amd64.deb",
            ],
        )];
        assert!(d(&old, &new).is_empty());
    }

    #[test]
    fn a_changed_sha256_is_a_change_only_where_both_sides_know_it() {
        let old: Vec<_> = debian(0..3, "bookworm", Arch::X86_64)
            .into_iter()
            .map(with_sha)
            .collect();
        let mut new: Vec<_> = old.iter().cloned().map(moved).collect();
        new[1].headerpackages[0].sha256 = Some("AB".repeat(32));
        let out = d(&old, &new);
        assert_eq!(out.modified.len(), 1);
        assert_eq!(out.unchanged, 2);
        let m = &out.modified[0];
        assert_eq!(m.new.kversion, old[1].kversion);
        assert!(matches!(
            &m.reasons[..],
            [ChangeReason::HeaderSha256 { file, new, .. }] if file.ends_with("_all.deb") && *new == "AB".repeat(32)
        ));
        assert!(
            m.reasons[0].to_string().contains("sha256"),
            "{}",
            m.reasons[0]
        );
        assert_eq!(out.to_build(), vec![new[1].clone()]);

        // Upper-case hex is the same digest; a side without digests tells nothing.
        let mut upper = old.clone();
        for p in &mut upper[0].headerpackages {
            p.sha256 = p.sha256.as_ref().map(|s| s.to_uppercase());
        }
        assert!(d(&old, &upper).is_empty());
        let bare: Vec<_> = old
            .iter()
            .cloned()
            .map(|mut e| {
                e.headerpackages.clear();
                e
            })
            .collect();
        assert!(d(&old, &bare).is_empty());

        // Without digests on one side, different sizes still tell.
        let mut sized = old.clone();
        for p in &mut sized[2].headerpackages {
            p.sha256 = None;
        }
        let mut resized = sized.clone();
        resized[2].headerpackages[1].size = Some(1);
        let out = d(&sized, &resized);
        assert!(matches!(
            &out.modified[0].reasons[..],
            [ChangeReason::HeaderSize { new: 1, .. }]
        ));
    }

    #[test]
    fn renamed_files_with_the_same_digest_and_new_files() {
        let old = vec![with_sha(entry(
            "fedora",
            Arch::X86_64,
            "6.0.1-300.fc37.x86_64",
            &["http://a/kernel-devel-6.0.1.rpm"],
        ))];
        let mut renamed = old.clone();
        renamed[0].headerpackages[0].url =
            "http://b/Packages/k/kernel-devel-6.0.1-300.fc37.x86_64.rpm".into();
        assert!(d(&old, &renamed).is_empty());

        let mut replaced = old.clone();
        replaced[0].kernelurls = vec![
            "http://a/kernel-devel-6.0.1-2.rpm".into(),
            "http://a/extra.rpm".into(),
        ];
        replaced[0].headerpackages.clear();
        let out = d(&old, &replaced);
        assert_eq!(
            out.modified[0].reasons,
            [ChangeReason::HeaderPackages {
                added: vec!["extra.rpm".into(), "kernel-devel-6.0.1-2.rpm".into()],
                removed: vec!["kernel-devel-6.0.1.rpm".into()],
            }]
        );
        assert_eq!(
            out.modified[0].reasons[0].to_string(),
            "header packages +extra.rpm +kernel-devel-6.0.1-2.rpm -kernel-devel-6.0.1.rpm"
        );
    }

    #[test]
    fn driver_versions() {
        let old = debian(0..3, "bookworm", Arch::Aarch64);
        let mut patch = old.clone();
        for e in &mut patch {
            e.driverversion = "0.1.2".into();
        }
        let out = d(&old, &patch);
        assert_eq!(out.modified.len(), 3);
        for m in &out.modified {
            assert_eq!(
                m.reasons,
                [ChangeReason::DriverVersion {
                    old: "0.1.1".into(),
                    new: "0.1.2".into()
                }]
            );
        }
        assert_eq!(out.to_build(), patch);

        // A minor release moves the store prefix too: the same variants, modified, not removed and added.
        let minor: Vec<_> = old
            .iter()
            .cloned()
            .map(|mut e| {
                e.driverversion = "0.2.0".into();
                e.output = e.output.replacen("0.1.0/", "0.2.0/", 1);
                e
            })
            .collect();
        let out = d(&old, &minor);
        assert_eq!(
            (out.added.len(), out.removed.len(), out.modified.len()),
            (0, 0, 3)
        );
        assert!(matches!(
            &out.modified[0].reasons[..],
            [
                ChangeReason::DriverVersion { .. },
                ChangeReason::Output { .. }
            ]
        ));
    }

    #[test]
    fn kernelversion_counts_only_for_reuploads() {
        let mut once = entry(
            "ubuntu",
            Arch::X86_64,
            "4.15.0-1104-oem",
            &["http://a/h.deb"],
        );
        once.kernelversion = "115".into();
        let mut renumbered = once.clone();
        renumbered.kernelversion = "116".into();
        let out = d(std::slice::from_ref(&once), &[renumbered]);
        assert!(out.is_empty(), "{out:#?}");

        // A release uploaded twice: each upload is its own variant (and store prefix).
        let upload = |kv: &str| {
            let mut e = entry(
                "ubuntu",
                Arch::X86_64,
                "4.15.0-1008-oracle",
                &["http://a/h.deb"],
            );
            e.output = format!("{}_{kv}", e.output);
            e.kernelversion = kv.into();
            e
        };
        let old = vec![upload("9"), upload("10"), once.clone()];
        let new = vec![upload("9"), upload("11"), once.clone()];
        let out = d(&old, &new);
        assert_eq!(out.added, vec![upload("11")]);
        assert_eq!(out.removed, vec![upload("10")]);
        assert_eq!(out.unchanged, 2);

        // A matrix keeping one upload of such a release still names it by its suffix.
        let out = d(&[upload("9")], &[upload("9")]);
        assert_eq!(out.unchanged, 1);
        let out = d(&[upload("9")], &[upload("10")]);
        assert_eq!(
            (out.added.len(), out.removed.len() + out.kept.len()),
            (1, 1)
        );
    }

    #[test]
    fn config_builder_and_buildkey_count_when_both_sides_have_them() {
        let mut old = entry("minikube", Arch::X86_64, "5.10.57", &[]);
        old.kernelconfigsha256 = Some("aa".repeat(32));
        old.builder = Some("debian-bookworm-gcc-12".into());
        old.buildkey = Some("11".repeat(32));
        let fresh = MatrixEntry {
            builder: None,
            buildkey: None,
            kernelconfigsha256: None,
            ..old.clone()
        };
        assert!(d(std::slice::from_ref(&old), std::slice::from_ref(&fresh)).is_empty());
        assert!(d(std::slice::from_ref(&fresh), std::slice::from_ref(&old)).is_empty());

        let new = MatrixEntry {
            kernelconfigsha256: Some("bb".repeat(32)),
            builder: Some("debian-trixie-gcc-14".into()),
            buildkey: Some("22".repeat(32)),
            ..old.clone()
        };
        let out = d(&[old], &[new]);
        let kinds: Vec<String> = out.modified[0]
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            kinds,
            [
                "kernel config sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb",
                "builder debian-bookworm-gcc-12 -> debian-trixie-gcc-14",
                "build key 111111111111 -> 222222222222",
            ]
        );
    }

    #[test]
    fn missing_and_shrunk_groups_are_held() {
        let bookworm = debian(0..10, "bookworm", Arch::X86_64);
        let security = debian(10..14, "bookworm-security", Arch::X86_64);
        let arm = debian(0..6, "bookworm", Arch::Aarch64);
        let old: Vec<_> = [bookworm.clone(), security.clone(), arm.clone()].concat();

        // bookworm-security gone, bookworm/aarch64 down to 2 of 6, bookworm/x86_64 loses one of 10.
        let new: Vec<_> = [bookworm[1..].to_vec(), arm[..2].to_vec()].concat();
        let out = d(&old, &new);
        assert_eq!(out.removed, vec![bookworm[0].clone()]);
        assert_eq!(out.kept.len(), 4 + 4);
        assert_eq!(out.unchanged, 9 + 2);
        assert_eq!(
            out.held,
            [
                HeldGroup {
                    distribution: "debian".into(),
                    suite: "bookworm".into(),
                    architecture: Arch::Aarch64,
                    old: 6,
                    new: 2,
                    kept: 4,
                    reason: HoldReason::Shrunk,
                },
                HeldGroup {
                    distribution: "debian".into(),
                    suite: "bookworm-security".into(),
                    architecture: Arch::X86_64,
                    old: 4,
                    new: 0,
                    kept: 4,
                    reason: HoldReason::Missing,
                },
            ]
        );
        assert_eq!(
            out.warnings(),
            [
                "group debian/bookworm/aarch64 shrank from 6 entries in OLD to 2 in NEW; its 4 entries absent from NEW are kept, not removed",
                "group debian/bookworm-security/x86_64 is missing from NEW (4 entries in OLD); its 4 entries absent from NEW are kept, not removed",
            ]
        );

        // Exactly half is not "fewer than half".
        let out = d(&arm, &arm[..3]);
        assert_eq!((out.removed.len(), out.held.len()), (3, 0));
        // 0 holds only missing groups; 1 holds any shrink.
        let zero = DiffOptions {
            shrink_threshold: 0.0,
        };
        assert_eq!(diff(&arm, &arm[..1], &zero).removed.len(), 5);
        assert_eq!(diff(&arm, &[], &zero).kept.len(), 6);
        let one = DiffOptions {
            shrink_threshold: 1.0,
        };
        assert_eq!(diff(&arm, &arm[..5], &one).kept.len(), 1);

        // A group that shrank because entries moved to another suite keeps nothing and is not reported.
        let moved_suite: Vec<_> = security
            .iter()
            .cloned()
            .map(|mut e| {
                e.suite = Some("bookworm".into());
                e
            })
            .collect();
        let out = d(&security, &moved_suite);
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn output_is_sorted_and_independent_of_input_order() {
        let old: Vec<_> = [
            debian(0..6, "bookworm", Arch::X86_64),
            debian(20..26, "trixie", Arch::Aarch64),
        ]
        .concat();
        let mut new = old[2..].to_vec();
        new.extend(debian(6..9, "bookworm", Arch::X86_64));
        new[3].driverversion = "0.1.9".into();
        let a = serde_json::to_string(&d(&old, &new)).unwrap();
        let (mut old_r, mut new_r) = (old.clone(), new.clone());
        old_r.reverse();
        new_r.rotate_left(5);
        let b = serde_json::to_string(&d(&old_r, &new_r)).unwrap();
        assert_eq!(a, b);

        let out = d(&old, &new);
        let build = out.to_build();
        assert_eq!(build.len(), 4);
        assert!(build.windows(2).all(|w| w[0].output < w[1].output));
        assert_eq!(out.summary().build, 4);
        assert_eq!(out.summary().removed, 2);
        let json: serde_json::Value = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json["modified"][0]["reasons"][0]["reason"],
            "driver_version"
        );
    }

    #[test]
    fn duplicates_are_refused_by_check_unique_and_ignored_by_diff() {
        let mut m = debian(0..3, "bookworm", Arch::X86_64);
        assert!(check_unique(&m).is_ok());
        m.push(m[1].clone());
        let err = check_unique(&m).unwrap_err().to_string();
        assert!(
            err.contains("debian/x86_64/6.1.0-1-amd64") && err.contains("1 and 3"),
            "{err}"
        );
        let out = d(&m, &m[..3]);
        assert!(out.is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Bb%2bc"), "a+b+c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("x%zz%4"), "x%zz%4");
    }
}
