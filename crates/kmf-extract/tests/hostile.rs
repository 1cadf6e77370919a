//! Extraction of hostile archives: nothing may land outside the destination.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kmf_extract::{
    extract_deb, extract_deb_with_limits, extract_package, extract_tar, extract_tar_with_limits,
    ExtractError, ExtractLimits, PackageTrees,
};
use support::{deb, Compression, HostileTar, MTIME};
use tar::EntryType;

/// A temp dir with `root/` (the destination), `outside/` and `pkgs/` beside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::create_dir(dir.path().join("pkgs")).unwrap();
        fs::write(dir.path().join("outside/secret"), b"secret").unwrap();
        Sandbox { dir }
    }
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }
    fn outside(&self) -> std::path::PathBuf {
        self.dir.path().join("outside")
    }
    /// Where a test keeps its packages and scratch output.
    fn pkg(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("pkgs").join(name)
    }
    /// Everything under `outside/` other than the planted secret.
    fn outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["secret".to_string()]);
        assert_eq!(fs::read(self.outside().join("secret")).unwrap(), b"secret");
        let top: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(top.len(), 3, "something appeared beside root/: {top:?}");
    }
}

fn skipped_reason<'a>(report: &'a kmf_extract::ExtractReport, member: &str) -> &'a str {
    report
        .skipped
        .iter()
        .find(|(m, _)| m == member)
        .map(|(_, r)| r.as_str())
        .unwrap_or_else(|| panic!("{member} not skipped: {:?}", report.skipped))
}

#[test]
fn parent_dir_components_cannot_escape() {
    let sb = Sandbox::new();
    let mut t = HostileTar::new();
    t.file("../escape", b"x")
        .file("./a/../../escape2", b"x")
        .file("a/b/../../../outside/planted", b"x")
        .file("./ok", b"fine");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    assert!(skipped_reason(&report, "../escape").contains(".."));
    skipped_reason(&report, "./a/../../escape2");
    skipped_reason(&report, "a/b/../../../outside/planted");
    assert_eq!(fs::read(sb.root().join("ok")).unwrap(), b"fine");
    assert_eq!(report.files, 1);
    sb.outside_untouched();
}

#[test]
fn absolute_member_paths_are_refused() {
    let sb = Sandbox::new();
    // Aimed at a harmless place of ours, so that a broken extractor shows instead of doing damage.
    let abs = format!("{}/planted", sb.outside().display());
    let mut t = HostileTar::new();
    t.file(&abs, b"x").file("/etc-passwd-lookalike", b"x");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    assert!(skipped_reason(&report, &abs).contains("absolute"));
    skipped_reason(&report, "/etc-passwd-lookalike");
    assert_eq!(fs::read_dir(sb.root()).unwrap().count(), 0);
    sb.outside_untouched();
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    let mut t = HostileTar::new();
    // Relative link out of the tree: dropped.
    t.symlink("up", "../../../../../../../../..")
        .file("up/etc/planted", b"x")
        // Absolute link: inside the tree under chroot semantics, so kept; but on the host it points
        // at outside/, and nothing may be written through it.
        .symlink("abs", &outside)
        .file("abs/planted", b"x")
        .dir("abs/newdir", 0o755)
        .symlink("abs/link", "x")
        .hardlink("abs/hard", "ok")
        // Relative link to outside/ via the temp dir: dropped.
        .symlink("rel", "../outside")
        .file("rel/planted", b"x")
        // Overwriting a symlink with a file replaces the link instead of following it.
        .symlink("over", &format!("{outside}/secret"))
        .file("over", b"replaced")
        .file("ok", b"ok");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    sb.outside_untouched();
    assert!(skipped_reason(&report, "up").contains("outside the tree"));
    assert!(skipped_reason(&report, "abs/planted").contains("symlink"));
    assert!(skipped_reason(&report, "abs/newdir").contains("symlink"));
    assert!(skipped_reason(&report, "abs/link").contains("symlink"));
    skipped_reason(&report, "abs/hard");
    skipped_reason(&report, "rel");
    assert_eq!(
        fs::read_link(sb.root().join("abs")).unwrap(),
        Path::new(&outside)
    );
    assert!(fs::symlink_metadata(sb.root().join("over"))
        .unwrap()
        .is_file());
    assert_eq!(fs::read(sb.root().join("over")).unwrap(), b"replaced");
}

