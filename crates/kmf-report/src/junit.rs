//! JUnit XML, the test-report format CI systems read (GitHub Actions report actions, GitLab's test reports,
//! Jenkins' JUnit plugin).
//!
//! Layout:
//!
//! * One `<testsuite>` per driver and driver version (`name="hello 0.1.0"`). A run usually builds one driver
//!   across many distributions; a suite per driver gives one line per driver in GitLab's and Jenkins' suite
//!   lists with its pass/fail counts, while suites per distribution would split one driver's results over
//!   dozens of lines and mix drivers in each. The distribution and architecture are still one click away:
//! * `classname="<driver>.<distribution>.<architecture>"` (`hello.debian.x86_64`). Jenkins splits a
//!   classname at its last dot into package and class, so its tree reads driver.distro → architecture → kernel;
//!   GitLab and the GitHub report actions show the classname beside each test. Dots inside the parts become `_`
//!   so the tree is not split elsewhere.
//! * `name` is the matrix's kernel release (`6.1.0-50-amd64`): stable from run to run, which test histories
//!   (flaky-test and "failing since" views) key on. The release the header tree reported, when different, is in
//!   `<system-out>`.
//! * `time` is the variant's total wall-clock seconds.
//! * A failed variant has `<failure type="<class>" message="<class>: <message>">` (class as in
//!   `results.json`: `compile_error`, `headers_unavailable`, ...) whose text is the message and the last
//!   [`LOG_TAIL_LINES`] lines of the build log. Every failure class is a `<failure>` (no `<error>`), so CI
//!   totals are simply built vs. not built.
//! * A variant found up to date is `<skipped message="up to date: not rebuilt"/>`.
//! * A variant the project's requirements rule out is `<skipped message="excluded: <reason>"/>`.
//!
//! Text is escaped by hand (the format is tiny): markup characters become references, and characters XML 1.0
//! cannot carry at all (most C0 controls, U+FFFE/U+FFFF — common in compiler output and binary junk in logs)
//! are dropped.

use std::fmt::Write;

use kmf_types::FailureClass;

use crate::escape::{strip_ansi, truncate_chars, xml_attr, xml_text};
use crate::logtail::{log_tail, LOG_TAIL_LINES};
use crate::order::{by_driver, other_release, release_name, upload_suffix, Counts};
use crate::{Status, VariantResult};

/// Failure messages in the `message` attribute are cut to this many characters (the whole message is in the
/// element's text).
const MESSAGE_ATTR_CHARS: usize = 500;

/// The JUnit XML document for `results`.
pub fn junit_xml(results: &[VariantResult]) -> String {
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let all = Counts::of(results);
    let total_time: f64 = results.iter().map(|r| secs(r.durations.total_secs)).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"kmodfarm\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">",
        all.total,
        all.failed,
        all.up_to_date + all.excluded,
        fmt_secs(total_time)
    );
    for group in by_driver(results) {
        let counts = Counts::of(group.results.iter().copied());
        let time: f64 = group
            .results
            .iter()
            .map(|r| secs(r.durations.total_secs))
            .sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">",
            xml_attr(&group.title()),
            counts.total,
            counts.failed,
            counts.up_to_date + counts.excluded,
            fmt_secs(time)
        );
        out.push_str("    <properties>\n");
        for (name, value) in [("driver", group.driver), ("driver_version", group.version)] {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                xml_attr(value)
            );
        }
        out.push_str("    </properties>\n");
        let names = testcase_names(&group.results);
        for (r, name) in group.results.iter().zip(names) {
            write_testcase(&mut out, r, &name);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn write_testcase(out: &mut String, r: &VariantResult, name: &str) {
    let _ = writeln!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">",
        xml_attr(name),
        xml_attr(&classname(r)),
        fmt_secs(secs(r.durations.total_secs))
    );
    match &r.status {
        Status::Success => {}
        // Booted now from its published modules: a test that ran and passed.
        Status::UpToDate if r.booted_now() => {}
        Status::UpToDate => {
            out.push_str("      <skipped message=\"up to date: not rebuilt\"/>\n");
        }
        Status::Excluded { reason } => {
            let summary = format!("excluded: {}", strip_ansi(reason));
            let _ = writeln!(
                out,
                "      <skipped message=\"{}\"/>",
                xml_attr(&truncate_chars(&summary, MESSAGE_ATTR_CHARS))
            );
        }
        Status::Failed { class, message } => {
            // The first diagnostic explains a failure better than the step that exited non-zero.
            let summary = match &r.first_error {
                Some(first) => format!("{class}: {}", strip_ansi(first)),
                None => format!("{class}: {}", strip_ansi(message)),
            };
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                xml_attr(&truncate_chars(&summary, MESSAGE_ATTR_CHARS)),
                class_id(*class),
                xml_text(&failure_text(r, message))
            );
        }
    }
    let _ = writeln!(
        out,
        "      <system-out>{}</system-out>",
        xml_text(&system_out(r))
    );
    out.push_str("    </testcase>\n");
}

