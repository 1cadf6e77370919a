//! Real ELF objects made with the host's gcc and the aarch64 cross compiler, laid out like kernel modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use kmf_types::Arch;
use kmf_verify::{read_module, verify_expected, verify_module, VerifyError};

const RELEASE: &str = "6.1.0-56-amd64";

/// C source with one `.modinfo` string per entry, as the kernel's MODULE_INFO macros lay them out.
fn module_source(entries: &[&str]) -> String {
    let mut src = String::from("int kmf_init(void) { return 0; }\n");
    for (i, e) in entries.iter().enumerate() {
        src.push_str(&format!(
            "static const char kmf_info{i}[] __attribute__((section(\".modinfo\"), used, aligned(1))) = \"{e}\";\n"
        ));
    }
    src
}

/// Compiles `src` with `cc -c` into `dir/name`. `None` (with a message) when the compiler is missing,
/// except under `CI=true`.
fn compile(cc: &str, dir: &Path, name: &str, src: &str, extra: &[&str]) -> Option<PathBuf> {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let result = Command::new(cc)
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .output();
    match result {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => panic!("{cc} failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{cc} is required when CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {cc} is not usable here: {e}");
            None
        }
    }
}

fn standard_entries() -> Vec<&'static str> {
    vec![
        "license=GPL",
        "version=1.2.3",
        "description=hello world",
        "alias=pci:v00001234d*",
        "alias=pci:v00005678d*",
        "srcversion=0123456789ABCDEF012345",
        "depends=libcrc32c,nf_conntrack",
        "retpoline=Y",
        "name=hello",
        "vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions ",
    ]
}

#[test]
fn reads_every_modinfo_field_of_a_real_object() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "hello.ko",
        &module_source(&standard_entries()),
        &["-c"],
    ) else {
        return;
    };
    let info = read_module(&ko).unwrap();
    assert_eq!(info.name, "hello");
    assert_eq!(
        info.vermagic,
        "6.1.0-56-amd64 SMP preempt mod_unload modversions "
    );
    assert_eq!(info.depends, vec!["libcrc32c", "nf_conntrack"]);
    assert_eq!(info.license.as_deref(), Some("GPL"));
    assert_eq!(info.version.as_deref(), Some("1.2.3"));
    assert_eq!(info.srcversion.as_deref(), Some("0123456789ABCDEF012345"));
    assert_eq!(info.signer, None);
    assert_eq!(info.elf_machine, 62);
    assert_eq!(info.fields.len(), 10);
    assert_eq!(
        info.fields.iter().filter(|(k, _)| k == "alias").count(),
        2,
        "repeated keys are all kept"
    );
    assert_eq!(info.fields[0], ("license".to_string(), "GPL".to_string()));

    let ok = verify_module(&ko, Arch::X86_64, RELEASE).unwrap();
    assert_eq!(ok, info);

    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["name"], "hello");
    assert_eq!(json["elf_machine"], 62);
    assert_eq!(json["depends"][1], "nf_conntrack");
    assert_eq!(json["fields"][0][0], "license");
    assert!(json["signer"].is_null());
}

#[test]
fn the_release_must_match_up_to_the_space() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "hello.ko",
        &module_source(&standard_entries()),
        &["-c"],
    ) else {
        return;
    };
    for wrong in [
        "6.1.0-5",
        "6.1.0-56-amd6",
        "6.1.0-56-amd64 SMP",
        "6.1.0-57-amd64",
        "",
    ] {
        match verify_module(&ko, Arch::X86_64, wrong) {
            Err(VerifyError::VermagicMismatch {
                expected_release,
                vermagic,
                ..
            }) => {
                assert_eq!(expected_release, wrong);
                assert!(vermagic.starts_with("6.1.0-56-amd64 "));
            }
            other => panic!("release `{wrong}` accepted or wrongly refused: {other:?}"),
        }
    }
    let err = verify_module(&ko, Arch::X86_64, "6.1.0-5")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`6.1.0-5 `") && err.contains("6.1.0-56-amd64 SMP"),
        "{err}"
    );
}

#[test]
fn the_machine_must_be_the_target_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        "name=hello",
        "vermagic=6.1.0-56-arm64 SMP preempt mod_unload modversions aarch64",
    ];
    let Some(ko) = compile(
        "aarch64-linux-gnu-gcc",
        dir.path(),
        "hello.ko",
        &module_source(&entries),
        &["-c"],
    ) else {
        return;
    };
    let info = verify_module(&ko, Arch::Aarch64, "6.1.0-56-arm64").unwrap();
    assert_eq!(info.elf_machine, 183);
    match verify_module(&ko, Arch::X86_64, "6.1.0-56-arm64") {
        Err(VerifyError::WrongMachine {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (62, 183)),
        other => panic!("{other:?}"),
    }
    let err = verify_module(&ko, Arch::X86_64, "6.1.0-56-arm64")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("183 (aarch64)") && err.contains("62 (x86_64)"),
        "{err}"
    );
}

