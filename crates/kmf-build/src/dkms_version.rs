//! A computed `PACKAGE_VERSION` (`"$(cat VERSION)"`, `` `git describe` ``), evaluated once before any kernel.
//!
//! The driver version names the store's directories and enters every build key, so it is needed before a
//! kernel is chosen, let alone a builder. DKMS learns it by sourcing `dkms.conf` on the host, as root;
//! kmodfarm sources it in the build sandbox instead, like every other evaluation of the file, over a root
//! filesystem that holds nothing but this machine's `/usr`, read-only: bash and the usual tools, none of
//! `/etc`, `/home`, `/root` or `/var`. The run has no network and an unprivileged uid, and its only
//! writable directory is a copy of the source. No kernel is chosen yet, so `kernelver`, `arch` and the
//! kernel's paths are empty. What it leaves is read as untrusted data and the version must be one
//! ([`names::check_version`]). Each build evaluates the file again for its kernel; a version that comes
//! out different there fails that variant ([`crate::kbuild`]), since it would not be the version the
//! variant is stored under.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kmf_sandbox::{ExitKind, Limits, Mount, Sandbox, SandboxSpec};
use kmf_types::names;

use crate::dkms::{self, DkmsVariables};
use crate::kbuild::{copy_source, SANDBOX_BUILD_DIR};
use crate::untrusted::Beneath;
use crate::workdir::{PrivateDir, WorkDir};
use crate::{BuildError, ProjectConfig};

/// How long the evaluation may take, as for each kernel's.
const EVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// The directories of a root filesystem that are this machine's: bound read-only when they are
/// directories here, recreated as the same links when they are links (merged `/usr`).
const HOST_TOOL_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Where the evaluation writes its records, in the source copy's parent.
const RECORDS: &str = "dkms-variables";