/// `hello.debian.x86_64`.
fn classname(r: &VariantResult) -> String {
    let part = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c == '.' || c.is_whitespace() {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    format!(
        "{}.{}.{}",
        part(&r.driver),
        part(&r.entry.distribution),
        part(r.entry.architecture.as_str())
    )
}

/// Test names, unique within each classname: a release uploaded more than once gets its upload number,
/// anything still clashing a counter.
fn testcase_names(results: &[&VariantResult]) -> Vec<String> {
    let key = |r: &VariantResult, name: &str| (classname(r), name.to_string());
    let count = |names: &[String]| {
        let mut counts = std::collections::HashMap::new();
        for (r, n) in results.iter().zip(names) {
            *counts.entry(key(r, n)).or_insert(0usize) += 1;
        }
        counts
    };
    let mut names: Vec<String> = results
        .iter()
        .map(|r| release_name(r).to_string())
        .collect();
    let clashes = count(&names);
    for (r, name) in results.iter().zip(names.iter_mut()) {
        if clashes[&key(r, name)] > 1 && !upload_suffix(r).is_empty() {
            *name = format!("{name} (upload {})", r.entry.kernelversion);
        }
    }
    let clashes = count(&names);
    let mut seen = std::collections::HashMap::new();
    for (r, name) in results.iter().zip(names.iter_mut()) {
        if clashes[&key(r, name)] > 1 {
            let n = seen.entry(key(r, name)).or_insert(0usize);
            *n += 1;
            *name = format!("{name} #{n}");
        }
    }
    names
}

/// The failure's text: the message, then the end of the build log.
fn failure_text(r: &VariantResult, message: &str) -> String {
    let mut text = strip_ansi(message);
    if let Some(log) = &r.log {
        match log_tail(log, LOG_TAIL_LINES) {
            Ok(tail) if tail.is_empty() => {
                let _ = write!(text, "\n\nbuild log {} is empty", log.display());
            }
            Ok(tail) => {
                let _ = write!(
                    text,
                    "\n\nlast {} line(s) of {}:\n{tail}",
                    tail.lines().count(),
                    log.display()
                );
            }
            Err(e) => {
                let _ = write!(text, "\n\nbuild log {} not readable: {e}", log.display());
            }
        }
    }
    text
}

/// Where the variant went and what it produced, for the test's standard-output view.
fn system_out(r: &VariantResult) -> String {
    let mut s = format!("variant: {}\nstore prefix: {}", r.label, r.store_prefix);
    if let Some(k) = other_release(r) {
        let _ = write!(s, "\nkernel release (header tree): {k}");
    }
    if let Some(b) = &r.builder {
        let _ = write!(s, "\nbuilder: {b}");
    }
    for m in &r.modules {
        let _ = write!(s, "\nmodule: {} sha256:{}", m.relative_path, m.sha256);
    }
    if let Some(log) = &r.log {
        let _ = write!(s, "\nbuild log: {}", log.display());
    }
    s
}

/// The class as `results.json` spells it (`compile_error`).
pub(crate) fn class_id(class: FailureClass) -> String {
    match serde_json::to_value(class) {
        Ok(serde_json::Value::String(s)) => s,
        _ => class.as_str().replace(' ', "_"),
    }
}

/// Seconds that can be written: not negative, not NaN, not infinite.
fn secs(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

fn fmt_secs(x: f64) -> String {
    format!("{x:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::variant;

    #[test]
    fn counts_and_structure() {
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
                    message: "make exited with status 2".into(),
                },
            ),
            variant(
                "hello",
                "ubuntu",
                "x86_64",
                "5.15.0-100-generic",
                Status::UpToDate,
            ),
            variant(
                "other",
                "debian",
                "x86_64",
                "6.1.0-50-amd64",
                Status::Success,
            ),
        ];
        let xml = junit_xml(&results);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"kmodfarm\" tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"40.000\">"), "{xml}");
        assert!(xml.contains("<testsuite name=\"hello 0.1.0\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"30.000\">"), "{xml}");
        assert!(xml.contains("<testsuite name=\"other 0.1.0\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"10.000\">"), "{xml}");
        assert!(xml.contains("<testcase name=\"6.1.0-50-arm64\" classname=\"hello.debian.aarch64\" time=\"10.000\">\n      <failure message=\"compile error: make exited with status 2\" type=\"compile_error\">make exited with status 2</failure>"), "{xml}");
        assert!(xml.contains("<skipped message=\"up to date: not rebuilt\"/>"));
        assert!(xml.trim_end().ends_with("</testsuites>"));
    }

    #[test]
    fn escapes_messages_and_drops_invalid_characters() {
        let results = vec![variant(
            "hello",
            "debian",
            "x86_64",
            "6.1.0-50-amd64",
            Status::Failed {
                class: FailureClass::Internal,
                message: "bad <tag> & \"quote\"\u{0}\u{1b}[31m red\u{1b}[0m\nsecond line".into(),
            },
        )];
        let xml = junit_xml(&results);
        assert!(xml.contains("message=\"internal error: bad &lt;tag&gt; &amp; &quot;quote&quot; red&#10;second line\" type=\"internal\">bad &lt;tag&gt; &amp; \"quote\" red\nsecond line</failure>"), "{xml}");
        assert!(!xml.chars().any(|c| !crate::escape::is_xml_char(c)));
    }

    #[test]
    fn failure_text_quotes_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let lines: String = (1..=80).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, lines).unwrap();
        let mut r = variant(
            "hello",
            "debian",
            "x86_64",
            "6.1.0-50-amd64",
            Status::Failed {
                class: FailureClass::CompileError,
                message: "make failed".into(),
            },
        );
        r.log = Some(log.clone());
        let text = failure_text(&r, "make failed");
        assert!(text.starts_with(&format!(
            "make failed\n\nlast 50 line(s) of {}:\nline 31\n",
            log.display()
        )));
        assert!(text.ends_with("line 80"));
        r.log = Some(dir.path().join("missing.log"));
        assert!(failure_text(&r, "make failed").contains("not readable"));
    }

    #[test]
    fn duplicate_names_are_made_unique() {
        let mut a = variant(
            "hello",
            "ubuntu",
            "x86_64",
            "5.15.0-100-generic",
            Status::Success,
        );
        let mut b = a.clone();
        a.entry.output = "0.1.0/ubuntu/x86_64/5.15.0-100-generic".into();
        b.entry.output = "0.1.0/ubuntu/x86_64/5.15.0-100-generic_2".into();
        b.entry.kernelversion = "2".into();
        let c = a.clone();
        let names = testcase_names(&[&a, &b, &c]);
        assert_eq!(
            names,
            vec![
                "5.15.0-100-generic #1",
                "5.15.0-100-generic (upload 2)",
                "5.15.0-100-generic #2"
            ]
        );
    }

    #[test]
    fn classnames_keep_three_levels() {
        let r = variant("my.driver", "debian", "x86_64", "6.1", Status::Success);
        assert_eq!(classname(&r), "my_driver.debian.x86_64");
    }

    #[test]
    fn class_ids_match_results_json() {
        assert_eq!(
            class_id(FailureClass::HeadersUnavailable),
            "headers_unavailable"
        );
        assert_eq!(class_id(FailureClass::Internal), "internal");
    }
}
