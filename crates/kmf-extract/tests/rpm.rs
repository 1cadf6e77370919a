//! RPM extraction: packages built by `rpmbuild` with each payload compression, and hand-made hostile
//! ones. The rpmbuild tests skip (with a message) when rpmbuild is missing, unless CI=true.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kmf_extract::{extract_package, extract_rpm, ExtractError, ExtractLimits, PackageTrees};

const MTIME: u64 = 1_700_000_000;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// rpmbuild, or None (the test skips) when it is missing outside CI.
fn rpmbuild() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("rpmbuild"))
            .find(|c| c.is_file())
    });
    if found.is_none() {
        if in_ci() {
            panic!("rpmbuild is needed under CI=true (Debian package `rpm`)");
        }
        eprintln!("skipping: rpmbuild not found (install Debian's `rpm` package)");
    }
    found
}

/// Builds a noarch RPM whose `%install` runs `install` (a shell script using `$RPM_BUILD_ROOT`), with
/// the payload written by `payload` (`w9.gzdio`, `w6.xzdio`, `w19.zstdio`). Returns the .rpm.
fn build_rpm(rpmbuild: &Path, work: &Path, payload: &str, install: &str, files: &str) -> PathBuf {
    let top = work.join(format!("top-{payload}"));
    fs::create_dir_all(&top).unwrap();
    let spec = top.join("test.spec");
    fs::write(
        &spec,
        format!(
            "Name: kmf-test\nVersion: 1.0\nRelease: 1.fc39\nSummary: test\nLicense: MIT\n\
             BuildArch: noarch\nAutoReqProv: no\n%description\ntest\n\
             %install\n{install}\n%files\n{files}\n"
        ),
    )
    .unwrap();
    let out = Command::new(rpmbuild)
        .arg("-bb")
        .args(["--define", &format!("_topdir {}", top.display())])
        .args(["--define", &format!("_binary_payload {payload}")])
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rpmbuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rpm = top.join("RPMS/noarch/kmf-test-1.0-1.fc39.noarch.rpm");
    assert!(rpm.is_file());
    rpm
}

const INSTALL: &str = r#"
set -e
k=$RPM_BUILD_ROOT/usr/src/kernels/6.1.0-1.fc39.x86_64
mkdir -p $k/scripts/basic $k/include/generated $RPM_BUILD_ROOT/lib/modules/6.1.0-1.fc39.x86_64
printf 'obj-m := x.o\n' > $k/Makefile
printf '#!/bin/sh\necho fixdep\n' > $k/scripts/basic/fixdep
chmod 0755 $k/scripts/basic/fixdep
printf '#define UTS_RELEASE "6.1.0-1.fc39.x86_64"\n' > $k/include/generated/utsrelease.h
ln $k/Makefile $k/Makefile.hardlink
ln -s ../Makefile $k/include/Makefile.rel
ln -s /usr/src/kernels/6.1.0-1.fc39.x86_64 $RPM_BUILD_ROOT/lib/modules/6.1.0-1.fc39.x86_64/build
ln -s ../../../../../../../../etc/passwd $k/escape
printf 'x' > $k/setuid
chmod 4755 $k/setuid
find $RPM_BUILD_ROOT -exec touch -h -d @1700000000 {} +
"#;
const FILES: &str = "/usr/src/kernels/6.1.0-1.fc39.x86_64\n/lib/modules/6.1.0-1.fc39.x86_64";

