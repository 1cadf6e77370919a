use crate::util::*;

fn generate(args: &[&str], list: &str) -> (std::process::Output, tempfile::TempDir) {
    generate_from("0.1.1", "list.json", list, args)
}

/// `matrix generate --driver-version VERSION` of the list `content` in a file named `list_name`, into
/// `matrix.json` of the returned directory.
fn generate_from(
    version: &str,
    list_name: &str,
    content: &str,
    args: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let list_path = dir.path().join(list_name);
    std::fs::write(&list_path, content).unwrap();
    let out = run(kmodfarm()
        .args([
            "matrix",
            "generate",
            "--driver-version",
            version,
            "--kernels",
        ])
        .arg(&list_path)
        .arg("--out")
        .arg(dir.path().join("matrix.json"))
        .args(args));
    (out, dir)
}

const GOOD: &str = r#"{"Debian":[{"kernelversion":1,"kernelrelease":"6.1.0-56-amd64","target":"debian","headers":["http://m/pool/main/l/linux/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb"]}]}"#;

#[test]
fn malformed_json_is_a_clear_error() {
    let (out, dir) = generate(&[], "{\"Debian\": [ {\"kernelrelease\": ");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("list.json"), "{err}");
    assert!(!dir.path().join("matrix.json").exists());

    let (out, _dir) = generate(&[], r#"{"Debian":[{"kernelversion":1,"target":"debian"}]}"#);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kernelrelease"));
}

#[test]
fn invalid_regex_and_unknown_distro_are_refused() {
    let (out, dir) = generate(&["--kernel-release", "6.1.(", "--arch", "x86_64"], GOOD);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("regex"));
    assert!(!dir.path().join("matrix.json").exists());

    let (out, _) = generate(&["--distro", "gentoo"], GOOD);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gentoo") && err.contains("debian"), "{err}");

    let (out, _) = generate(&["--arch", "sparc"], GOOD);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_fields_and_distros_parse() {
    let list = r#"{"Futurix":[{"kernelversion":"7","kernelrelease":"9.9.9-futurix.x86_64","target":"futurix","headers":["http://m/k-9.9.9.x86_64.rpm"],"newfield":{"a":[1]}}]}"#;
    let (out, dir) = generate(&[], list);
    assert!(out.status.success());
    let v = read_json(&dir.path().join("matrix.json"));
    assert_eq!(v[0]["distribution"], "futurix");
    assert_eq!(v[0]["output"], "0.1.0/futurix/x86_64/9.9.9-futurix.x86_64");
}

/// What stderr must show instead of U+202E (RIGHT-TO-LEFT OVERRIDE), which would make the rest of the line
/// read backwards on a terminal.
const RLO_SPELLED: &str = "\\u{202e}";

fn assert_spelled_out(stderr: &[u8]) {
    let err = String::from_utf8_lossy(stderr);
    assert!(!err.contains('\u{202e}'), "raw U+202E on stderr: {err:?}");
    assert!(err.contains(RLO_SPELLED), "{err}");
}

/// Issue 22: names and paths from untrusted input reach stderr with bidirectional overrides spelled out,
/// whichever error quotes them: the kernel list's content, its path, a flag's value, a usage error.
#[test]
fn bidi_overrides_in_errors_are_spelled_out() {
    // A distribution name (from the list's content) in a parse error.
    let (out, _dir) = generate(
        &[],
        "{\"Debian\u{202e}nimda\":[{\"kernelversion\":1,\"target\":\"debian\"}]}",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_spelled_out(&out.stderr);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Debian\\u{202e}nimda[0]"));

    // A kernel list whose file name holds one.
    let (out, dir) = generate_from("0.1.1", "kernels\u{202e}nosj.json", "{ not json", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_spelled_out(&out.stderr);
    assert!(!dir.path().join("matrix.json").exists());

    // A flag's value that names no distribution.
    let (out, _dir) = generate(&["--distro", "debian\u{202e}xunil"], GOOD);
    assert_eq!(out.status.code(), Some(2));
    assert_spelled_out(&out.stderr);

    // A driver version that would land in every entry's output: refused, spelled out, nothing written.
    let (out, dir) = generate_from("1.0\u{202e}1", "list.json", GOOD, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_spelled_out(&out.stderr);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--driver-version `1.0\\u{202e}1`"));
    assert!(!dir.path().join("matrix.json").exists());

    // A usage error quoting the argument.
    let out = run(kmodfarm().arg("--colour\u{202e}x"));
    assert_eq!(out.status.code(), Some(2));
    assert_spelled_out(&out.stderr);
}

/// Issue 22: `init --force` over a FIFO (which would block an open for writing), a hard link (whose other
/// name is another file) and a symbolic link finishes at once and replaces the entry, never writing through.
#[test]
fn init_force_replaces_fifos_and_links_without_writing_through() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.conf");
    std::fs::write(&elsewhere, "precious\n").unwrap();
    for shape in ["fifo", "hard link", "symbolic link"] {
        let project = dir.path().join(shape.replace(' ', "-"));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("Makefile"), "obj-m += drv.o\n").unwrap();
        let config = project.join("kmodfarm.toml");
        match shape {
            "fifo" => assert!(std::process::Command::new("mkfifo")
                .arg(&config)
                .status()
                .unwrap()
                .success()),
            "hard link" => std::fs::hard_link(&elsewhere, &config).unwrap(),
            _ => std::os::unix::fs::symlink(&elsewhere, &config).unwrap(),
        }
        let mut child = kmodfarm()
            .arg("init")
            .arg(&project)
            .arg("--force")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("init --force over a {shape} did not finish in 30 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(status.success(), "{shape}: {status}");
        let meta = std::fs::symlink_metadata(&config).unwrap();
        assert!(meta.file_type().is_file(), "{shape}: {meta:?}");
        assert!(std::fs::read_to_string(&config)
            .unwrap()
            .contains("[driver]"));
        assert_eq!(
            std::fs::read_to_string(&elsewhere).unwrap(),
            "precious\n",
            "{shape}: written through"
        );
    }
}
