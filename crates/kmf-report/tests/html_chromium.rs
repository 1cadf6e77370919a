//! Renders the HTML report in headless Chromium and checks what a browser makes of it: the DOM after
//! loading (text, labels, links, no injected elements, an unchanged title) and a screenshot (the result
//! colours are painted).
//!
//! Needs the `chromium` binary (Debian's `chromium` package; `scripts/setup.sh` installs it). Without it the
//! tests print why and pass, except under `CI=true`, where a missing browser is a failure.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// The browser to use: `$KMF_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`. `None` (after saying
/// why) when there is none and this is not CI.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KMF_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium is not installed (apt-get install chromium); CI=true requires the browser tests");
    }
    eprintln!(
        "skipping: chromium is not installed (apt-get install chromium) and CI is not \"true\""
    );
    None
}

/// Runs Chromium headless on `url` with `args` and a private profile; returns its standard output.
fn run_chromium(browser: &Path, work: &Path, args: &[&str], url: &str) -> String {
    use std::os::unix::process::CommandExt;

    let profile = work.join("profile");
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hung browser and all its helpers can be killed together.
        .process_group(0)
        .spawn()
        .expect("starting chromium");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > CHROMIUM_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium failed ({status}):\n{stderr}");
    eprintln!("chromium {args:?} took {:.2?}", start.elapsed());
    stdout
}

fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// The values of every `attr="..."` in `dom` on elements whose start tag contains `marker`.
fn attr_values(dom: &str, marker: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    dom.split('<')
        .filter(|tag| tag.contains(marker))
        .filter_map(|tag| {
            let start = tag.find(&needle)? + needle.len();
            let end = start + tag[start..].find('"')?;
            Some(tag[start..end].replace("&amp;", "&"))
        })
        .collect()
}

fn title_of(dom: &str) -> &str {
    let start = dom.find("<title>").expect("a title") + "<title>".len();
    let end = start + dom[start..].find("</title>").expect("a closed title");
    &dom[start..end]
}

#[test]
fn chromium_renders_the_report_as_text_with_working_links() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fx = common::fixture(&dir.path().join("report"));
    let files = kmf_report::write_reports(&fx.report_dir, &fx.results).unwrap();

    let dom = run_chromium(
        &browser,
        dir.path(),
        &["--dump-dom"],
        &file_url(&files.html),
    );
    assert!(
        dom.contains("<table class=\"grid\">"),
        "not the report:\n{dom}"
    );

    // Nothing injected ran or became an element; the title is what the report set.
    assert_eq!(title_of(&dom), "kmodfarm report: hello 0.1.0, other 2.0.0");
    assert!(!dom.contains("<script"), "a script element was created");
    assert!(!dom.contains("<img"), "an img element was created");
    assert!(!dom.contains("id=\"injected\""));
    assert!(dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"));

    // Releases, labels and counts, as text.
    for release in [
        "6.1.0-50-amd64",
        "6.1.0-50-arm64",
        "5.10.0-30-amd64",
        "5.15.0-100-generic",
        "6.6.15+rpt-rpi-v8",
        "6.1.0-50 spaced #1",
        "6.1.0-evil\"&gt;&lt;img id=injected src=x&gt;",
    ] {
        assert!(dom.contains(release), "{release} not shown");
    }
    for label in [
        "ok",
        "up to date",
        "compile error",
        "timeout",
        "headers unavailable",
        "verification failed",
    ] {
        assert!(
            dom.contains(&format!("<span class=\"label\">{label}</span>")),
            "label {label} not shown"
        );
    }
    assert!(dom.contains("<span class=\"pill ok\">4 ok</span>"));
    assert!(dom.contains("<span class=\"pill failed\">4 failed</span>"));
    assert!(dom.contains("<span class=\"pill up-to-date\">1 up to date</span>"));
    // The one kernel raspbian has is aarch64 only, and other has no aarch64 column at all.
    assert!(dom.matches("<td class=\"cell empty\">none</td>").count() >= 3);

    // Build-log links: relative, percent-encoded, and each one leads to its log.
    let hrefs = attr_values(&dom, "class=\"log\"", "href");
    assert!(hrefs
        .contains(&"logs/hello/0.1.0/raspbian/aarch64/6.6.15%2Brpt-rpi-v8/build.log".to_string()));
    assert!(hrefs.contains(
        &"logs/hello/0.1.0/debian/x86_64/6.1.0-50%20spaced%20%231/build.log".to_string()
    ));
    let with_logs = fx.results.iter().filter(|r| r.log.is_some()).count();
    let failed_with_logs = fx
        .results
        .iter()
        .filter(|r| r.log.is_some() && !r.is_success())
        .count();
    // One link per cell, one more per failure's details.
    assert_eq!(hrefs.len(), with_logs + failed_with_logs, "{hrefs:#?}");
    for href in &hrefs {
        assert!(
            href.starts_with("logs/"),
            "{href} is not relative to the report"
        );
        let decoded = common::percent_decode(href);
        let target = fx
            .report_dir
            .join(std::str::from_utf8(&decoded).expect("UTF-8 path"));
        assert!(
            target.is_file(),
            "{href} does not lead to a log ({})",
            target.display()
        );
    }

    // The first error is in its cell beside the log link: cut for the cell, whole in its title.
    let first = common::long_first_error();
    let titles = attr_values(&dom, "class=\"first-error\"", "title");
    assert_eq!(titles.len(), 1, "{titles:#?}");
    assert!(titles[0].starts_with("src/hello.c:12:5: error:") && titles[0].chars().count() >= 300);
    assert!(dom.contains(&format!(
        "{}…</span>",
        &first[..first.char_indices().nth(160).unwrap().0]
    )));

    // The failure details quote the log's end as text.
    assert!(dom.contains("error: expected ';' before '&lt;b&gt;bold&lt;/b&gt;' &amp; more"));
}

