//! Reports: what happened to each variant, in the forms people and CI systems read.
//!
//! [`VariantResult`] is one variant's outcome (the element of `results.json`); what the store keeps beside a
//! variant's modules is [`kmf_types::published::PublishedVariant`], from which [`provenance`] derives
//! `SHA256SUMS` and the provenance statement. [`write_reports`] writes a run's report directory:
//!
//! * `results.json` — every result, as JSON ([`results_json`]);
//! * `junit.xml` — JUnit XML for CI test-report views ([`junit_xml`]);
//! * `index.html` — one self-contained page with a grid per driver ([`html_report`]).

mod escape;
mod html;
mod junit;
mod links;
mod logtail;
mod order;
pub mod provenance;
mod results;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use html::html_report;
pub use junit::junit_xml;
/// Defined with the published record they are part of; re-exported so that results and reports keep
/// naming them from here.
pub use kmf_types::published::{BootRecord, Durations, InputPackage, Inputs, Toolchain};
pub use logtail::LOG_TAIL_LINES;
pub use results::{Status, VariantResult, RESULTS_SCHEMA};

/// File names inside the report directory.
pub const RESULTS_JSON: &str = "results.json";
pub const JUNIT_XML: &str = "junit.xml";
pub const INDEX_HTML: &str = "index.html";

/// The files [`write_reports`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub results_json: PathBuf,
    pub junit_xml: PathBuf,
    pub html: PathBuf,
}

/// `results.json`'s content: the results as pretty-printed JSON with a trailing newline.
pub fn results_json(results: &[VariantResult]) -> serde_json::Result<String> {
    Ok(serde_json::to_string_pretty(results)? + "\n")
}

/// Writes `results.json`, `junit.xml` and `index.html` into `report_dir` (created if missing). Each file is
/// written to a temporary file in the same directory, flushed and renamed over the old one, so a reader never
/// sees a half-written report.
pub fn write_reports(
    report_dir: &Path,
    results: &[VariantResult],
) -> Result<ReportFiles, std::io::Error> {
    std::fs::create_dir_all(report_dir)?;
    let files = ReportFiles {
        results_json: report_dir.join(RESULTS_JSON),
        junit_xml: report_dir.join(JUNIT_XML),
        html: report_dir.join(INDEX_HTML),
    };
    let json = results_json(results).map_err(std::io::Error::other)?;
    write_atomic(&files.results_json, json.as_bytes())?;
    write_atomic(&files.junit_xml, junit_xml(results).as_bytes())?;
    write_atomic(&files.html, html_report(results, report_dir).as_bytes())?;
    Ok(files)
}

/// Writes `contents` to `path` by way of a temporary file beside it and a rename.
fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod test_support {
    use crate::{Durations, Status, VariantResult};

    /// A result of `driver` 0.1.0 that took 10 s.
    pub fn variant(
        driver: &str,
        distro: &str,
        arch: &str,
        kversion: &str,
        status: Status,
    ) -> VariantResult {
        let output = format!("0.1.0/{distro}/{arch}/{kversion}");
        let entry = serde_json::from_value(serde_json::json!({
            "kversion": kversion,
            "distribution": distro,
            "architecture": arch,
            "kernelurls": [],
            "output": output,
            "driverversion": "0.1.0",
        }))
        .expect("a valid matrix entry");
        VariantResult {
            driver: driver.into(),
            driver_version: "0.1.0".into(),
            label: format!("{driver} {distro}/{arch}/{kversion}"),
            entry,
            store_prefix: format!("{driver}/{output}"),
            status,
            kernel_release: None,
            builder: None,
            build_key: None,
            modules: vec![],
            log: None,
            boot_log: None,
            input_warnings: vec![],
            first_error: None,
            durations: Durations {
                total_secs: 10.0,
                ..Durations::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::variant;
    use super::*;
    use kmf_types::FailureClass;

    #[test]
    fn writes_all_three_files_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let report_dir = dir.path().join("report");
        let results = vec![
            variant(
                "hello",
                "debian",
                "x86_64",
                "6.1.0-50-amd64",
                Status::Success,
            ),
            variant(
                "hello",
                "debian",
                "aarch64",
                "6.1.0-50-arm64",
                Status::Failed {
                    class: FailureClass::CompileError,
                    message: "boom".into(),
                },
            ),
        ];
        let files = write_reports(&report_dir, &results).unwrap();
        assert_eq!(files.results_json, report_dir.join("results.json"));
        assert_eq!(files.junit_xml, report_dir.join("junit.xml"));
        assert_eq!(files.html, report_dir.join("index.html"));
        let json = std::fs::read_to_string(&files.results_json).unwrap();
        assert_eq!(json, serde_json::to_string_pretty(&results).unwrap() + "\n");
        assert!(std::fs::read_to_string(&files.junit_xml)
            .unwrap()
            .contains("failures=\"1\""));
        assert!(std::fs::read_to_string(&files.html)
            .unwrap()
            .starts_with("<!DOCTYPE html>"));
        // Writing again replaces the files and leaves no temporary files behind.
        write_reports(&report_dir, &results[..1]).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&report_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["index.html", "junit.xml", "results.json"]);
        assert!(std::fs::read_to_string(&files.junit_xml)
            .unwrap()
            .contains("failures=\"0\""));
    }

    #[test]
    fn up_to_date_serialises_and_counts_as_success() {
        let r = variant(
            "hello",
            "debian",
            "x86_64",
            "6.1.0-50-amd64",
            Status::UpToDate,
        );
        assert!(r.is_success());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["result"], "up_to_date");
        let f = variant(
            "hello",
            "debian",
            "x86_64",
            "6.1.0-50-amd64",
            Status::Failed {
                class: FailureClass::Timeout,
                message: "slow".into(),
            },
        );
        assert!(!f.is_success());
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["result"], "failed");
        assert_eq!(v["class"], "timeout");
    }

    #[test]
    fn write_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        assert!(write_reports(&file, &[]).is_err());
    }
}
