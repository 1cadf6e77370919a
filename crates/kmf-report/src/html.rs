//! The HTML report: one self-contained page (inline CSS, no scripts, no external resources) with a grid per
//! driver.
//!
//! * Rows are distribution / kernel release, sorted by distribution, then release in natural order
//!   (`5.4` < `5.10`). A release that differs between architectures only by the architecture's name
//!   (`6.1.0-50-amd64` / `6.1.0-50-arm64`, `….el9.x86_64` / `….el9.aarch64`) is one row; each cell shows the
//!   exact release.
//! * Columns are the architectures present (x86_64, then aarch64).
//! * A cell says its result in words (`ok`, `up to date`, the failure class) and in colour: green for built,
//!   grey for up to date, a different red/orange shade per failure class (see the legend on the page). It
//!   shows the duration and links to the build log by a path relative to the report's directory,
//!   percent-encoded per segment, so the report directory can be moved or served as a whole.
//! * Cells with no variant are hatched and say "none".
//! * Below each grid, every failure with its full message and the last lines of its build log (in a
//!   `<details>` element, which opens without scripts).
//!
//! Every piece of text from the results (releases, messages, log lines) is escaped, and a
//! Content-Security-Policy that allows no scripts at all backs that up.

use std::fmt::Write;
use std::path::Path;

use kmf_types::Arch;

use crate::escape::{html, strip_ansi, truncate_chars};
use crate::links::relative_href;
use crate::logtail::{log_tail, LOG_TAIL_LINES};
use crate::order::{
    arch_neutral, by_driver, other_release, release_name, row_key, upload_suffix, Counts,
    DriverGroup,
};
use crate::{Status, VariantResult};

/// A failure's first error line in its cell: enough for `file.c:12:9: error: …`; the whole line is the
/// title.
const FIRST_ERROR_CELL_CHARS: usize = 160;

