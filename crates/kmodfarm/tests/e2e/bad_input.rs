use crate::util::*;

fn generate(args: &[&str], list: &str) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let list_path = dir.path().join("list.json");
    std::fs::write(&list_path, list).unwrap();
    let out = run(kmodfarm()
        .args([
            "matrix",
            "generate",
            "--driver-version",
            "0.1.1",
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
