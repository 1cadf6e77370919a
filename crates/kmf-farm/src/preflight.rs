//! `kmodfarm preflight`: build and boot-test drivers against kernels the fleet does not run yet (sid,
//! experimental, the stable releases' backports), before they reach it.
//!
//! Two steps, as `build` has them: [`kernels`] checks every suite's Release up front (a refused one fails
//! the run instead of being skipped), crawls the suites and keeps the newest kernels of each suite,
//! architecture and flavour; [`run`] builds and boot-tests them through the one-machine pipeline
//! ([`crate::run::build`]) into a throwaway store under the report directory ([`throwaway_store`]), never a
//! production one, then writes `preflight.json` beside the usual reports. Each failing kernel is named with
//! the first error line of its log ([`first_error_line`]) and the newest kernel of the same run that still
//! passed ([`newest_passed`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmf_kernels::apt::{compare_versions, CrawlOptions, IndexSet};
use kmf_types::{Arch, FailureClass, MatrixEntry};
use serde::Serialize;

use crate::{Driver, Farm, FarmReporter, Status, VariantResult};

/// The stable releases whose backports preflight looks at by default: those of
/// [`kmf_kernels::sources::DEFAULT_DEBIAN_SUITES`], the suites `build` and `sync` crawl by default.
pub const DEFAULT_RELEASES: &[&str] = &["bookworm", "trixie"];

/// The suites carrying tomorrow's kernels, before the stable releases' backports.
pub const UPCOMING_SUITES: &[&str] = &["sid", "experimental"];

/// `preflight.json`'s `schema`.
pub const PREFLIGHT_SCHEMA: &str = "kmodfarm-preflight/1";

/// The file [`run`] writes into the report directory.
pub const PREFLIGHT_JSON: &str = "preflight.json";

/// The throwaway store's directory under the report directory, and the file marking it as one.
const STORE_DIR: &str = "throwaway-store";
const STORE_MARKER: &str = ".kmodfarm-preflight-store";