const CSS: &str = "\
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:1.5rem 2rem;color:#1f2328;background:#fff}
h1{font-size:1.45rem;margin:0 0 .4rem}
h2{font-size:1.2rem;margin:2rem 0 .3rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
code,pre,.release,.kernel{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace}
.summary{margin:.3rem 0}
.pill{display:inline-block;border-radius:1rem;padding:.05rem .6rem;margin-right:.3rem;border:1px solid #0002;font-weight:600}
.legend{list-style:none;padding:0;margin:.6rem 0;display:flex;flex-wrap:wrap;gap:.4rem}
.legend li{border:1px solid #0002;border-radius:.25rem;padding:.1rem .5rem}
table.grid{border-collapse:collapse;margin:.4rem 0 1rem}
.grid th,.grid td{border:1px solid #d0d7de;padding:.3rem .5rem;vertical-align:top;text-align:left}
.grid thead th{background:#f6f8fa}
.grid th.distro{font-weight:600;background:#f6f8fa}
.grid th.kernel{font-weight:normal;white-space:nowrap}
.grid td.cell{min-width:12rem;padding:0}
.v{padding:.3rem .5rem}
.v+.v{border-top:1px dashed #0005}
.v .label{font-weight:700}
.v .release{display:block;font-size:.85em;word-break:break-all}
.v .meta{display:block;font-size:.85em}
a{color:#0a3069}
.ok{background:#aceebb}
.up-to-date{background:#e1e4e8}
.excluded{background:#c8ccd1;color:#24292f}
.unproven{color:#9a6700;font-weight:600}
.first-error{display:block;font-family:monospace;font-size:11px;color:#8b1a1a;overflow-wrap:anywhere;white-space:normal;max-width:42em}
.failed{background:#ff9a9a}
.f-compile-error{background:#ff8182}
.f-verification-failed{background:#ffa8c5}
.f-timeout{background:#ffb77c}
.f-headers-unavailable{background:#ffd0b5}
.f-download-failed{background:#ffc9a3}
.f-extract-failed{background:#f0b4a8}
.f-toolchain-unavailable{background:#e8b3d9}
.f-internal-error{background:#d99a9a}
.f-unsafe-output{background:#c297e0}
.f-resource-limit{background:#ffc2e0}
.f-out-of-memory{background:#f5a3a3}
td.empty{background:repeating-linear-gradient(45deg,#fff 0 6px,#eef0f2 6px 12px);color:#57606a;text-align:center;vertical-align:middle;font-style:italic}
.failure{border:1px solid #d0d7de;border-left-width:.4rem;border-radius:.25rem;padding:.4rem .7rem;margin:.6rem 0}
.failure h4{margin:0 0 .3rem;font-size:1rem;font-weight:600}
.badge{display:inline-block;border-radius:.25rem;padding:0 .4rem;border:1px solid #0002}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:.25rem;padding:.5rem;overflow:auto;white-space:pre-wrap;word-break:break-word;margin:.3rem 0}
footer{margin-top:2rem;color:#57606a;font-size:.85em}
";

/// What the legend says each failure class means.
const CLASS_HELP: &[(&str, &str)] = &[
    ("headers unavailable", "no mirror has the header packages"),
    ("download failed", "network or checksum errors"),
    ("extract failed", "a header package could not be unpacked"),
    (
        "toolchain unavailable",
        "no builder for the kernel's compiler",
    ),
    (
        "compile error",
        "make failed (or a DKMS patch, PRE_BUILD or POST_BUILD)",
    ),
    (
        "config error",
        "dkms.conf could not be evaluated, or set a value kmodfarm refuses",
    ),
    ("timeout", "the build ran out of time"),
    (
        "verification failed",
        "a module is missing or does not match the kernel",
    ),
    (
        "unsafe output",
        "the build left a symlink or special file where kmodfarm reads its output",
    ),
    (
        "resource limit",
        "the build went past a disk, module size, module count or log limit",
    ),
    ("out of memory", "the build reached its memory limit"),
    ("internal error", "a problem of kmodfarm or this machine"),
];

/// The HTML report for `results`, to be written to `<report_dir>/index.html`: build-log links are relative to
/// `report_dir`. Logs named by relative paths are read relative to the current directory (for failures'
/// log tails).
pub fn html_report(results: &[VariantResult], report_dir: &Path) -> String {
    let groups = by_driver(results);
    let names = groups
        .iter()
        .map(DriverGroup::title)
        .collect::<Vec<_>>()
        .join(", ");
    let title = if names.is_empty() {
        "kmodfarm report: no variants".to_string()
    } else {
        format!("kmodfarm report: {names}")
    };
    let counts = Counts::of(results);

    let mut out = String::with_capacity(16 * 1024 + results.len() * 512);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>", html(&title));
    let _ = writeln!(out, "<style>\n{CSS}</style>\n</head>\n<body>");
    let _ = writeln!(out, "<h1>{}</h1>", html(&title));
    summary(&mut out, &counts, "summary");
    legend(&mut out, &counts);

    // Ids of failure details, by position in `results`.
    let index_of = |r: &VariantResult| results.iter().position(|x| std::ptr::eq(x, r));
    for group in &groups {
        let _ = writeln!(
            out,
            "<section class=\"driver\">\n<h2>{}</h2>",
            html(&group.title())
        );
        summary(
            &mut out,
            &Counts::of(group.results.iter().copied()),
            "summary driver-summary",
        );
        grid(&mut out, group, report_dir, &index_of);
        failures(&mut out, group, report_dir, &index_of);
        out.push_str("</section>\n");
    }
    let _ = writeln!(
        out,
        "<footer>kmodfarm {}</footer>\n</body>\n</html>",
        html(env!("CARGO_PKG_VERSION"))
    );
    out
}

fn summary(out: &mut String, c: &Counts, class: &str) {
    let _ = write!(
        out,
        "<p class=\"{class}\"><span class=\"pill ok\">{} ok</span> <span class=\"pill failed\">{} failed</span> ",
        c.ok, c.failed
    );
    if c.up_to_date > 0 {
        let _ = write!(
            out,
            "<span class=\"pill up-to-date\">{} up to date</span> ",
            c.up_to_date
        );
    }
    if c.excluded > 0 {
        let _ = write!(
            out,
            "<span class=\"pill excluded\">{} excluded</span> ",
            c.excluded
        );
    }
    let _ = write!(
        out,
        "<span class=\"total\">of {} variant{}</span>",
        c.total,
        if c.total == 1 { "" } else { "s" }
    );
    if !c.by_class.is_empty() {
        let parts: Vec<String> = c
            .by_class
            .iter()
            .map(|(class, n)| format!("{n} {class}"))
            .collect();
        let _ = write!(
            out,
            " <span class=\"by-class\">(failed: {})</span>",
            html(&parts.join(", "))
        );
    }
    out.push_str("</p>\n");
}

fn legend(out: &mut String, c: &Counts) {
    out.push_str("<ul class=\"legend\" aria-label=\"legend\">\n");
    out.push_str("<li class=\"ok\">✓ ok: built and verified</li>\n");
    if c.up_to_date > 0 {
        out.push_str(
            "<li class=\"up-to-date\">= up to date: already in the store, not rebuilt</li>\n",
        );
    }
    if c.excluded > 0 {
        out.push_str(
            "<li class=\"excluded\">– excluded: the driver's requirements (dkms.conf BUILD_EXCLUSIVE_*, \
             kmodfarm.toml [build]) rule the kernel out; not built, not a failure</li>\n",
        );
    }
    for class in c.by_class.keys() {
        let help = CLASS_HELP
            .iter()
            .find(|(name, _)| *name == class.as_str())
            .map(|(_, help)| *help)
            .unwrap_or("not built");
        let _ = writeln!(
            out,
            "<li class=\"failed f-{}\">✗ {}: {}</li>",
            slug(class.as_str()),
            html(class.as_str()),
            html(help)
        );
    }
    out.push_str("</ul>\n");
}

/// CSS classes, visible label and a symbol for a variant's status.
fn status_style(r: &VariantResult) -> (String, String, &'static str) {
    match &r.status {
        Status::Success => ("ok".into(), "ok".into(), "✓"),
        Status::UpToDate if r.booted_now() => {
            ("up-to-date".into(), "up to date, booted".into(), "=")
        }
        Status::UpToDate => ("up-to-date".into(), "up to date".into(), "="),
        Status::Excluded { .. } => ("excluded".into(), "excluded".into(), "–"),
        Status::Failed { class, .. } => (
            format!("failed f-{}", slug(class.as_str())),
            class.as_str().to_string(),
            "✗",
        ),
    }
}

/// `compile error` → `compile-error`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

struct Row<'a> {
    key: (String, String, String),
    /// One list per column.
    cells: Vec<Vec<&'a VariantResult>>,
}

fn grid(
    out: &mut String,
    group: &DriverGroup<'_>,
    report_dir: &Path,
    index_of: &dyn Fn(&VariantResult) -> Option<usize>,
) {
    let arches: Vec<Arch> = Arch::ALL
        .into_iter()
        .filter(|a| group.results.iter().any(|r| r.entry.architecture == *a))
        .collect();
    // Results are sorted, so rows come out in order; a row is found again by its key.
    let mut rows: Vec<Row<'_>> = Vec::new();
    for &r in &group.results {
        let key = row_key(r);
        let i = match rows.iter().position(|row| row.key == key) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    key,
                    cells: vec![Vec::new(); arches.len()],
                });
                rows.len() - 1
            }
        };
        let col = arches
            .iter()
            .position(|a| *a == r.entry.architecture)
            .expect("the column exists");
        rows[i].cells[col].push(r);
    }

    out.push_str("<table class=\"grid\">\n<thead><tr><th scope=\"col\">distribution</th><th scope=\"col\">kernel release</th>");
    for a in &arches {
        let _ = write!(out, "<th scope=\"col\">{}</th>", html(a.as_str()));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let mut k = 0;
    while k < rows.len() {
        let distro = &rows[k].key.0;
        let span = rows[k..]
            .iter()
            .take_while(|row| &row.key.0 == distro)
            .count();
        for (j, row) in rows[k..k + span].iter().enumerate() {
            out.push_str("<tr>");
            if j == 0 {
                let _ = write!(
                    out,
                    "<th scope=\"rowgroup\" class=\"distro\" rowspan=\"{span}\">{}</th>",
                    html(distro)
                );
            }
            let _ = write!(
                out,
                "<th scope=\"row\" class=\"kernel\">{}</th>",
                html(&row_title(row))
            );
            for cell in &row.cells {
                cell_html(out, cell, report_dir, index_of);
            }
            out.push_str("</tr>\n");
        }
        k += span;
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The kernel column: the release when the row has one, else the release with `‹arch›` for the
/// architecture; ` (upload N)` for re-uploads.
fn row_title(row: &Row<'_>) -> String {
    let all: Vec<&VariantResult> = row.cells.iter().flatten().copied().collect();
    let first = all[0];
    let mut title = if all.iter().all(|r| r.entry.kversion == first.entry.kversion) {
        first.entry.kversion.clone()
    } else {
        arch_neutral(&first.entry.kversion)
    };
    if !upload_suffix(first).is_empty() {
        let _ = write!(title, " (upload {})", first.entry.kernelversion);
    }
    title
}

fn cell_html(
    out: &mut String,
    cell: &[&VariantResult],
    report_dir: &Path,
    index_of: &dyn Fn(&VariantResult) -> Option<usize>,
) {
    match cell {
        [] => {
            out.push_str("<td class=\"cell empty\">none</td>");
            return;
        }
        [only] => {
            let (class, _, _) = status_style(only);
            let _ = write!(out, "<td class=\"cell {class}\">");
        }
        _ => out.push_str("<td class=\"cell\">"),
    }
    for &r in cell {
        let (class, label, symbol) = status_style(r);
        let tip = match &r.status {
            Status::Failed { class, message } => {
                format!("{class}: {}", strip_ansi(message))
            }
            Status::Excluded { reason } => format!("excluded: {}", strip_ansi(reason)),
            _ => label.clone(),
        };
        let _ = write!(
            out,
            "<div class=\"v {class}\" title=\"{}\"><span aria-hidden=\"true\">{symbol}</span> <span class=\"label\">{}</span>",
            html(&tip),
            html(&label)
        );
        let _ = write!(out, "<span class=\"release\">{}", html(release_name(r)));
        if let Some(k) = other_release(r) {
            let _ = write!(out, " (uname -r: {})", html(k));
        }
        out.push_str("</span><span class=\"meta\">");
        if !r.input_warnings.is_empty() {
            // Built from inputs nothing proved, or from an expired index the operator accepted.
            let _ = write!(
                out,
                "<span class=\"unproven\" title=\"{}\">⚠ unproven inputs</span> · ",
                html(&r.input_warnings.join("\n"))
            );
        }
        out.push_str(&html(&duration(r.durations.total_secs)));
        if let Some(log) = &r.log {
            let _ = write!(
                out,
                " · <a class=\"log\" href=\"{}\">build log</a>",
                html(&relative_href(log, report_dir))
            );
        }
        if let Some(first) = &r.first_error {
            // Why it failed, in the build's words, beside the log: cut for the cell, whole in its title.
            let _ = write!(
                out,
                "<span class=\"first-error\" title=\"{}\">{}</span>",
                html(first),
                html(&truncate_chars(first, FIRST_ERROR_CELL_CHARS))
            );
        }
        if let Some(log) = &r.boot_log {
            let _ = write!(
                out,
                " · <a class=\"log\" href=\"{}\">boot log</a>",
                html(&relative_href(log, report_dir))
            );
        }
        if let (Status::Failed { .. }, Some(i)) = (&r.status, index_of(r)) {
            let _ = write!(out, " · <a href=\"#v{i}\">details</a>");
        }
        out.push_str("</span></div>");
    }
    out.push_str("</td>");
}

fn failures(
    out: &mut String,
    group: &DriverGroup<'_>,
    report_dir: &Path,
    index_of: &dyn Fn(&VariantResult) -> Option<usize>,
) {
    let failed: Vec<&VariantResult> = group
        .results
        .iter()
        .copied()
        .filter(|r| matches!(r.status, Status::Failed { .. }))
        .collect();
    if failed.is_empty() {
        return;
    }
    out.push_str("<h3>Failures</h3>\n");
    for r in failed {
        let Status::Failed { message, .. } = &r.status else {
            continue;
        };
        let (css, label, _) = status_style(r);
        let id = index_of(r)
            .map(|i| format!(" id=\"v{i}\""))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<div class=\"failure\"{id}>\n<h4><span class=\"badge {css}\">{}</span> {} / {} / {}</h4>",
            html(&label),
            html(&r.entry.distribution),
            html(r.entry.architecture.as_str()),
            html(release_name(r))
        );
        let _ = writeln!(
            out,
            "<pre class=\"message\">{}</pre>",
            html(&strip_ansi(message))
        );
        if let Some(log) = &r.log {
            if let Ok(tail) = log_tail(log, LOG_TAIL_LINES) {
                if !tail.is_empty() {
                    let _ = writeln!(
                        out,
                        "<details><summary>last {} line(s) of the build log</summary><pre class=\"log-tail\">{}</pre></details>",
                        tail.lines().count(),
                        html(&tail)
                    );
                }
            }
            let _ = writeln!(
                out,
                "<p><a class=\"log\" href=\"{}\">full build log</a></p>",
                html(&relative_href(log, report_dir))
            );
        }
        out.push_str("</div>\n");
    }
}

/// `0.4 s`, `12 s`, `3 min 05 s`, `1 h 02 min`.
fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".to_string();
    }
    if secs < 10.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::variant;
    use kmf_types::FailureClass;

    fn failed(class: FailureClass, message: &str) -> Status {
        Status::Failed {
            class,
            message: message.into(),
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(12.4), "12 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3725.0), "1 h 02 min");
        assert_eq!(duration(f64::NAN), "–");
    }

    #[test]
    fn grid_rows_columns_and_empty_cells() {
        let results = vec![
            variant(
                "hello",
                "ubuntu",
                "x86_64",
                "5.15.0-100-generic",
                Status::Success,
            ),
            variant(
                "hello",
                "debian",
                "aarch64",
                "6.1.0-50-arm64",
                failed(FailureClass::Timeout, "too slow"),
            ),
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
                "x86_64",
                "5.10.0-30-amd64",
                Status::UpToDate,
            ),
        ];
        let page = html_report(&results, Path::new("/r"));
        // Columns in architecture order, rows by distro then natural release order.
        assert!(page.contains("<th scope=\"col\">x86_64</th><th scope=\"col\">aarch64</th>"));
        let pos = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(pos(">5.10.0-30-amd64</th>") < pos(">6.1.0-50-‹arch›</th>"));
        assert!(pos(">6.1.0-50-‹arch›</th>") < pos(">5.15.0-100-generic</th>"));
        assert!(page.contains("rowspan=\"2\">debian</th>"));
        // 5.10 has no aarch64 build, ubuntu has none either.
        assert_eq!(
            page.matches("<td class=\"cell empty\">none</td>").count(),
            2
        );
        assert!(page.contains("<td class=\"cell failed f-timeout\">"));
        assert!(page.contains("<span class=\"label\">timeout</span>"));
        assert!(page.contains("<span class=\"label\">up to date</span>"));
        assert!(page.contains("<span class=\"pill ok\">2 ok</span> <span class=\"pill failed\">1 failed</span> <span class=\"pill up-to-date\">1 up to date</span> <span class=\"total\">of 4 variants</span> <span class=\"by-class\">(failed: 1 timeout)</span>"));
    }

    #[test]
    fn untrusted_text_is_escaped() {
        let mut r = variant(
            "hello",
            "debian",
            "x86_64",
            "6.1.0-50-amd64\"><img src=x onerror=alert(1)>",
            failed(
                FailureClass::CompileError,
                "<script>document.title='pwned'</script>",
            ),
        );
        r.log = Some("/r/logs/a b+c/build.log".into());
        let page = html_report(&[r], Path::new("/r"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));
        assert!(page.contains("6.1.0-50-amd64&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("href=\"logs/a%20b%2Bc/build.log\""));
    }

    #[test]
    fn links_are_relative_to_the_report_dir() {
        let mut r = variant(
            "hello",
            "raspbian",
            "aarch64",
            "6.6.15+rpt-rpi-v8",
            Status::Success,
        );
        r.log = Some(
            "/srv/report/logs/hello/0.1.0/raspbian/aarch64/6.6.15+rpt-rpi-v8/build.log".into(),
        );
        let page = html_report(&[r], Path::new("/srv/report"));
        assert!(page.contains(
            "<a class=\"log\" href=\"logs/hello/0.1.0/raspbian/aarch64/6.6.15%2Brpt-rpi-v8/build.log\">build log</a>"
        ));
    }

    #[test]
    fn no_results_is_a_valid_page() {
        let page = html_report(&[], Path::new("/r"));
        assert!(page.contains("<title>kmodfarm report: no variants</title>"));
        assert!(page.contains("0 ok"));
        assert!(page.trim_end().ends_with("</html>"));
    }
}