#[test]
fn links_that_later_members_redirect_outside_are_removed() {
    let sb = Sandbox::new();
    let mut t = HostileTar::new();
    // `a -> b/..` is harmless while b does not exist; b then becomes a link to the root, which makes
    // `a` point above it.
    t.dir("sub", 0o755)
        .symlink("sub/up", "..")
        .symlink("a", "b/..")
        .symlink("b", "sub/up")
        .symlink("fine", "sub/up/sub");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    assert!(skipped_reason(&report, "a").contains("extracted after it"));
    assert!(fs::symlink_metadata(sb.root().join("a")).is_err());
    assert_eq!(report.symlinks, 3);
    assert!(fs::read_link(sb.root().join("fine")).is_ok());
}

#[test]
fn hardlinks_only_to_files_extracted_inside() {
    let sb = Sandbox::new();
    let secret = format!("{}/secret", sb.outside().display());
    let mut t = HostileTar::new();
    t.file("./real", b"data")
        .hardlink("./h-ok", "./real")
        .hardlink("h-dotdot", "../outside/secret")
        .hardlink("h-abs", &secret)
        .hardlink("h-missing", "not-yet")
        .file("not-yet", b"late")
        .symlink("sl", "real")
        .hardlink("h-to-symlink", "sl")
        .dir("d", 0o755)
        .hardlink("h-to-dir", "d");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    sb.outside_untouched();
    let real = fs::metadata(sb.root().join("real")).unwrap();
    let linked = fs::metadata(sb.root().join("h-ok")).unwrap();
    assert_eq!(real.ino(), linked.ino());
    assert_eq!(report.hardlinks, 1);
    for m in ["h-dotdot", "h-abs", "h-missing", "h-to-symlink", "h-to-dir"] {
        skipped_reason(&report, m);
        assert!(fs::symlink_metadata(sb.root().join(m)).is_err(), "{m}");
    }
    // Still exactly one link to the secret.
    assert_eq!(
        fs::metadata(sb.outside().join("secret")).unwrap().nlink(),
        1
    );
}

#[test]
fn device_nodes_and_fifos_are_skipped() {
    let sb = Sandbox::new();
    let mut t = HostileTar::new();
    t.raw("dev/sda", EntryType::Block, 0o660, None, b"")
        .raw("dev/null", EntryType::Char, 0o666, None, b"")
        .raw("fifo", EntryType::Fifo, 0o644, None, b"")
        .file("after", b"still here");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    for m in ["dev/sda", "dev/null", "fifo"] {
        assert!(skipped_reason(&report, m).contains("device"));
    }
    assert!(fs::symlink_metadata(sb.root().join("dev/sda")).is_err());
    assert!(fs::symlink_metadata(sb.root().join("dev/null")).is_err());
    assert!(fs::symlink_metadata(sb.root().join("fifo")).is_err());
    assert_eq!(fs::read(sb.root().join("after")).unwrap(), b"still here");
}

#[test]
fn decompression_bomb_hits_the_byte_cap() {
    let sb = Sandbox::new();
    let zeros = vec![0u8; 8 << 20];
    let mut t = HostileTar::new();
    t.file("small", b"x").file("bomb", &zeros);
    let package = deb(&t.finish(), Compression::Xz);
    // The compressed package is tiny; its content is not.
    assert!(package.len() < 64 * 1024, "{}", package.len());
    let path = sb.pkg("bomb.deb");
    fs::write(&path, &package).unwrap();
    let limits = ExtractLimits {
        max_bytes: 1 << 20,
        ..ExtractLimits::default()
    };
    let err = extract_deb_with_limits(&path, &sb.root(), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "unpacked bytes",
                limit: 1048576,
                ..
            }
        ),
        "{err}"
    );
    assert!(fs::symlink_metadata(sb.root().join("bomb")).is_err());
    // The same package under the default limits is fine.
    let report = extract_deb(&path, &sb.root()).unwrap();
    assert_eq!(report.bytes, 1 + (8 << 20));
}

#[test]
fn too_many_entries_hit_the_entry_cap() {
    let sb = Sandbox::new();
    let mut t = HostileTar::new();
    for i in 0..50 {
        t.file(&format!("f{i}"), b"");
    }
    let limits = ExtractLimits {
        max_entries: 20,
        ..ExtractLimits::default()
    };
    let err = extract_tar_with_limits(t.finish().as_slice(), &sb.root(), &limits).unwrap_err();
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
}

