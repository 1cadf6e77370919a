//! Builder root filesystems, created with mmdebstrap from the Debian mirror and kept for reuse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{BuildError, BuilderSpec};

/// A directory of builders: `<root>/<builder id>/` is a ready root filesystem.
#[derive(Debug, Clone)]
pub struct BuilderStore {
    root: PathBuf,
    /// One creation at a time per builder inside this process; other processes race harmlessly (the rename
    /// into place is atomic and the loser discards its copy).
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl BuilderStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BuilderStore {
            root: root.into(),
            locks: Default::default(),
        }
    }

    pub fn path(&self, spec: &BuilderSpec) -> PathBuf {
        self.root.join(&spec.id)
    }

    /// The builder's root filesystem, created first when missing. `mirror` is the apt repository URI the suite
    /// comes from.
    pub async fn ensure(&self, spec: &BuilderSpec, mirror: &str) -> Result<PathBuf, BuildError> {
        let dest = self.path(spec);
        if is_ready(&dest) {
            return Ok(dest);
        }
        let lock = {
            let mut locks = self.locks.lock().expect("builder lock map poisoned");
            locks.entry(spec.id.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if is_ready(&dest) {
            return Ok(dest);
        }
        std::fs::create_dir_all(&self.root).map_err(BuildError::io("create", &self.root))?;
        let tmp = self
            .root
            .join(format!(".tmp-{}-{}", spec.id, std::process::id()));
        let log = self.root.join(format!("{}.log", spec.id));
        let _ = std::fs::remove_dir_all(&tmp);
        tracing::info!(builder = %spec.id, suite = %spec.suite, "creating builder with mmdebstrap");
        let log_file = std::fs::File::create(&log).map_err(BuildError::io("create", &log))?;
        let log_err = log_file
            .try_clone()
            .map_err(BuildError::io("create", &log))?;
        let mode = if is_root() { "root" } else { "unshare" };
        let status = tokio::process::Command::new("mmdebstrap")
            .arg("--variant=minbase")
            .arg(format!("--mode={mode}"))
            .arg(format!("--include={}", spec.packages.join(",")))
            // Documentation and translations are a third of a toolchain rootfs and no build reads them.
            .arg("--dpkgopt=path-exclude=/usr/share/man/*")
            .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
            .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
            .arg(&spec.suite)
            .arg(&tmp)
            .arg(mirror)
            .stdin(std::process::Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| BuildError::Io {
                op: "run mmdebstrap (apt-get install mmdebstrap)",
                path: PathBuf::from("mmdebstrap"),
                source: e,
            })?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(BuildError::BuilderCreate {
                id: spec.id.clone(),
                status: status.to_string(),
                log,
            });
        }
        let manifest = serde_json::to_vec_pretty(spec).expect("builder spec serialises");
        let marker = tmp.join(READY);
        std::fs::write(&marker, manifest).map_err(BuildError::io("write", &marker))?;
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => {}
            Err(_) if is_ready(&dest) => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(BuildError::io("rename", &dest)(e)),
        }
        Ok(dest)
    }
}

const READY: &str = ".kmodfarm-builder.json";

fn is_ready(dir: &Path) -> bool {
    dir.join(READY).is_file()
}

fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status is enough and avoids libc calls.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