/// A minimal PNG decoder (8-bit RGB or RGBA, not interlaced: what Chromium writes), returning RGB pixels.
fn decode_png(data: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut pos = 8;
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &data[pos + 4..pos + 8];
        let body = &data[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                assert_eq!(body[8], 8, "bit depth");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other}"),
                };
                assert_eq!(body[12], 0, "interlaced");
            }
            b"IDAT" => idat.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1));
    let mut img = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= channels {
                img[y * stride + x - channels]
            } else {
                0
            };
            let b = if y > 0 { img[(y - 1) * stride + x] } else { 0 };
            let c = if x >= channels && y > 0 {
                img[(y - 1) * stride + x - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((a as u16 + b as u16) / 2) as u8,
                4 => {
                    let p = a as i16 + b as i16 - c as i16;
                    let (pa, pb, pc) = (
                        (p - a as i16).abs(),
                        (p - b as i16).abs(),
                        (p - c as i16).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("filter {other}"),
            };
            img[y * stride + x] = line[x].wrapping_add(predicted);
        }
    }
    let pixels = img.chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    (width, height, pixels)
}

#[test]
fn chromium_paints_the_result_colours() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fx = common::fixture(&dir.path().join("report"));
    let files = kmf_report::write_reports(&fx.report_dir, &fx.results).unwrap();
    let shot = dir.path().join("report.png");
    run_chromium(
        &browser,
        dir.path(),
        &[
            "--window-size=1400,2400",
            &format!("--screenshot={}", shot.display()),
        ],
        &file_url(&files.html),
    );
    let (w, h, pixels) = decode_png(&std::fs::read(&shot).expect("a screenshot"));
    assert_eq!((w, h), (1400, 2400));
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| **p == rgb).count();
    // Cell backgrounds from the stylesheet: each must cover a good area.
    for (what, rgb) in [
        ("ok green", [0xac, 0xee, 0xbb]),
        ("up-to-date grey", [0xe1, 0xe4, 0xe8]),
        ("compile-error red", [0xff, 0x81, 0x82]),
        ("timeout orange", [0xff, 0xb7, 0x7c]),
    ] {
        let n = count(rgb);
        assert!(n > 500, "{what} covers only {n} pixels");
    }
    // And the page is not all one colour.
    let white = count([0xff, 0xff, 0xff]);
    assert!(white < pixels.len() * 99 / 100);
}