/// The default suites: sid, experimental, and `<release>-backports` for each of `releases`.
pub fn default_suites(releases: &[String]) -> Vec<String> {
    UPCOMING_SUITES
        .iter()
        .map(|s| s.to_string())
        .chain(releases.iter().map(|r| format!("{r}-backports")))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{}", .0.join("; "))]
    Releases(Vec<String>),
    #[error("crawling the Debian mirror: {0}")]
    Crawl(#[source] kmf_kernels::KernelsError),
    #[error("no Debian mirror is configured")]
    NoMirror,
    #[error(transparent)]
    Matrix(#[from] kmf_matrix::MatrixError),
    #[error("the suites {suites} have no kernel for the selected architectures and flavours")]
    NoKernels { suites: String },
    #[error(
        "{}: exists and is not a preflight store (no {STORE_MARKER}); choose another --report directory",
        .0.display()
    )]
    NotThrowaway(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Run(Box<crate::run::RunError>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PreflightError + '_ {
    move |source| PreflightError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to preflight.
#[derive(Debug, Clone)]
pub struct PreflightOptions {
    /// Suites, in order of preference (an upload in several is listed under the first).
    pub suites: Vec<String>,
    pub arches: Vec<Arch>,
    /// Kernel flavours (`amd64`, `arm64`, `cloud-amd64`, ...); `None` keeps all.
    pub flavours: Option<Vec<String>>,
    /// Kernels kept per suite, architecture and flavour, newest first.
    pub latest: usize,
    /// Where `preflight.json`, the reports, the logs and the throwaway store go.
    pub report_dir: PathBuf,
    /// Where compressed package indices are kept by SHA256.
    pub index_cache: Option<PathBuf>,
}

/// The store `run` publishes into: `<report_dir>/throwaway-store/`, emptied first. A directory of that
/// name without the marker a previous preflight left is refused, never emptied.
pub fn throwaway_store(report_dir: &Path) -> Result<PathBuf, PreflightError> {
    let dir = std::path::absolute(report_dir.join(STORE_DIR)).map_err(io(report_dir))?;
    if dir.symlink_metadata().is_ok() {
        if !dir.join(STORE_MARKER).is_file() || dir.is_symlink() {
            return Err(PreflightError::NotThrowaway(dir));
        }
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let marker = dir.join(STORE_MARKER);
    std::fs::write(
        &marker,
        "kmodfarm preflight's throwaway store: emptied by every preflight run, never published\n",
    )
    .map_err(io(&marker))?;
    Ok(dir)
}

/// Step one: every suite's Release checked (all refusals reported together), the suites crawled, and for
/// each driver the newest `opts.latest` kernels of each suite, architecture and flavour, as jobs for [`run`].
pub async fn kernels(
    indexes: &IndexSet,
    drivers: &[Arc<Driver>],
    opts: &PreflightOptions,
) -> Result<Vec<(Arc<Driver>, MatrixEntry)>, PreflightError> {
    let mut refused = Vec::new();
    for suite in &opts.suites {
        if let Err(e) = indexes.verify_release(suite).await {
            refused.push(e.to_string());
        }
    }
    if !refused.is_empty() {
        return Err(PreflightError::Releases(refused));
    }
    let crawl = CrawlOptions {
        mirrors: indexes.mirrors().cloned().ok_or(PreflightError::NoMirror)?,
        suites: opts.suites.clone(),
        arches: opts.arches.clone(),
        flavours: opts.flavours.clone(),
        index_cache: opts.index_cache.clone(),
        trust: indexes.trust().clone(),
    };
    let lists = kmf_kernels::apt::crawl_debian_in(indexes, &crawl)
        .await
        .map_err(PreflightError::Crawl)?;
    let mut jobs = Vec::new();
    for driver in drivers {
        let filter = kmf_matrix::MatrixFilter {
            distros: Some(vec!["debian".into()]),
            arches: opts.arches.clone(),
            driver_version: driver.version.clone(),
            kernel_release: None,
        };
        let entries = kmf_matrix::generate(&lists, &filter)?.entries;
        let entries = newest_per_suite(entries, opts.latest, &opts.suites);
        jobs.extend(entries.into_iter().map(|e| (driver.clone(), e)));
    }
    if jobs.is_empty() {
        return Err(PreflightError::NoKernels {
            suites: opts.suites.join(", "),
        });
    }
    Ok(jobs)
}

/// The `n` newest entries of each (suite, architecture, flavour), whatever their kernel series: sid's 7.2
/// and experimental's 7.3 are each their suite's newest. Ordered by `suites`, then architecture, flavour
/// and newest first.
pub fn newest_per_suite(
    entries: Vec<MatrixEntry>,
    n: usize,
    suites: &[String],
) -> Vec<MatrixEntry> {
    let rank = |e: &MatrixEntry| {
        let suite = e.suite.as_deref().unwrap_or_default();
        suites.iter().position(|s| s == suite).unwrap_or(usize::MAX)
    };
    let mut groups: BTreeMap<(usize, Arch, String), Vec<MatrixEntry>> = BTreeMap::new();
    for e in entries {
        let key = (
            rank(&e),
            e.architecture,
            e.flavour.clone().unwrap_or_default(),
        );
        groups.entry(key).or_default().push(e);
    }
    groups
        .into_values()
        .flat_map(|mut group| {
            group.sort_by(|a, b| kernel_order(b, a));
            group.into_iter().take(n)
        })
        .collect()
}

/// Older kernels first: by package version (the upload), then release.
fn kernel_order(a: &MatrixEntry, b: &MatrixEntry) -> Ordering {
    let v = |e: &MatrixEntry| {
        e.packageversion
            .clone()
            .unwrap_or_else(|| e.kversion.clone())
    };
    compare_versions(&v(a), &v(b)).then_with(|| compare_versions(&a.kversion, &b.kversion))
}

/// Step two: build, verify and (when the farm has a boot tester) boot-test every job into the farm's
/// store, which must be a [`throwaway_store`]; then write `results.json`, `junit.xml`, `index.html` and
/// `preflight.json` into `opts.report_dir`.
pub async fn run(
    farm: &Farm,
    jobs: Vec<(Arc<Driver>, MatrixEntry)>,
    opts: &PreflightOptions,
    store: &Path,
    reporter: Arc<dyn FarmReporter>,
) -> Result<(PreflightReport, Vec<VariantResult>), PreflightError> {
    let started = std::time::Instant::now();
    let started_at = crate::farm::now_rfc3339();
    let results = crate::run::build(farm, jobs, reporter)
        .await
        .map_err(|e| PreflightError::Run(Box::new(e)))?;
    kmf_report::write_reports(&opts.report_dir, &results).map_err(io(&opts.report_dir))?;
    let report = PreflightReport {
        schema: PREFLIGHT_SCHEMA,
        started: started_at,
        wall_secs: started.elapsed().as_secs_f64(),
        suites: opts.suites.clone(),
        arches: opts.arches.clone(),
        flavours: opts.flavours.clone(),
        latest: opts.latest,
        boot_test: farm.boot().is_some(),
        store: store.to_path_buf(),
        summary: Summary::of(&results),
        kernels: results.iter().map(|r| verdict(r, &results)).collect(),
    };
    let path = opts.report_dir.join(PREFLIGHT_JSON);
    let tmp = opts.report_dir.join(format!(".{PREFLIGHT_JSON}.kmf-tmp"));
    let json = serde_json::to_string_pretty(&report).expect("the report serializes") + "\n";
    std::fs::write(&tmp, json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok((report, results))
}

/// `preflight.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightReport {
    pub schema: &'static str,
    /// When the builds started (RFC 3339, UTC).
    pub started: String,
    /// Build and boot time of the run, crawl excluded.
    pub wall_secs: f64,
    pub suites: Vec<String>,
    pub arches: Vec<Arch>,
    pub flavours: Option<Vec<String>>,
    pub latest: usize,
    /// Whether `passed` includes a boot test.
    pub boot_test: bool,
    /// The throwaway store the modules went to.
    pub store: PathBuf,
    pub summary: Summary,
    /// One per driver and kernel, in the order of the suites.
    pub kernels: Vec<KernelVerdict>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub kernels: usize,
    pub passed: usize,
    pub failed: usize,
    pub excluded: usize,
}

impl Summary {
    fn of(results: &[VariantResult]) -> Summary {
        let mut s = Summary {
            kernels: results.len(),
            ..Summary::default()
        };
        for r in results {
            match r.status {
                Status::Success | Status::UpToDate => s.passed += 1,
                Status::Failed { .. } => s.failed += 1,
                Status::Excluded { .. } => s.excluded += 1,
            }
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Built, verified and (with the boot test) loaded cleanly into the kernel.
    Passed,
    Failed,
    /// The project's requirements rule the kernel out.
    Excluded,
}

/// One driver on one kernel.
#[derive(Debug, Clone, Serialize)]
pub struct KernelVerdict {
    pub driver: String,
    pub driver_version: String,
    #[serde(flatten)]
    pub kernel: KernelRef,
    pub result: Outcome,
    /// The failure's class (`compile error`, `boot failed`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first error line of the failure's log (see [`first_error_line`]), or its message when no
    /// line is recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Where `first_error` comes from: `build.log`, `boot.log` or `message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error_in: Option<&'static str>,
    /// For a failure: the newest kernel older than this one, of the same driver, architecture and
    /// flavour, that passed in this run (see [`newest_passed`]); `null` when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_passed: Option<Option<KernelRef>>,
    pub builder: Option<String>,
    pub log: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_log: Option<PathBuf>,
}

/// A kernel as preflight names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelRef {
    pub suite: Option<String>,
    pub arch: Arch,
    pub flavour: Option<String>,
    pub kernel_release: String,
    pub package_version: Option<String>,
}

impl KernelRef {
    fn of(e: &MatrixEntry) -> KernelRef {
        KernelRef {
            suite: e.suite.clone(),
            arch: e.architecture,
            flavour: e.flavour.clone(),
            kernel_release: e.kversion.clone(),
            package_version: e.packageversion.clone(),
        }
    }
}

impl std::fmt::Display for KernelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kernel_release)?;
        if let Some(v) = &self.package_version {
            write!(f, " ({v}")?;
            if let Some(s) = &self.suite {
                write!(f, ", {s}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

fn verdict(r: &VariantResult, all: &[VariantResult]) -> KernelVerdict {
    let (result, class, message) = match &r.status {
        Status::Success | Status::UpToDate => (Outcome::Passed, None, None),
        Status::Failed { class, message } => (
            Outcome::Failed,
            Some(class.to_string()),
            Some(message.clone()),
        ),
        Status::Excluded { reason } => (Outcome::Excluded, None, Some(reason.clone())),
    };
    let first = first_error(r);
    KernelVerdict {
        driver: r.driver.clone(),
        driver_version: r.driver_version.clone(),
        kernel: KernelRef::of(&r.entry),
        result,
        class,
        message,
        first_error_in: first.as_ref().map(|(_, from)| *from),
        first_error: first.map(|(line, _)| line),
        newest_passed: (result == Outcome::Failed)
            .then(|| newest_passed(r, all).map(|p| KernelRef::of(&p.entry))),
        builder: r.builder.clone(),
        log: r.log.clone(),
        boot_log: r.boot_log.clone(),
    }
}

/// The newest kernel of `all` that passed and is older than `failed`'s, for the same driver,
/// architecture and flavour: where the driver last worked. Only kernels of this run count (a kernel of
/// a suite not given to preflight was not built here); add a stable suite to `--suite` for a baseline.
pub fn newest_passed<'a>(
    failed: &VariantResult,
    all: &'a [VariantResult],
) -> Option<&'a VariantResult> {
    all.iter()
        .filter(|r| {
            r.is_success()
                && r.driver == failed.driver
                && r.entry.architecture == failed.entry.architecture
                && r.entry.flavour == failed.entry.flavour
                && kernel_order(&r.entry, &failed.entry) == Ordering::Less
        })
        .max_by(|a, b| kernel_order(&a.entry, &b.entry))
}

/// Which log a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// A `build.log`: the build's own lines start with `| `, kmodfarm's with `#`.
    Build,
    /// A `boot.log`: the guest's serial console.
    Boot,
}

/// The longest first error line kept, in characters.
const MAX_LINE: usize = 400;

/// The first line of `log` that says what went wrong: in a build log, a compiler's `error:` or `fatal
/// error:`, modpost's `ERROR:` or make's `***`; in a boot log, a module that failed to load or unload,
/// a failed check script, or a kernel message the boot verdict counts as a problem (unknown symbol,
/// oops, BUG, WARNING, panic, ...). Console timestamps are dropped, control characters escaped.
pub fn first_error_line(log: &str, kind: LogKind) -> Option<String> {
    let line = log.lines().find_map(|line| match kind {
        LogKind::Build => line.strip_prefix("| ").filter(|l| {
            let l = l.trim_start();
            l.contains(": error: ")
                || l.contains(": fatal error: ")
                || l.starts_with("error: ")
                || l.starts_with("fatal error: ")
                || l.starts_with("ERROR: ")
                || (l.starts_with("make") && l.contains(": *** "))
        }),
        LogKind::Boot => {
            let l = line.trim_end_matches('\r');
            let failed_step = ["KMF:LOAD:FAIL:", "KMF:UNLOAD:FAIL:"]
                .iter()
                .any(|m| l.contains(m))
                || l.split_once("KMF:CHECK:")
                    .is_some_and(|(_, rc)| rc.trim() != "0");
            let kernel = !l.contains("KMF:") && !kmf_boot::verdict::kernel_problems(l).is_empty();
            (failed_step || kernel).then_some(l)
        }
    })?;
    let line = strip_timestamp(line.trim());
    // The compiler names files by their path in the sandbox: the project's own path reads better.
    let line = line
        .strip_prefix(SANDBOX_SOURCE_DIR)
        .map(|rest| rest.trim_start_matches("./"))
        .unwrap_or(line);
    let line = kmf_types::names::printable(line);
    Some(match line.char_indices().nth(MAX_LINE) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.into_owned(),
    })
}

/// Where a build sees the project's source tree (see kmf-build's kbuild).
const SANDBOX_SOURCE_DIR: &str = "/build/src/";

/// A console line without its `[    1.234567]` timestamp.
fn strip_timestamp(line: &str) -> &str {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .filter(|(stamp, _)| stamp.trim().chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map_or(line, |(_, rest)| rest.trim_start())
}

/// Boot-test failures: judged from the console, not the build log.
fn is_boot_failure(class: FailureClass) -> bool {
    matches!(
        class,
        FailureClass::BootFailed
            | FailureClass::LoadFailed
            | FailureClass::KernelWarning
            | FailureClass::BootTimeout
            | FailureClass::CheckFailed
    )
}

/// Records a failed variant's first error line from its log ([`VariantResult::first_error`]), when its log
/// has one.
pub(crate) fn note_first_error(r: &mut VariantResult) {
    r.first_error = match first_error(r) {
        Some((line, from)) if from != "message" => Some(line),
        _ => None,
    };
}

/// A failed variant's first error line and the log it is from (`message` when no line is recognised).
pub(crate) fn first_error(r: &VariantResult) -> Option<(String, &'static str)> {
    let Status::Failed { class, message } = &r.status else {
        return None;
    };
    let (path, kind, name) = match is_boot_failure(*class) {
        true => (r.boot_log.as_ref(), LogKind::Boot, "boot.log"),
        false => (r.log.as_ref(), LogKind::Build, "build.log"),
    };
    let from_log = path
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| first_error_line(&String::from_utf8_lossy(&bytes), kind));
    Some(match from_log {
        Some(line) => (line, name),
        None => (kmf_types::names::printable(message).into_owned(), "message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_releases_are_the_default_suites_releases() {
        let releases: Vec<&str> = kmf_kernels::sources::DEFAULT_DEBIAN_SUITES
            .iter()
            .copied()
            .filter(|s| !s.contains('-'))
            .collect();
        assert_eq!(releases, DEFAULT_RELEASES);
        let releases: Vec<String> = DEFAULT_RELEASES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            default_suites(&releases),
            [
                "sid",
                "experimental",
                "bookworm-backports",
                "trixie-backports"
            ]
        );
    }

    const BUILD_LOG: &str = "\
# kmodfarm build: pair for 7.3-amd64 (x86_64), kernel tree /usr/src/linux-headers-7.3-amd64
# kmodfarm: lines from the build start with `| `; lines without it are kmodfarm's
# kmodfarm: an error: in kmodfarm's own lines is not the build's
| make: Entering directory '/usr/src/linux-headers-7.3-amd64'
|   CC [M]  pair_producer.o
| pair_producer.c:12:9: warning: unused variable 'x' [-Wunused-variable]
| pair_producer.c:20:2: error: implicit declaration of function 'del_timer_sync' [-Wimplicit-function-declaration]
| pair_producer.c:30:1: error: second error
| make[2]: *** [scripts/Makefile.build:207: pair_producer.o] Error 1
# step 1 result: Exited(2)
";

    #[test]
    fn build_logs_name_the_compilers_first_error() {
        assert_eq!(
            first_error_line(BUILD_LOG, LogKind::Build).as_deref(),
            Some(
                "pair_producer.c:20:2: error: implicit declaration of function 'del_timer_sync' \
                 [-Wimplicit-function-declaration]"
            )
        );
        let fatal = "| In file included from x.c:1:\n| x.c:3:10: fatal error: linux/genhd.h: No such file or directory\n";
        assert_eq!(
            first_error_line(fatal, LogKind::Build).as_deref(),
            Some("x.c:3:10: fatal error: linux/genhd.h: No such file or directory")
        );
        // No compiler message: modpost's, then make's own.
        let modpost = "|   MODPOST Module.symvers\n| ERROR: modpost: \"pair_answer\" [pair_consumer.ko] undefined!\n\
                       | make[2]: *** [scripts/Makefile.modpost:147: Module.symvers] Error 1\n";
        assert_eq!(
            first_error_line(modpost, LogKind::Build).as_deref(),
            Some("ERROR: modpost: \"pair_answer\" [pair_consumer.ko] undefined!")
        );
        let make = "| make: *** No rule to make target 'modules'.  Stop.\n";
        assert_eq!(
            first_error_line(make, LogKind::Build).as_deref(),
            Some("make: *** No rule to make target 'modules'.  Stop.")
        );
        assert_eq!(
            first_error_line("| all good\n| error-free\n", LogKind::Build),
            None
        );
        assert_eq!(first_error_line("", LogKind::Build), None);
    }

    #[test]
    fn boot_logs_name_the_load_failure_or_kernel_problem() {
        let unknown = "[    0.000000] Linux version 7.3-amd64\r\nKMF:INIT\r\nKMF:LOADING:pair_consumer\r\n\
                       [    1.234567] pair_consumer: Unknown symbol pair_answer (err -2)\r\n\
                       KMF:LOAD:FAIL:pair_consumer:1:insmod: can't insert 'pair_consumer.ko': unknown symbol in module\r\n";
        assert_eq!(
            first_error_line(unknown, LogKind::Boot).as_deref(),
            Some("pair_consumer: Unknown symbol pair_answer (err -2)")
        );
        let insmod = "KMF:INIT\r\nKMF:LOAD:FAIL:hello:1:insmod: can't insert 'hello.ko': Operation not permitted\r\n";
        assert_eq!(
            first_error_line(insmod, LogKind::Boot).as_deref(),
            Some("KMF:LOAD:FAIL:hello:1:insmod: can't insert 'hello.ko': Operation not permitted")
        );
        let check = "KMF:CHECK:0\r\nKMF:DONE\r\n";
        assert_eq!(first_error_line(check, LogKind::Boot), None);
        assert_eq!(
            first_error_line("KMF:CHECK:3\r\n", LogKind::Boot).as_deref(),
            Some("KMF:CHECK:3")
        );
        let oops = "[    2.5] BUG: kernel NULL pointer dereference, address: 0000000000000000\n";
        assert_eq!(
            first_error_line(oops, LogKind::Boot).as_deref(),
            Some("BUG: kernel NULL pointer dereference, address: 0000000000000000")
        );
        // Compiler-looking text on the console is not a build error.
        assert_eq!(
            first_error_line("| x.c:1:1: error: no\n", LogKind::Boot),
            None
        );
    }

    #[test]
    fn lines_are_printable_and_bounded() {
        let hostile = format!("| x.c:1:1: error: \u{1b}[2J{}\n", "a".repeat(1000));
        let line = first_error_line(&hostile, LogKind::Build).unwrap();
        assert!(!line.chars().any(char::is_control), "{line}");
        assert!(line.starts_with("x.c:1:1: error: \\u{1b}[2J"), "{line}");
        assert_eq!(line.chars().count(), MAX_LINE + 1);
    }

    fn entry(suite: &str, arch: Arch, flavour: &str, release: &str, version: &str) -> MatrixEntry {
        MatrixEntry {
            kversion: release.into(),
            distribution: "debian".into(),
            architecture: arch,
            kernelurls: vec![],
            output: format!("0.1.0/debian/{arch}/{release}"),
            driverversion: "0.1.1".into(),
            kernelversion: "1".into(),
            target: "debian".into(),
            flavour: Some(flavour.into()),
            packageversion: Some(version.into()),
            suite: Some(suite.into()),
            headerpackages: vec![],
            kernelconfigsha256: None,
            builder: None,
            buildkey: None,
        }
    }

    fn suites() -> Vec<String> {
        default_suites(&["bookworm".into(), "trixie".into()])
    }

    #[test]
    fn newest_kernel_of_each_suite_arch_and_flavour() {
        use Arch::*;
        let entries = vec![
            entry(
                "trixie-backports",
                X86_64,
                "amd64",
                "7.2.12+deb13-amd64",
                "7.2.12-1~bpo13+1",
            ),
            entry(
                "trixie-backports",
                X86_64,
                "amd64",
                "7.3.4+deb13-amd64",
                "7.3.4-1~bpo13+1",
            ),
            entry(
                "trixie-backports",
                X86_64,
                "amd64",
                "7.2.9+deb13-amd64",
                "7.2.9-1~bpo13+1",
            ),
            entry(
                "experimental",
                Aarch64,
                "arm64",
                "7.3-arm64",
                "7.3~rc7-1~exp1",
            ),
            entry("sid", X86_64, "amd64", "7.2.13+deb14-amd64", "7.2.13-1"),
            entry(
                "sid",
                X86_64,
                "cloud-amd64",
                "7.2.13+deb14-cloud-amd64",
                "7.2.13-1",
            ),
            entry(
                "experimental",
                X86_64,
                "amd64",
                "7.3-amd64",
                "7.3~rc7-1~exp1",
            ),
            entry("sid", Aarch64, "arm64", "7.2.13+deb14-arm64", "7.2.13-1"),
        ];
        let names = |es: &[MatrixEntry]| es.iter().map(|e| e.kversion.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&newest_per_suite(entries.clone(), 1, &suites())),
            [
                "7.2.13+deb14-amd64",
                "7.2.13+deb14-cloud-amd64",
                "7.2.13+deb14-arm64",
                "7.3-amd64",
                "7.3-arm64",
                "7.3.4+deb13-amd64",
            ]
        );
        let two = newest_per_suite(entries, 2, &suites());
        assert_eq!(
            names(&two)[5..],
            ["7.3.4+deb13-amd64", "7.2.12+deb13-amd64"]
        );
    }

    fn result(e: MatrixEntry, status: Status) -> VariantResult {
        VariantResult {
            status,
            ..VariantResult::started("pair", "0.1.1", e)
        }
    }

    #[test]
    fn newest_passed_is_the_newest_older_kernel_that_passed() {
        use Arch::*;
        let failed = |e| {
            result(
                e,
                Status::Failed {
                    class: FailureClass::CompileError,
                    message: "make failed".into(),
                },
            )
        };
        let all = vec![
            failed(entry(
                "experimental",
                X86_64,
                "amd64",
                "7.3-amd64",
                "7.3~rc7-1~exp1",
            )),
            result(
                entry("sid", X86_64, "amd64", "7.2.13+deb14-amd64", "7.2.13-1"),
                Status::Success,
            ),
            result(
                entry(
                    "trixie-backports",
                    X86_64,
                    "amd64",
                    "7.2.12+deb13-amd64",
                    "7.2.12-1~bpo13+1",
                ),
                Status::Success,
            ),
            // Newer than the failure, another architecture, another flavour: never the answer.
            result(
                entry(
                    "trixie-backports",
                    X86_64,
                    "amd64",
                    "7.3.4+deb13-amd64",
                    "7.3.4-1~bpo13+1",
                ),
                Status::Success,
            ),
            result(
                entry("sid", Aarch64, "arm64", "7.2.13+deb14-arm64", "7.2.13-1"),
                Status::Success,
            ),
            result(
                entry(
                    "sid",
                    X86_64,
                    "cloud-amd64",
                    "7.2.13+deb14-cloud-amd64",
                    "7.2.13-1",
                ),
                Status::Success,
            ),
            failed(entry(
                "experimental",
                Aarch64,
                "arm64",
                "7.3-arm64",
                "7.3~rc7-1~exp1",
            )),
            failed(entry(
                "sid",
                X86_64,
                "cloud-amd64",
                "7.2.14+deb14-cloud-amd64",
                "7.2.14-1",
            )),
        ];
        let newest = |i: usize| newest_passed(&all[i], &all).map(|r| r.entry.kversion.as_str());
        assert_eq!(newest(0), Some("7.2.13+deb14-amd64"));
        assert_eq!(newest(6), Some("7.2.13+deb14-arm64"));
        assert_eq!(newest(7), Some("7.2.13+deb14-cloud-amd64"));

        let v = verdict(&all[0], &all);
        assert_eq!(v.result, Outcome::Failed);
        assert_eq!(v.first_error.as_deref(), Some("make failed"));
        assert_eq!(v.first_error_in, Some("message"));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["newest_passed"]["kernel_release"],
            "7.2.13+deb14-amd64"
        );
        assert_eq!(json["newest_passed"]["suite"], "sid");
        assert_eq!(json["kernel_release"], "7.3-amd64");
        assert_eq!(json["class"], "compile error");
        let passed = serde_json::to_value(verdict(&all[1], &all)).unwrap();
        assert_eq!(passed["result"], "passed");
        assert!(passed.get("newest_passed").is_none() && passed.get("first_error").is_none());
        // Nothing older passed: named as such.
        let alone = [all[0].clone()];
        let json = serde_json::to_value(verdict(&alone[0], &alone)).unwrap();
        assert!(json["newest_passed"].is_null() && json.get("newest_passed").is_some());
        assert_eq!(Summary::of(&all).failed, 3);
        assert_eq!(Summary::of(&all).passed, 5);
    }

    #[test]
    fn a_failure_reads_its_own_log() {
        let dir = tempfile::tempdir().unwrap();
        let (build, boot) = (dir.path().join("build.log"), dir.path().join("boot.log"));
        std::fs::write(&build, BUILD_LOG).unwrap();
        std::fs::write(&boot, "KMF:LOAD:FAIL:pair_consumer:1:insmod: no\n").unwrap();
        let mut r = result(
            entry(
                "sid",
                Arch::X86_64,
                "amd64",
                "7.2.13+deb14-amd64",
                "7.2.13-1",
            ),
            Status::Failed {
                class: FailureClass::CompileError,
                message: "make exited 2".into(),
            },
        );
        r.log = Some(build);
        r.boot_log = Some(boot);
        let (line, from) = first_error(&r).unwrap();
        assert_eq!(from, "build.log");
        assert!(line.contains("del_timer_sync"), "{line}");
        r.status = Status::Failed {
            class: FailureClass::LoadFailed,
            message: "pair_consumer did not load".into(),
        };
        assert_eq!(
            first_error(&r).unwrap(),
            (
                "KMF:LOAD:FAIL:pair_consumer:1:insmod: no".to_string(),
                "boot.log"
            )
        );
        r.status = Status::Success;
        assert_eq!(first_error(&r), None);
    }

    #[test]
    fn the_throwaway_store_is_emptied_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = throwaway_store(dir.path()).unwrap();
        assert!(store.is_absolute() && store.ends_with(STORE_DIR));
        std::fs::write(store.join("left-over"), "x").unwrap();
        let again = throwaway_store(dir.path()).unwrap();
        assert_eq!(again, store);
        assert!(!store.join("left-over").exists());
        assert!(store.join(STORE_MARKER).is_file());

        // A directory of that name that preflight did not make is never emptied.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join(STORE_DIR)).unwrap();
        std::fs::write(other.path().join(STORE_DIR).join("module.ko"), "x").unwrap();
        let err = throwaway_store(other.path()).unwrap_err();
        assert!(matches!(err, PreflightError::NotThrowaway(_)), "{err}");
        assert!(other.path().join(STORE_DIR).join("module.ko").is_file());
    }
}
