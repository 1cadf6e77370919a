//! Builder root filesystems, created with mmdebstrap from the Debian mirror and kept for reuse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{BuildError, BuilderSpec};

/// Where a builder's packages come from and how apt proves them: the same keyring and expiry decision the
/// crawl used for that suite, so mmdebstrap takes exactly what kmodfarm took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// The repository URI the suite is served from.
    pub uri: String,
    /// Keyring files the suite's Release must be signed by (empty: mmdebstrap's default, the host's apt
    /// keys).
    pub keyrings: Vec<PathBuf>,
    /// The user accepted this suite's Release past its `Valid-Until`.
    pub allow_expired: bool,
}

impl AptSource {
    /// A source proven by the host's apt keys, expiry enforced.
    pub fn uri(uri: &str) -> AptSource {
        AptSource {
            uri: uri.to_string(),
            keyrings: Vec::new(),
            allow_expired: false,
        }
    }

    /// mmdebstrap's options for this source.
    pub fn mmdebstrap_args(&self) -> Vec<String> {
        let mut args: Vec<String> = self
            .keyrings
            .iter()
            .map(|k| format!("--keyring={}", k.display()))
            .collect();
        if self.allow_expired {
            args.push("--aptopt=Acquire::Check-Valid-Until \"false\"".to_string());
        }
        args
    }
}

/// A directory of builders: `<root>/<builder id>/` is a ready root filesystem.
#[derive(Debug, Clone)]
pub struct BuilderStore {
    root: PathBuf,
    /// One creation at a time per builder inside this process; other processes race harmlessly (the rename
    /// into place is atomic and the loser discards its copy).
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Builder id → identity: a ready builder never changes, and a sync checks thousands of variants.
    identities: Arc<Mutex<HashMap<String, String>>>,
}