#[test]
fn rpmbuild_packages_extract_with_each_payload_compression() {
    let Some(rpmbuild) = rpmbuild() else { return };
    let work = tempfile::tempdir().unwrap();
    for (payload, compressor) in [
        ("w9.gzdio", "gzip"),
        ("w6.xzdio", "xz"),
        ("w19.zstdio", "zstd"),
    ] {
        let rpm = build_rpm(&rpmbuild, work.path(), payload, INSTALL, FILES);
        let probe = Command::new("rpm")
            .args(["-qp", "--qf", "%{PAYLOADCOMPRESSOR}"])
            .arg(&rpm)
            .output();
        if let Ok(probe) = probe {
            assert_eq!(String::from_utf8_lossy(&probe.stdout), compressor);
        }
        let dest = work.path().join(format!("out-{payload}"));
        let report = extract_rpm(&rpm, &dest).unwrap();
        let k = dest.join("usr/src/kernels/6.1.0-1.fc39.x86_64");
        assert_eq!(fs::read(k.join("Makefile")).unwrap(), b"obj-m := x.o\n");
        let fixdep = fs::metadata(k.join("scripts/basic/fixdep")).unwrap();
        assert_eq!(fixdep.permissions().mode() & 0o7777, 0o755, "{payload}");
        assert_eq!(fixdep.mtime() as u64, MTIME, "{payload}");
        // The hardlink pair shares an inode.
        let a = fs::metadata(k.join("Makefile")).unwrap();
        let b = fs::metadata(k.join("Makefile.hardlink")).unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{payload}");
        assert_eq!(report.hardlinks, 1, "{payload}");
        assert_eq!(
            fs::read_link(k.join("include/Makefile.rel")).unwrap(),
            Path::new("../Makefile")
        );
        assert_eq!(
            fs::read_link(dest.join("lib/modules/6.1.0-1.fc39.x86_64/build")).unwrap(),
            Path::new("/usr/src/kernels/6.1.0-1.fc39.x86_64")
        );
        // The link leading out of the tree is dropped; setuid is stripped.
        assert!(fs::symlink_metadata(k.join("escape")).is_err());
        assert!(report.skipped.iter().any(|(m, _)| m.ends_with("/escape")));
        let setuid = fs::metadata(k.join("setuid")).unwrap();
        assert_eq!(setuid.permissions().mode() & 0o7777, 0o755);

        // Recognised by content through PackageTrees too.
        let trees = PackageTrees::new(work.path().join("trees"));
        let tree = trees.tree(&rpm, &format!("key-{compressor}")).unwrap();
        assert!(tree
            .join("usr/src/kernels/6.1.0-1.fc39.x86_64/include/generated/utsrelease.h")
            .is_file());
    }
}

// ---- hand-made RPMs ----

/// A newc cpio archive, member by member, names written raw.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn member(&mut self, name: &str, mode: u32, nlink: u32, ino: Option<u32>, data: &[u8]) {
        self.ino += 1;
        let ino = ino.unwrap_or(self.ino);
        let name_z = [name.as_bytes(), b"\0"].concat();
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{MTIME:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name_z.len(),
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(&name_z);
        while self.out.len() & 3 != 0 {
            self.out.push(0);
        }
        self.out.extend_from_slice(data);
        while self.out.len() & 3 != 0 {
            self.out.push(0);
        }
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.member(name, 0o100644, 1, None, data);
        self
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.member(name, 0o040755, 2, None, b"");
        self
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.member(name, 0o120777, 1, None, target.as_bytes());
        self
    }
    fn finish(&mut self) -> Vec<u8> {
        self.member("TRAILER!!!", 0, 1, Some(0), b"");
        std::mem::take(&mut self.out)
    }
}

