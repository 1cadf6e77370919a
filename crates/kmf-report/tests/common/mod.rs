//! A report fixture shared by the integration tests: two drivers, every kind of result, build logs on disk,
//! and hostile text where untrusted text can appear.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kmf_report::{Durations, Status, VariantResult};
use kmf_types::FailureClass;

/// A failure message that would retitle the page if it ever ran as a script.
pub const SCRIPT_MESSAGE: &str =
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"> \u{0}\u{7}done";

/// A kernel release that tries to break out of an attribute (it also ends up in a log path).
pub const HOSTILE_RELEASE: &str = "6.1.0-evil\"><img id=injected src=x>";

/// The results and what the fixture's HTML should be titled.
pub struct Fixture {
    pub report_dir: PathBuf,
    pub results: Vec<VariantResult>,
}

pub fn variant(
    driver: &str,
    version: &str,
    distro: &str,
    arch: &str,
    kversion: &str,
    status: Status,
    total_secs: f64,
) -> VariantResult {
    let output = format!("{version}/{distro}/{arch}/{kversion}");
    let entry = serde_json::from_value(serde_json::json!({
        "kversion": kversion,
        "distribution": distro,
        "architecture": arch,
        "kernelurls": [],
        "output": output,
        "driverversion": version,
    }))
    .expect("a valid matrix entry");
    VariantResult {
        driver: driver.into(),
        driver_version: version.into(),
        label: format!("{driver} {distro}/{arch}/{kversion}"),
        entry,
        store_prefix: format!("{driver}/{output}"),
        status,
        kernel_release: Some(kversion.into()),
        builder: Some("debian-bookworm-gcc-12".into()),
        build_key: None,
        modules: vec![],
        log: None,
        boot_log: None,
        input_warnings: vec![],
        first_error: None,
        durations: Durations {
            total_secs,
            ..Durations::default()
        },
    }
}

fn failed(class: FailureClass, message: &str) -> Status {
    Status::Failed {
        class,
        message: message.into(),
    }
}

/// Writes `<report_dir>/logs/<store_prefix>/build.log` for `r` and points `r.log` at it.
fn with_log(report_dir: &Path, mut r: VariantResult, text: &str) -> VariantResult {
    let dir = report_dir.join("logs").join(&r.store_prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("build.log");
    std::fs::write(&path, text).unwrap();
    r.log = Some(path);
    r
}

/// 80 numbered lines of a failing compile, with colour escapes and markup in it.
/// A compiler's first error as long as real ones get (a template instantiation, a macro expansion).
pub fn long_first_error() -> String {
    let mut line = String::from("src/hello.c:12:5: error: implicit declaration of function ");
    while line.chars().count() < 300 {
        line.push_str("'kmf_a_rather_long_helper_name' ");
    }
    line
}

pub trait WithFirstError {
    fn with_first_error(self, line: &str) -> Self;
}

impl WithFirstError for VariantResult {
    fn with_first_error(mut self, line: &str) -> Self {
        self.first_error = Some(line.to_string());
        self
    }
}

pub fn compile_log() -> String {
    let mut s = String::new();
    for i in 1..=78 {
        s.push_str(&format!("make[2]: step {i}\n"));
    }
    s.push_str("\u{1b}[01;31merror:\u{1b}[m expected ';' before '<b>bold</b>' & \u{1}more\n");
    s.push_str("make: *** [Makefile:5: all] Error 2\n");
    s
}

pub fn fixture(report_dir: &Path) -> Fixture {
    let d = report_dir;
    let results = vec![
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "ubuntu",
                "x86_64",
                "5.15.0-100-generic",
                failed(FailureClass::Timeout, "the build ran for more than 600 s"),
                600.2,
            ),
            "building\n",
        ),
        // A failure before any log was written.
        variant(
            "hello",
            "0.1.0",
            "ubuntu",
            "aarch64",
            "5.15.0-100-generic",
            failed(
                FailureClass::HeadersUnavailable,
                "no mirror has linux-headers-5.15.0-100-generic",
            ),
            0.8,
        ),
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "debian",
                "x86_64",
                "6.1.0-50-amd64",
                Status::Success,
                42.5,
            ),
            "ok\n",
        ),
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "debian",
                "aarch64",
                "6.1.0-50-arm64",
                failed(FailureClass::CompileError, SCRIPT_MESSAGE),
                12.0,
            ),
            &compile_log(),
        )
        .with_first_error(&long_first_error()),
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "debian",
                "x86_64",
                "5.10.0-30-amd64",
                Status::UpToDate,
                0.1,
            ),
            "up to date\n",
        ),
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "raspbian",
                "aarch64",
                "6.6.15+rpt-rpi-v8",
                Status::Success,
                65.0,
            ),
            "ok\n",
        ),
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "debian",
                "x86_64",
                "6.1.0-50 spaced #1",
                Status::Success,
                3.0,
            ),
            "ok\n",
        ),
        with_log(
            d,
            variant(
                "hello",
                "0.1.0",
                "debian",
                "aarch64",
                HOSTILE_RELEASE,
                failed(FailureClass::VerificationFailed, "vermagic mismatch"),
                5.0,
            ),
            "verify\n",
        ),
        with_log(
            d,
            variant(
                "other",
                "2.0.0",
                "debian",
                "x86_64",
                "6.1.0-50-amd64",
                Status::Success,
                20.0,
            ),
            "ok\n",
        ),
    ];
    Fixture {
        report_dir: d.to_path_buf(),
        results,
    }
}

/// `%XX` decoded.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}