/// Evaluates `project`'s `dkms.conf` in `sandbox` with no kernel and returns its `PACKAGE_VERSION`,
/// checked to be a version. `scratch` (kmodfarm's cache directory) holds the root filesystem of host tools
/// and the run's private directories. The log of the run is kept under `scratch/logs/` and named in errors.
pub async fn evaluate(
    sandbox: &dyn Sandbox,
    project: &ProjectConfig,
    scratch: &Path,
) -> Result<String, BuildError> {
    let conf = project.root.join(project.dkms_conf_path());
    let refused = |why: String| BuildError::Config {
        path: conf.clone(),
        msg: format!(
            "{why}; give the version with --driver-version or [driver] version in kmodfarm.toml"
        ),
    };
    let (rootfs, ro_mounts) = host_tools_root(&scratch.join("host-tools-root"))?;
    let work = WorkDir::create(&scratch.join("work"), 256 << 20)?;
    copy_source(&project.source_dir(), &work.path().join("src"))?;
    let logs = PrivateDir::create(&scratch.join("staging"))?;
    let log_path = logs.path().join("dkms-version.log");
    // `--sandbox none` has no mount namespace: the harness sees the host path of the work directory.
    let build_root = if sandbox.name() == "none" {
        work.path().to_path_buf()
    } else {
        PathBuf::from(SANDBOX_BUILD_DIR)
    };
    let name = project.name();
    let mut argv = vec![
        "bash".to_string(),
        "-c".into(),
        dkms::eval_harness(),
        "kmodfarm-dkms-version".into(),
    ];
    // kernelver, arch, kernel_source_dir, kernel_config: no kernel yet.
    argv.extend([String::new(), String::new(), String::new(), String::new()]);
    argv.extend([
        build_root.join("dkms").display().to_string(),
        build_root.join("source").display().to_string(),
        "/lib/modules".to_string(),
        name,
        String::new(),
        build_root.join(RECORDS).display().to_string(),
        project.dkms_conf_in_source(),
    ]);
    let spec = SandboxSpec {
        rootfs,
        overlays: vec![],
        ro_mounts,
        rw_mounts: vec![Mount {
            src: work.path().to_path_buf(),
            dest: PathBuf::from(SANDBOX_BUILD_DIR),
        }],
        argv,
        env: [
            ("PATH", "/usr/bin:/bin".to_string()),
            ("LANG", "C.UTF-8".to_string()),
            ("HOME", build_root.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        cwd: build_root.join("src"),
        limits: Limits {
            timeout: EVAL_TIMEOUT,
            memory_bytes: Some(1 << 30),
            max_processes: Some(64),
            max_log_bytes: 64 << 10,
        },
        log_path: log_path.clone(),
    };
    let outcome = sandbox.run(&spec).await?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let output: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter(|l| !l.starts_with("kmodfarm: evaluating"))
        .collect();
    let said = match output.as_slice() {
        [] => String::new(),
        lines => format!(
            ": {}",
            names::printable(&lines[lines.len().saturating_sub(3)..].join(" / "))
        ),
    };
    let ended = match outcome.exit {
        ExitKind::Exited(0) => None,
        ExitKind::Exited(n) => Some(format!("exit status {n}")),
        ExitKind::Signaled(n) => Some(format!("killed by signal {n}")),
        ExitKind::TimedOut => Some(format!("timed out after {} s", EVAL_TIMEOUT.as_secs())),
    };
    if let Some(ended) = ended {
        return Err(refused(format!(
            "PACKAGE_VERSION is computed, and evaluating dkms.conf in the sandbox before any kernel \
             failed ({ended}){said}"
        )));
    }
    let bytes = Beneath::open(work.path())
        .and_then(|b| b.read(Path::new(RECORDS), dkms::MAX_DKMS_BYTES))
        .map_err(|e| refused(format!("evaluating dkms.conf left no record: {e}")))?;
    let variables = DkmsVariables::parse(&bytes).map_err(|e| refused(e.to_string()))?;
    let version = variables.package().1.unwrap_or_default().to_string();
    names::check_version("dkms.conf's computed PACKAGE_VERSION", &version)
        .map_err(|e| refused(format!("evaluated in the sandbox before any kernel: {e}")))?;
    Ok(version)
}

/// A root filesystem of this machine's tools at `dir`: empty directories for the mount points, and the
/// links of a merged `/usr` as they are here; the returned mounts bind the real directories read-only.
/// Made once and shared (every step is idempotent, so concurrent runs agree).
fn host_tools_root(dir: &Path) -> Result<(PathBuf, Vec<Mount>), BuildError> {
    let mkdir = |p: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .map_err(BuildError::io("create", p))
    };
    mkdir(dir)?;
    for empty in ["etc", "tmp", "proc", "dev", "build"] {
        mkdir(&dir.join(empty))?;
    }
    let mut mounts = Vec::new();
    for name in HOST_TOOL_DIRS {
        let host = Path::new("/").join(name);
        let inside = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host).map_err(BuildError::io("read link", &host))?;
            match std::fs::read_link(&inside) {
                Ok(have) if have == target => {}
                Ok(_) => {
                    std::fs::remove_file(&inside).map_err(BuildError::io("remove", &inside))?;
                    std::os::unix::fs::symlink(&target, &inside)
                        .map_err(BuildError::io("link", &inside))?;
                }
                Err(_) => match std::os::unix::fs::symlink(&target, &inside) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(BuildError::io("link", &inside)(e))
                    }
                    _ => {}
                },
            }
        } else if meta.is_dir() {
            mkdir(&inside)?;
            mounts.push(Mount {
                src: host,
                dest: Path::new("/").join(name),
            });
        }
    }
    Ok((dir.to_path_buf(), mounts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_mirrors_the_hosts_layout_and_binds_only_tool_directories() {
        let d = tempfile::tempdir().unwrap();
        let (root, mounts) = host_tools_root(&d.path().join("r")).unwrap();
        // Twice: idempotent.
        let (_, again) = host_tools_root(&d.path().join("r")).unwrap();
        assert_eq!(mounts, again);
        assert!(mounts.iter().any(|m| m.dest == Path::new("/usr")));
        for m in &mounts {
            assert!(
                HOST_TOOL_DIRS
                    .iter()
                    .any(|n| m.dest == Path::new("/").join(n)),
                "{m:?}"
            );
            assert!(root.join(m.dest.strip_prefix("/").unwrap()).is_dir());
        }
        for name in HOST_TOOL_DIRS {
            let host = Path::new("/").join(name);
            if let Ok(target) = std::fs::read_link(&host) {
                assert_eq!(std::fs::read_link(root.join(name)).unwrap(), target);
            }
        }
        assert_eq!(std::fs::read_dir(root.join("etc")).unwrap().count(), 0);
    }
}