impl BuilderStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BuilderStore {
            root: root.into(),
            locks: Default::default(),
            identities: Default::default(),
        }
    }

    pub fn path(&self, spec: &BuilderSpec) -> PathBuf {
        self.root.join(&spec.id)
    }

    /// The builder's root filesystem, created first when missing from `source`, the apt repository the suite
    /// comes from.
    pub async fn ensure(
        &self,
        spec: &BuilderSpec,
        source: &AptSource,
    ) -> Result<PathBuf, BuildError> {
        let log = self.root.join(format!("{}.log", spec.id));
        self.make_with(spec, |tmp| async move {
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
                .args(source.mmdebstrap_args())
                // Documentation and translations are a third of a toolchain rootfs and no build reads them.
                .arg("--dpkgopt=path-exclude=/usr/share/man/*")
                .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
                .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
                .arg(&spec.suite)
                .arg(&tmp)
                .arg(&source.uri)
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
                return Err(BuildError::BuilderCreate {
                    id: spec.id.clone(),
                    status: status.to_string(),
                    log: log.clone(),
                });
            }
            let manifest = serde_json::to_vec_pretty(spec).expect("builder spec serialises");
            let marker = tmp.join(READY);
            std::fs::write(&marker, manifest).map_err(BuildError::io("write", &marker))
        })
        .await
    }

    /// The builder of `spec`, made by `make` unless it is ready. One maker per builder in this process (other
    /// processes race harmlessly: the rename into place is atomic and the loser discards its copy). `make`
    /// fills a fresh temporary directory and must leave the ready marker in it.
    async fn make_with<F, Fut>(&self, spec: &BuilderSpec, make: F) -> Result<PathBuf, BuildError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<(), BuildError>>,
    {
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
        let _ = std::fs::remove_dir_all(&tmp);
        let made = make(tmp.clone()).await.and_then(|()| {
            if is_ready(&tmp) {
                Ok(())
            } else {
                Err(BuildError::io("make", &tmp)(std::io::Error::other(
                    "no builder came out (its ready marker is missing)",
                )))
            }
        });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
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

impl BuilderStore {
    /// [`builder_identity`] of a ready builder, computed once per process.
    pub fn identity(&self, spec: &BuilderSpec, rootfs: &Path) -> Result<String, BuildError> {
        if let Some(id) = self.identities.lock().expect("poisoned").get(&spec.id) {
            return Ok(id.clone());
        }
        let id = builder_identity(rootfs, spec)?;
        self.identities
            .lock()
            .expect("poisoned")
            .insert(spec.id.clone(), id.clone());
        Ok(id)
    }

    /// The builder if it is already here (no creation).
    pub fn existing(&self, spec: &BuilderSpec) -> Option<PathBuf> {
        let dest = self.path(spec);
        is_ready(&dest).then_some(dest)
    }

    /// The builder's root filesystem as a zstd-compressed tar (for plans that carry their inputs to offline
    /// workers): made once per builder identity and kept under `<root>/.archives/`; returns its path, SHA256
    /// and size. Device nodes are left out (the sandbox provides `/dev`), owners are kept numerically.
    pub async fn archive(
        &self,
        spec: &BuilderSpec,
        rootfs: &Path,
        identity: &str,
    ) -> Result<(PathBuf, String, u64), BuildError> {
        use sha2::Digest;
        let dir = self.root.join(".archives");
        std::fs::create_dir_all(&dir).map_err(BuildError::io("create", &dir))?;
        let name: String = identity
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let archive = dir.join(format!("{name}.tar.zst"));
        let digest_file = dir.join(format!("{name}.sha256"));
        if let (Ok(meta), Ok(sha)) = (
            std::fs::metadata(&archive),
            std::fs::read_to_string(&digest_file),
        ) {
            return Ok((archive, sha.trim().to_string(), meta.len()));
        }
        let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
        tracing::info!(builder = %spec.id, "packing the builder for the plan");
        let status = tokio::process::Command::new("tar")
            .args([
                "--sort=name",
                "--numeric-owner",
                "--zstd",
                "--exclude=./dev/*",
                "-cf",
            ])
            .arg(&tmp)
            .arg("-C")
            .arg(rootfs)
            .arg(".")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(BuildError::io("run tar for", rootfs))?;
        if !status.success() {
            let _ = std::fs::remove_file(&tmp);
            return Err(BuildError::io("pack", rootfs)(std::io::Error::other(
                format!("tar exited with {status}"),
            )));
        }
        let mut file = std::fs::File::open(&tmp).map_err(BuildError::io("read", &tmp))?;
        let mut hasher = sha2::Sha256::new();
        let size = std::io::copy(&mut file, &mut hasher).map_err(BuildError::io("read", &tmp))?;
        let sha = hex::encode(hasher.finalize());
        std::fs::rename(&tmp, &archive).map_err(BuildError::io("rename", &archive))?;
        std::fs::write(&digest_file, &sha).map_err(BuildError::io("write", &digest_file))?;
        Ok((archive, sha, size))
    }

    /// Installs the builder from an archive made by [`BuilderStore::archive`] whose SHA256 the caller
    /// checked; nothing is fetched. Returns the root filesystem.
    pub async fn install_archive(
        &self,
        spec: &BuilderSpec,
        archive: &Path,
    ) -> Result<PathBuf, BuildError> {
        self.make_with(spec, |tmp| async move {
            std::fs::create_dir_all(&tmp).map_err(BuildError::io("create", &tmp))?;
            let status = tokio::process::Command::new("tar")
                .args(["--zstd", "--no-same-permissions", "-xf"])
                .arg(archive)
                .arg("-C")
                .arg(&tmp)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(BuildError::io("run tar for", archive))?;
            if status.success() {
                Ok(())
            } else {
                Err(BuildError::io("unpack", archive)(std::io::Error::other(
                    format!("tar exited with {status}"),
                )))
            }
        })
        .await
    }
}

/// What a build's toolchain really is: the builder id (suite, compiler, package list, recipe) plus a digest of
/// every package and version installed in its root filesystem, so a builder recreated from a mirror that has
/// since updated gcc or binutils has another identity. Reads dpkg's status file (a few milliseconds).
pub fn builder_identity(rootfs: &Path, spec: &BuilderSpec) -> Result<String, BuildError> {
    let status_path = rootfs.join("var/lib/dpkg/status");
    let status =
        std::fs::read_to_string(&status_path).map_err(BuildError::io("read", &status_path))?;
    Ok(format!("{}@{}", spec.id, &installed_digest(&status)[..16]))
}

/// SHA256 over the sorted `package:arch=version` lines of the installed packages in a dpkg status file.
fn installed_digest(status: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .map(str::trim)
                })
            };
            let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
            installed.then(|| {
                format!(
                    "{}:{}={}",
                    field("Package").unwrap_or_default(),
                    field("Architecture").unwrap_or_default(),
                    field("Version").unwrap_or_default()
                )
            })
        })
        .collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmdebstrap_gets_the_keyring_and_the_expiry_decision() {
        let strict = AptSource {
            uri: "http://mirror.invalid/debian".into(),
            keyrings: vec![
                PathBuf::from("/k/archive.gpg"),
                PathBuf::from("/k/extra.asc"),
            ],
            allow_expired: false,
        };
        assert_eq!(
            strict.mmdebstrap_args(),
            ["--keyring=/k/archive.gpg", "--keyring=/k/extra.asc"]
        );
        let relaxed = AptSource {
            allow_expired: true,
            ..strict
        };
        assert_eq!(
            relaxed.mmdebstrap_args().last().unwrap(),
            "--aptopt=Acquire::Check-Valid-Until \"false\""
        );
    }

    const STATUS: &str = "Package: gcc-12\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.2.0-14\n\n\
Package: make\nStatus: install ok installed\nArchitecture: amd64\nVersion: 4.3-4.1\n\n\
Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n";

    #[test]
    fn identity_follows_installed_versions_not_order() {
        let a = installed_digest(STATUS);
        let mut reordered: Vec<&str> = STATUS.split("\n\n").collect();
        reordered.reverse();
        assert_eq!(a, installed_digest(&reordered.join("\n\n")));
        assert_ne!(
            a,
            installed_digest(&STATUS.replace("12.2.0-14", "12.2.0-15"))
        );
        // Packages that are not installed do not count.
        assert_eq!(
            a,
            installed_digest(&STATUS.replace("Version: 1\n", "Version: 2\n"))
        );
    }
}