#[test]
fn giant_metadata_records_are_refused_without_buffering_them() {
    let sb = Sandbox::new();
    let mut t = HostileTar::new();
    // A 16 MiB GNU long name: tar parsers read these into memory whole.
    t.raw(
        "././@LongLink",
        EntryType::GNULongName,
        0o644,
        None,
        &vec![b'a'; 16 << 20],
    )
    .file("x", b"x");
    let err = extract_tar(t.finish().as_slice(), &sb.root()).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::LimitExceeded {
                what: "metadata bytes of one entry",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn modes_lose_special_bits_and_mtimes_are_kept() {
    let sb = Sandbox::new();
    let mut t = HostileTar::new();
    t.dir("./", 0o755)
        .dir("./d", 0o2775)
        .dir("./ro", 0o555)
        .file_mode("./ro/suid", 0o4755, b"#!/bin/sh\n")
        .file_mode("./d/sticky", 0o1644, b"")
        .symlink("./d/link", "sticky")
        .long_file(&format!("d/{}", "n".repeat(150)), b"long name");
    let report = extract_tar(t.finish().as_slice(), &sb.root()).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let mode = |p: &str| {
        fs::symlink_metadata(sb.root().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("d"), 0o775);
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("ro/suid"), 0o755);
    assert_eq!(mode("d/sticky"), 0o644);
    for p in ["", "d", "ro", "ro/suid", "d/sticky", "d/link"] {
        let m = fs::symlink_metadata(sb.root().join(p)).unwrap();
        assert_eq!(m.mtime(), MTIME as i64, "{p}");
    }
    assert_eq!(
        fs::read(sb.root().join(format!("d/{}", "n".repeat(150)))).unwrap(),
        b"long name"
    );
    assert_eq!(
        (report.files, report.dirs, report.symlinks, report.hardlinks),
        (3, 2, 1, 0)
    );
    // Let the temp dir be removed.
    fs::set_permissions(sb.root().join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn debs_with_every_data_compression_extract_the_same() {
    let mut t = HostileTar::new();
    t.dir("./", 0o755)
        .dir("./usr/", 0o755)
        .dir("./usr/src/", 0o755)
        .file("./usr/src/Makefile", b"all:\n")
        .symlink("./usr/src/build", "/usr/src")
        .hardlink("./usr/src/Makefile.copy", "./usr/src/Makefile");
    let tar = t.finish();
    for c in [
        Compression::None,
        Compression::Xz,
        Compression::Zstd,
        Compression::Gzip,
    ] {
        let sb = Sandbox::new();
        let path = sb.pkg("p.deb");
        fs::write(&path, deb(&tar, c)).unwrap();
        let report = extract_deb(&path, &sb.root()).unwrap();
        assert_eq!(
            (
                report.files,
                report.symlinks,
                report.hardlinks,
                report.bytes
            ),
            (1, 1, 1, 5),
            "{c:?}"
        );
        assert_eq!(
            fs::read(sb.root().join("usr/src/Makefile.copy")).unwrap(),
            b"all:\n"
        );
        // extract_package recognises the .deb by content.
        let again = sb.pkg("again");
        let r2 = extract_package(&path, &again, &ExtractLimits::default()).unwrap();
        assert_eq!(r2, report);
        // And a bare compressed tar.
        let bare = sb.pkg("bare.tar");
        fs::write(&bare, c.compress(&tar)).unwrap();
        let r3 = extract_package(&bare, &sb.pkg("bare"), &ExtractLimits::default()).unwrap();
        assert_eq!(r3, report, "{c:?}");
    }
}

#[test]
fn malformed_packages_are_clear_errors() {
    let sb = Sandbox::new();
    let write = |name: &str, data: &[u8]| {
        let p = sb.pkg(name);
        fs::write(&p, data).unwrap();
        p
    };
    let not_ar = write("a.deb", b"this is not an ar archive at all");
    assert!(matches!(
        extract_deb(&not_ar, &sb.root()),
        Err(ExtractError::NotADeb { .. })
    ));
    let no_data = write(
        "b.deb",
        &support::ar_archive(&[("debian-binary", b"2.0\n"), ("control.tar.xz", b"")]),
    );
    assert!(matches!(
        extract_deb(&no_data, &sb.root()),
        Err(ExtractError::NoData { .. })
    ));
    let bz2 = write(
        "c.deb",
        &support::ar_archive(&[("debian-binary", b"2.0\n"), ("data.tar.bz2", b"BZh")]),
    );
    assert!(matches!(
        extract_deb(&bz2, &sb.root()),
        Err(ExtractError::UnsupportedCompression { .. })
    ));
    let wrong_first = write(
        "d.deb",
        &support::ar_archive(&[("data.tar", b""), ("debian-binary", b"2.0\n")]),
    );
    assert!(matches!(
        extract_deb(&wrong_first, &sb.root()),
        Err(ExtractError::NotADeb { .. })
    ));
    let garbage_xz = write(
        "e.deb",
        &support::ar_archive(&[
            ("debian-binary", b"2.0\n"),
            ("data.tar.xz", b"\xfd7zXZ\0garbage"),
        ]),
    );
    let err = extract_deb(&garbage_xz, &sb.root()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
    // Truncated tar: the file member's data is cut short.
    let mut t = HostileTar::new();
    t.file("big", &vec![7u8; 10_000]);
    let mut tar = t.finish();
    tar.truncate(3000);
    let err = extract_tar(tar.as_slice(), &sb.root()).unwrap_err();
    assert!(matches!(err, ExtractError::Corrupt { .. }), "{err}");
    assert!(fs::symlink_metadata(sb.root().join("big")).is_err());
    let short_rpm = write("f.rpm", b"\xed\xab\xee\xdb rpm lead");
    assert!(matches!(
        extract_package(&short_rpm, &sb.root(), &ExtractLimits::default()),
        Err(ExtractError::NotAnRpm { .. })
    ));
    let unknown = write("f.bin", b"PK\x03\x04 a zip file");
    assert!(matches!(
        extract_package(&unknown, &sb.root(), &ExtractLimits::default()),
        Err(ExtractError::UnknownFormat { .. })
    ));
    sb.outside_untouched();
}

fn sample_deb(dir: &Path) -> std::path::PathBuf {
    let mut t = HostileTar::new();
    t.dir("./", 0o755)
        .dir("./usr/", 0o755)
        .file("./usr/a", b"a")
        .dir("./ro/", 0o555)
        .file("./ro/b", b"b");
    let path = dir.join("sample.deb");
    fs::write(&path, deb(&t.finish(), Compression::Zstd)).unwrap();
    path
}

#[test]
fn package_trees_extract_once_atomically_for_concurrent_callers() {
    let dir = tempfile::tempdir().unwrap();
    let deb = sample_deb(dir.path());
    let trees = PackageTrees::new(dir.path().join("trees"));
    // A leftover of a crashed extraction of the same key is cleaned up.
    fs::create_dir_all(dir.path().join("trees/.tmp-k1-crashed/usr")).unwrap();

    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| trees.tree(&deb, "k1"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = results[0].as_ref().unwrap();
    assert_eq!(first, &dir.path().join("trees/k1"));
    for r in &results {
        assert_eq!(r.as_ref().unwrap(), first);
    }
    assert_eq!(fs::read(first.join("usr/a")).unwrap(), b"a");
    assert_eq!(
        fs::metadata(first).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let names: Vec<_> = fs::read_dir(dir.path().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, vec![".locks".to_string(), "k1".to_string()]);

    // Later calls reuse the tree even if the package is gone.
    fs::remove_file(&deb).unwrap();
    assert_eq!(&trees.tree(&deb, "k1").unwrap(), first);
    assert!(matches!(
        trees.tree(&deb, "../k1"),
        Err(ExtractError::InvalidKey { .. })
    ));
}

#[test]
fn package_trees_wait_for_another_holder_of_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let deb = sample_deb(dir.path());
    let root = dir.path().join("trees");
    fs::create_dir_all(root.join(".locks")).unwrap();
    // Another process would hold the lock the same way.
    let lock = fs::File::create(root.join(".locks/k2.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let trees = PackageTrees::new(&root);
    std::thread::scope(|s| {
        let h = s.spawn(|| trees.tree(&deb, "k2"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!h.is_finished());
        assert!(!root.join("k2").exists());
        drop(lock);
        assert_eq!(h.join().unwrap().unwrap(), root.join("k2"));
    });
}

#[test]
fn failed_extraction_leaves_no_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = HostileTar::new();
    t.dir("./ro/", 0o555).file("./ro/x", &vec![0u8; 4096]);
    let bomb = dir.path().join("bomb.deb");
    fs::write(&bomb, deb(&t.finish(), Compression::Xz)).unwrap();
    let trees = PackageTrees::new(dir.path().join("trees")).with_limits(ExtractLimits {
        max_bytes: 1024,
        max_entries: 10,
    });
    let err = trees.tree(&bomb, "k3").unwrap_err();
    assert!(matches!(err, ExtractError::LimitExceeded { .. }), "{err}");
    let names: Vec<_> = fs::read_dir(dir.path().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![".locks".to_string()]);
}
