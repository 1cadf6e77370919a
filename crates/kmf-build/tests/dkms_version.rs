//! A computed `PACKAGE_VERSION`, evaluated in the real sandboxes before any kernel.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kmf_build::{dkms_version, ProjectConfig};
use kmf_sandbox::{Bubblewrap, HostRunner, Sandbox};

/// bwrap, or `None` where it cannot run; under `CI=true` that is a failure instead.
fn bubblewrap() -> Option<Bubblewrap> {
    match Bubblewrap::detect() {
        Ok(b) => Some(b),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("bubblewrap is required when CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipped: bubblewrap is not usable here: {e}");
            None
        }
    }
}

/// A directory the sandbox's unprivileged uid can reach (a fresh tempdir is 0700).
fn reachable_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn project(dir: &Path, name: &str, conf: &str, files: &[(&str, &str)]) -> ProjectConfig {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("dkms.conf"), conf).unwrap();
    std::fs::write(root.join("Makefile"), "obj-m += m.o\n").unwrap();
    for (f, text) in files {
        std::fs::write(root.join(f), text).unwrap();
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = ProjectConfig::load(&root).unwrap();
    assert!(p.computed_version(None).is_some(), "{conf}");
    assert!(p.computed_version(Some("1.0")).is_none());
    p
}

async fn evaluate(
    sandbox: &dyn Sandbox,
    p: &ProjectConfig,
    cache: &Path,
) -> Result<String, String> {
    dkms_version::evaluate(sandbox, p, cache)
        .await
        .map_err(|e| e.to_string())
}

async fn cases(sandbox: &dyn Sandbox, isolated: bool) {
    let d = reachable_dir();
    let cache: PathBuf = d.path().join("cache");

    // The everyday shape: read from a file of the source.
    let p = project(
        d.path(),
        "from-file",
        "PACKAGE_NAME=m\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
        &[("VERSION", "2.5.1\n")],
    );
    assert_eq!(evaluate(sandbox, &p, &cache).await.unwrap(), "2.5.1");

    // Shell arithmetic and tools of the usual kind (sed) are there; no kernel is chosen yet.
    let p = project(
        d.path(),
        "tools",
        "PACKAGE_NAME=m\nPACKAGE_VERSION=\"$(echo 3.x | sed s/x/$((4+5))/)${kernelver:+.k}\"\n",
        &[],
    );
    assert_eq!(evaluate(sandbox, &p, &cache).await.unwrap(), "3.9");

    // Not a version: refused with what to do.
    let p = project(
        d.path(),
        "escapes",
        "PACKAGE_NAME=m\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
        &[("VERSION", "../../../etc\n")],
    );
    let err = evaluate(sandbox, &p, &cache).await.unwrap_err();
    assert!(
        err.contains("computed PACKAGE_VERSION") && err.contains("--driver-version"),
        "{err}"
    );

    // A dkms.conf that fails: refused with its last words.
    let p = project(
        d.path(),
        "fails",
        "PACKAGE_NAME=m\necho 'no VERSION file here' >&2; exit 3\nPACKAGE_VERSION=\"$(cat VERSION)\"\n",
        &[],
    );
    let err = evaluate(sandbox, &p, &cache).await.unwrap_err();
    assert!(
        err.contains("exit status 3") && err.contains("no VERSION file here"),
        "{err}"
    );

    // This machine's files are not there (only its /usr): a version that tells whether it can see
    // them, and whether it can write outside the source copy. Without a sandbox it sees them.
    {
        let marker = d.path().join("host-marker");
        std::fs::write(&marker, "x").unwrap();
        let p = project(
            d.path(),
            "peeks",
            &format!(
                "PACKAGE_NAME=m\nPACKAGE_VERSION=\"$(if test -e /etc/passwd || test -e {m}; then echo 6.6.6; \
                 elif touch /usr/kmf-probe 2>/dev/null; then echo 7.7.7; else echo 1.2.3; fi)\"\n",
                m = marker.display()
            ),
            &[],
        );
        let expected = if isolated { "1.2.3" } else { "6.6.6" };
        assert_eq!(evaluate(sandbox, &p, &cache).await.unwrap(), expected);
        assert!(!Path::new("/usr/kmf-probe").exists());
    }
    if isolated {
        // No network: a server listening on this machine's loopback is out of reach.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = project(
            d.path(),
            "fetches",
            &format!(
                "PACKAGE_NAME=m\nPACKAGE_VERSION=\"$( (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null \
                 && echo 6.6.6 || echo 1.0.1)\"\n"
            ),
            &[],
        );
        assert_eq!(evaluate(sandbox, &p, &cache).await.unwrap(), "1.0.1");
    }
}

#[tokio::test]
async fn computed_versions_are_evaluated_under_bubblewrap_over_a_root_of_host_tools() {
    let Some(bw) = bubblewrap() else { return };
    cases(&bw, true).await;
}

#[tokio::test]
async fn computed_versions_are_evaluated_without_a_sandbox_when_asked() {
    cases(&HostRunner, false).await;
}