/// A header structure holding STRING tags.
fn header(tags: &[(u32, &str)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut store = Vec::new();
    for (tag, value) in tags {
        index.extend_from_slice(&tag.to_be_bytes());
        index.extend_from_slice(&6u32.to_be_bytes());
        index.extend_from_slice(&(store.len() as u32).to_be_bytes());
        index.extend_from_slice(&1u32.to_be_bytes());
        store.extend_from_slice(value.as_bytes());
        store.push(0);
    }
    let mut out = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
    out.extend_from_slice(&(tags.len() as u32).to_be_bytes());
    out.extend_from_slice(&(store.len() as u32).to_be_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&store);
    out
}

/// An RPM file around `payload` (already compressed as `compressor` says).
fn rpm_file(compressor: &str, payload: &[u8]) -> Vec<u8> {
    let mut lead = vec![0xed, 0xab, 0xee, 0xdb, 3, 0, 0, 0, 0, 1];
    lead.resize(96, 0);
    lead[78..80].copy_from_slice(&5u16.to_be_bytes());
    let mut out = lead;
    let mut sig = header(&[(1000, "x")]);
    while sig.len() & 7 != 0 {
        sig.push(0);
    }
    out.extend_from_slice(&sig);
    out.extend_from_slice(&header(&[
        (1000, "hostile"),
        (1124, "cpio"),
        (1125, compressor),
    ]));
    out.extend_from_slice(payload);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        Place { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn write(&self, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join("p.rpm");
        fs::write(&p, bytes).unwrap();
        p
    }
    fn extract(&self, bytes: &[u8]) -> Result<kmf_extract::ExtractReport, ExtractError> {
        let p = self.write(bytes);
        extract_package(&p, &self.root(), &ExtractLimits::default())
    }
    fn outside_empty(&self) {
        assert_eq!(
            fs::read_dir(self.dir.path().join("outside"))
                .unwrap()
                .count(),
            0
        );
    }
}

#[test]
fn hostile_cpio_members_are_skipped() {
    let p = Place::new();
    let mut c = Cpio::default();
    c.dir("./usr")
        .file("./usr/ok", b"fine")
        .file("../outside/dotdot", b"x")
        .file("/outside/abs", b"x")
        .file("./usr/../../outside/mid", b"x")
        .symlink("./evil", "../outside")
        .symlink("./inner", "usr")
        .file("./inner/through", b"x")
        .symlink("./abs-out", "/../outside")
        .symlink("./usr/up", "../../outside/secret");
    c.member("./dev-null", 0o020666, 1, None, b"");
    c.member("./block", 0o060600, 1, None, b"");
    c.member("./fifo", 0o010644, 1, None, b"");
    c.member("./sock", 0o140644, 1, None, b"");
    c.member("./suid", 0o104755, 1, None, b"s");
    let report = p.extract(&rpm_file("gzip", &gzip(&c.finish()))).unwrap();
    p.outside_empty();
    assert_eq!(fs::read(p.root().join("usr/ok")).unwrap(), b"fine");
    for m in [
        "../outside/dotdot",
        "/outside/abs",
        "./usr/../../outside/mid",
        "./evil",
        "./inner/through",
        "./abs-out",
        "./usr/up",
        "./dev-null",
        "./block",
        "./fifo",
        "./sock",
    ] {
        assert!(
            report.skipped.iter().any(|(s, _)| s == m),
            "{m} not skipped: {:?}",
            report.skipped
        );
    }
    let names: Vec<_> = fs::read_dir(p.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, vec!["inner", "suid", "usr"]);
    assert!(!p.root().join("usr/through").exists());
    let mode = fs::metadata(p.root().join("suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn hardlinks_with_contents_on_the_last_member_as_rpm_writes_them() {
    let p = Place::new();
    let mut c = Cpio::default();
    c.member("./a", 0o100644, 3, Some(77), b"");
    c.member("./b", 0o100644, 3, Some(77), b"");
    c.member("./c", 0o100644, 3, Some(77), b"shared");
    // A set with no contents at all: empty files, linked.
    c.member("./e1", 0o100644, 2, Some(78), b"");
    c.member("./e2", 0o100644, 2, Some(78), b"");
    // A hardlink member cannot point at something outside by name: ino only.
    let report = p.extract(&rpm_file("gzip", &gzip(&c.finish()))).unwrap();
    let ino = |n: &str| fs::metadata(p.root().join(n)).unwrap().ino();
    assert_eq!(ino("a"), ino("c"));
    assert_eq!(ino("b"), ino("c"));
    assert_eq!(fs::read(p.root().join("a")).unwrap(), b"shared");
    assert_eq!(ino("e1"), ino("e2"));
    assert_eq!(fs::read(p.root().join("e2")).unwrap(), b"");
    assert_eq!(report.hardlinks, 3);
}

#[test]
fn damaged_and_unsupported_rpms_are_errors() {
    let p = Place::new();
    let mut c = Cpio::default();
    c.file("./x", b"0123456789");
    let good = c.finish();

    // Cut in the middle of a member.
    let cut = gzip(&good[..good.len() - 130]);
    let err = p.extract(&rpm_file("gzip", &cut)).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
    assert!(!p.root().join("x").exists() || fs::read(p.root().join("x")).unwrap().len() == 10);

    // No trailer.
    let mut c = Cpio::default();
    c.file("./y", b"y");
    let mut no_trailer = c.finish();
    no_trailer.truncate(no_trailer.len() - 124);
    let err = p
        .extract(&rpm_file("gzip", &gzip(&no_trailer)))
        .unwrap_err();
    assert!(err.to_string().contains("trailer"), "{err}");

    // Old binary cpio, stripped large-file cpio.
    let err = p
        .extract(&rpm_file("gzip", &gzip(&[b'\xc7'; 200])))
        .unwrap_err();
    assert!(err.to_string().contains("cpio magic"), "{err}");
    let err = p
        .extract(&rpm_file(
            "gzip",
            &gzip(&[&b"07070X"[..], &[b'0'; 200]].concat()),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("stripped"), "{err}");

    // bzip2 payloads are not read.
    let err = p
        .extract(&rpm_file("bzip2", b"BZh91AY&SY...."))
        .unwrap_err();
    assert!(
        matches!(&err, ExtractError::UnsupportedCompression { member, .. } if member.contains("bzip2")),
        "{err}"
    );

    // A lead and nothing else; a header with an absurd size.
    let mut short = vec![0xed, 0xab, 0xee, 0xdb, 3, 0];
    short.resize(40, 0);
    let err = p.extract(&short).unwrap_err();
    assert!(matches!(err, ExtractError::NotAnRpm { .. }), "{err}");
    let mut huge = rpm_file("gzip", &gzip(&good));
    huge[96 + 12..96 + 16].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = p.extract(&huge).unwrap_err();
    assert!(matches!(err, ExtractError::NotAnRpm { .. }), "{err}");

    // A delta RPM's payload.
    let mut drpm = rpm_file("xz", b"");
    drpm.clear();
    let mut lead = vec![0xed, 0xab, 0xee, 0xdb, 3, 0];
    lead.resize(96, 0);
    drpm.extend_from_slice(&lead);
    let mut sig = header(&[(1000, "x")]);
    while sig.len() & 7 != 0 {
        sig.push(0);
    }
    drpm.extend_from_slice(&sig);
    drpm.extend_from_slice(&header(&[(1124, "drpm")]));
    let err = p.extract(&drpm).unwrap_err();
    assert!(err.to_string().contains("drpm"), "{err}");
}

#[test]
fn payload_bombs_hit_the_limits() {
    let p = Place::new();
    let mut c = Cpio::default();
    c.file("./big", &vec![0u8; 1 << 20]);
    let rpm = p.write(&rpm_file("gzip", &gzip(&c.finish())));
    let limits = ExtractLimits {
        max_bytes: 1 << 16,
        max_entries: 100,
    };
    let err = extract_package(&rpm, &p.root(), &limits).unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");

    let mut c = Cpio::default();
    for i in 0..50 {
        c.file(&format!("./f{i}"), b"");
    }
    let rpm = p.write(&rpm_file("gzip", &gzip(&c.finish())));
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let err = extract_package(&rpm, &p.root(), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "entries",
                ..
            }
        ),
        "{err}"
    );

    // An over-long name is refused before it is read.
    let mut bad = Vec::new();
    bad.extend_from_slice(b"070701");
    for v in [1u32, 0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x7fff_ffff, 0] {
        bad.extend_from_slice(format!("{v:08x}").as_bytes());
    }
    let err = p.extract(&rpm_file("gzip", &gzip(&bad))).unwrap_err();
    assert!(err.to_string().contains("name size"), "{err}");
}