#[test]
fn only_relocatable_objects_are_modules() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = module_source(&standard_entries());
    src.push_str("int main(void) { return kmf_init(); }\n");
    let Some(exe) = compile("gcc", dir.path(), "hello.ko", &src, &[]) else {
        return;
    };
    // read_module still reads it; verification refuses it.
    assert_eq!(read_module(&exe).unwrap().name, "hello");
    let err = verify_module(&exe, Arch::X86_64, RELEASE).unwrap_err();
    assert!(matches!(err, VerifyError::NotRelocatable { .. }), "{err}");
    assert!(err.to_string().contains("ET_REL"), "{err}");
}

#[test]
fn objects_without_modinfo_or_vermagic_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(plain) = compile("gcc", dir.path(), "plain.ko", &module_source(&[]), &["-c"]) else {
        return;
    };
    assert!(matches!(
        read_module(&plain),
        Err(VerifyError::NoModinfo { .. })
    ));
    assert!(matches!(
        verify_module(&plain, Arch::X86_64, RELEASE),
        Err(VerifyError::NoModinfo { .. })
    ));
    let Some(no_vermagic) = compile(
        "gcc",
        dir.path(),
        "nv.ko",
        &module_source(&["license=GPL"]),
        &["-c"],
    ) else {
        return;
    };
    let err = verify_module(&no_vermagic, Arch::X86_64, RELEASE).unwrap_err();
    assert!(matches!(err, VerifyError::NoVermagic { .. }), "{err}");
}

#[test]
fn the_name_falls_back_to_the_file_stem() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        "vermagic=6.1.0-56-amd64 SMP mod_unload modversions ",
        "depends=",
    ];
    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "my-driver.ko",
        &module_source(&entries),
        &["-c"],
    ) else {
        return;
    };
    let info = verify_module(&ko, Arch::X86_64, RELEASE).unwrap();
    assert_eq!(info.name, "my_driver");
    assert!(info.depends.is_empty());
    assert_eq!(info.license, None);
}

#[test]
fn non_elf_and_damaged_files_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("readme.ko");
    std::fs::write(&text, "not an object\n").unwrap();
    let err = read_module(&text).unwrap_err();
    assert!(matches!(err, VerifyError::NotElf { .. }), "{err}");
    assert!(
        err.to_string().contains("readme.ko is not an ELF file"),
        "{err}"
    );
    let empty = dir.path().join("empty.ko");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        read_module(&empty),
        Err(VerifyError::NotElf { .. })
    ));
    let missing = dir.path().join("missing.ko");
    assert!(matches!(read_module(&missing), Err(VerifyError::Io { .. })));
    let err = read_module(dir.path()).unwrap_err();
    assert!(matches!(err, VerifyError::NotAFile { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is a directory, not a regular file"),
        "{err}"
    );
    // A fifo would block a plain read forever.
    let fifo = dir.path().join("fifo.ko");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert!(matches!(
        read_module(&fifo),
        Err(VerifyError::NotAFile { .. })
    ));
    // A sparse file claiming to be huge is refused without reading it.
    let huge = dir.path().join("huge.ko");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(kmf_verify::MAX_MODULE_BYTES + 1)
        .unwrap();
    assert!(matches!(
        read_module(&huge),
        Err(VerifyError::TooLarge { .. })
    ));

    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "hello.ko",
        &module_source(&standard_entries()),
        &["-c"],
    ) else {
        return;
    };
    let good = std::fs::read(&ko).unwrap();
    let truncated = dir.path().join("truncated.ko");
    std::fs::write(&truncated, &good[..100]).unwrap();
    assert!(read_module(&truncated).is_err());
    // Every byte of the header and section table damaged in turn: an answer each time, no panic.
    let damaged = dir.path().join("damaged.ko");
    let shoff = u64::from_le_bytes(good[0x28..0x30].try_into().unwrap()) as usize;
    let offsets = (0..64).chain(shoff..good.len().min(shoff + 64 * 20));
    for at in offsets {
        for value in [0x00, 0xff, 0x7f] {
            let mut bad = good.clone();
            bad[at] = value;
            std::fs::write(&damaged, &bad).unwrap();
            let _ = read_module(&damaged);
            let _ = verify_module(&damaged, Arch::X86_64, RELEASE);
        }
    }
}

#[test]
fn a_symlink_planted_by_the_build_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "real.ko",
        &module_source(&standard_entries()),
        &["-c"],
    ) else {
        return;
    };
    let link = dir.path().join("hello.ko");
    std::os::unix::fs::symlink(&ko, &link).unwrap();
    let err = verify_module(&link, Arch::X86_64, RELEASE).unwrap_err();
    assert!(matches!(err, VerifyError::NotAFile { .. }), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // Nor does it count as an expected module being there.
    assert!(matches!(
        verify_expected(dir.path(), &["hello.ko".into()]),
        Err(VerifyError::Missing { .. })
    ));
}

#[test]
fn a_real_pkcs7_signature_names_its_signer() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "hello.ko",
        &module_source(&standard_entries()),
        &["-c"],
    ) else {
        return;
    };
    let d = dir.path();
    let openssl = |args: &[&str]| Command::new("openssl").args(args).current_dir(d).output();
    let key = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/O=kmodfarm tests/CN=kmodfarm test signing key",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
    ]);
    match key {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("openssl req failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("openssl is required when CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipped: openssl is not usable here: {e}");
            return;
        }
    }
    // As the kernel's sign-file does: detached CMS, DER, no certificates, no signed attributes.
    let sig = openssl(&[
        "cms",
        "-sign",
        "-binary",
        "-noattr",
        "-nocerts",
        "-md",
        "sha256",
        "-outform",
        "DER",
        "-in",
        "hello.ko",
        "-signer",
        "cert.pem",
        "-inkey",
        "key.pem",
        "-out",
        "signed.p7s",
    ])
    .unwrap();
    assert!(
        sig.status.success(),
        "{}",
        String::from_utf8_lossy(&sig.stderr)
    );
    let p7 = std::fs::read(d.join("signed.p7s")).unwrap();
    let mut data = std::fs::read(&ko).unwrap();
    data.extend_from_slice(&p7);
    let len = u32::try_from(p7.len()).unwrap().to_be_bytes();
    data.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, len[0], len[1], len[2], len[3]]);
    data.extend_from_slice(b"~Module signature appended~\n");
    std::fs::write(&ko, data).unwrap();

    let info = verify_module(&ko, Arch::X86_64, RELEASE).unwrap();
    assert_eq!(info.signer.as_deref(), Some("kmodfarm test signing key"));
    assert_eq!(info.name, "hello");
}

#[test]
fn expected_modules_are_all_there_or_listed_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.ko"), "x").unwrap();
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/b.ko"), "x").unwrap();
    std::fs::create_dir(d.join("dir.ko")).unwrap();

    let found = verify_expected(d, &["sub/b.ko".into(), "a.ko".into()]).unwrap();
    assert_eq!(found, vec![d.join("sub/b.ko"), d.join("a.ko")]);
    assert!(verify_expected(d, &[]).unwrap().is_empty());

    match verify_expected(
        d,
        &[
            "a.ko".into(),
            "c.ko".into(),
            "dir.ko".into(),
            "sub/x.ko".into(),
        ],
    ) {
        Err(VerifyError::Missing { dir, names }) => {
            assert_eq!(dir, d);
            assert_eq!(names, vec!["c.ko", "dir.ko", "sub/x.ko"]);
        }
        other => panic!("{other:?}"),
    }
    let err = verify_expected(d, &["c.ko".into(), "e.ko".into()])
        .unwrap_err()
        .to_string();
    assert!(err.ends_with(": c.ko, e.ko"), "{err}");
    for bad in ["../a.ko", "/etc/passwd", "", "sub/../../a.ko"] {
        assert!(
            matches!(
                verify_expected(d, &[bad.to_string()]),
                Err(VerifyError::BadName { .. })
            ),
            "{bad}"
        );
    }
}

/// A valid module of another name under a module's file name (what a tampered bundle tried): refused, as
/// modprobe would load it under the file's name and the kernel register it under its own.
#[test]
fn a_module_is_verified_under_its_own_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        "name=pair_producer",
        "vermagic=6.1.0-56-amd64 SMP preempt mod_unload modversions ",
    ];
    let Some(ko) = compile(
        "gcc",
        dir.path(),
        "hello.ko",
        &module_source(&entries),
        &["-c"],
    ) else {
        return;
    };
    match verify_module(&ko, Arch::X86_64, RELEASE) {
        Err(e @ VerifyError::NameMismatch { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("`pair_producer`") && text.contains("not `hello`"),
                "{text}"
            );
        }
        other => panic!("a module named pair_producer passed as hello.ko: {other:?}"),
    }
    // Under its own name (with `-` for `_`, as kmod reads file names) it is the same module, accepted.
    let renamed = dir.path().join("pair-producer.ko");
    std::fs::rename(&ko, &renamed).unwrap();
    let info = verify_module(&renamed, Arch::X86_64, RELEASE).unwrap();
    assert_eq!(info.name, "pair_producer");
    assert_eq!(
        kmf_verify::module_name_of_file(std::path::Path::new("/x/a-b.ko.zst")),
        "a_b"
    );
}
