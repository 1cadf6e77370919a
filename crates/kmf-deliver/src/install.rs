//! `kmodfarm install`: the host's modules from the store, verified, in `/lib/modules/<release>/extra`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kmf_store::{Store, StoreError};
use kmf_types::published::{
    driver_index_key, matrix_key, metadata_key, parse_driver_index_key, parse_matrix_key,
    variant_prefix, DriverIndex, PublishedVariant,
};
use kmf_types::{output_version, MatrixEntry};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::host::Host;
use crate::version::natural_cmp;

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The driver; optional when the store can be listed and holds exactly one.
    pub driver: Option<String>,
    /// A driver version (its MAJOR.MINOR.0 picks the published matrix); default the newest published.
    pub driver_version: Option<String>,
    /// The host's root directory (`/`); modules go to `<root>/lib/modules/<release>/extra/<driver>/`.
    pub root: PathBuf,
    /// Install the modules here instead.
    pub dest: Option<PathBuf>,
    /// Load the modules with modprobe afterwards (only when `root` is `/`).
    pub load: bool,
    /// Refuse modules that do not carry a signature verifying against this certificate (PEM or DER):
    /// the one the fleet's kernels trust.
    pub verify_cert: Option<PathBuf>,
}

/// What `install` did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub driver: String,
    pub driver_version: String,
    pub host: Host,
    /// The variant's store prefix (`<driver>/<output>`).
    pub variant: String,
    pub modules: Vec<InstalledModule>,
    /// `ran`, or why it did not run.
    pub depmod: String,
    pub loaded: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstalledModule {
    pub name: String,
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NoDriver(String),
    #[error("{0}")]
    NoMatch(Box<NoMatch>),
    #[error("{key} in {store}: {why}")]
    Corrupt {
        store: String,
        key: String,
        why: String,
    },
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Command(String),
}

/// No variant for the host's distribution, architecture and release.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("no {driver} module for {distro} {arch} kernel {release} in {store}{}", nearest_text(.nearest, .groups))]
pub struct NoMatch {
    pub driver: String,
    pub store: String,
    pub distro: String,
    pub arch: String,
    pub release: String,
    /// The available releases of the same distribution and architecture closest to the host's, in version
    /// order.
    pub nearest: Vec<String>,
    /// When the distribution and architecture have none: what the store has (`debian/x86_64`).
    pub groups: Vec<String>,
}

fn nearest_text(nearest: &[String], groups: &[String]) -> String {
    if !nearest.is_empty() {
        format!("; nearest available: {}", nearest.join(", "))
    } else if !groups.is_empty() {
        format!(
            "; it has no kernels of that distribution and architecture, only: {}",
            groups.join(", ")
        )
    } else {
        "; the published matrix is empty".to_string()
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { op, path, source }
}

/// The published matrix `install` reads for a driver: the newest (or the given) version in
/// `<driver>/index.json`, else `<driver>/<MAJOR.MINOR.0>/matrix.json` found by listing.
pub async fn published_matrix(
    store: &dyn Store,
    driver: &str,
    driver_version: Option<&str>,
) -> Result<(String, Vec<MatrixEntry>), InstallError> {
    let mut candidates: Vec<(String, String)> = Vec::new(); // (prefix version, matrix key)
    let index_key = driver_index_key(driver);
    if let Some(bytes) = store.get_bytes(&index_key).await? {
        let index: DriverIndex =
            serde_json::from_slice(&bytes).map_err(|e| InstallError::Corrupt {
                store: store.url(),
                key: index_key.clone(),
                why: e.to_string(),
            })?;
        for (version, matrix) in index.matrices() {
            candidates.push((version.to_string(), matrix.to_string()));
        }
    } else if let Ok(keys) = store.list(driver).await {
        for k in keys {
            if let Some(matrix) = parse_matrix_key(&k) {
                candidates.push((matrix.version.to_string(), k.clone()));
            }
        }
    }
    if let Some(v) = driver_version {
        let want = output_version(v);
        candidates.retain(|(pv, _)| *pv == want);
        if candidates.is_empty() {
            // Not indexed (an http store without index.json): try the conventional key.
            candidates.push((want, matrix_key(driver, v)));
        }
    }
    candidates.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    let Some((version, key)) = candidates.pop() else {
        return Err(InstallError::NoDriver(format!(
            "{} has no published matrix for driver `{driver}` (published by `kmodfarm sync`)",
            store.url()
        )));
    };
    let bytes = store.get_bytes(&key).await?.ok_or_else(|| {
        InstallError::NoDriver(format!(
            "{} has no {key} (published by `kmodfarm sync`)",
            store.url()
        ))
    })?;
    let matrix: Vec<MatrixEntry> =
        serde_json::from_slice(&bytes).map_err(|e| InstallError::Corrupt {
            store: store.url(),
            key: key.clone(),
            why: e.to_string(),
        })?;
    Ok((version, matrix))
}

/// The driver to install: the one named, else the only one with an index in a listable store.
pub async fn pick_driver(store: &dyn Store, driver: Option<&str>) -> Result<String, InstallError> {
    if let Some(d) = driver {
        return Ok(d.to_string());
    }
    let keys = store.list("").await.map_err(|e| {
        InstallError::NoDriver(format!(
            "pass --driver NAME ({} cannot be listed: {e})",
            store.url()
        ))
    })?;
    let mut drivers: Vec<String> = keys
        .iter()
        .filter_map(|k| parse_driver_index_key(k))
        .map(str::to_string)
        .collect();
    drivers.dedup();
    match drivers.len() {
        1 => Ok(drivers.remove(0)),
        0 => Err(InstallError::NoDriver(format!(
            "{} has no published driver (published by `kmodfarm sync`)",
            store.url()
        ))),
        _ => Err(InstallError::NoDriver(format!(
            "{} has several drivers ({}): pass --driver NAME",
            store.url(),
            drivers.join(", ")
        ))),
    }
}

/// The host's entry of the matrix: same distribution, architecture and release; among several uploads of one
/// release, the one whose package version (Debian) or build number `uname -v` names, else the newest.
pub fn select<'a>(
    matrix: &'a [MatrixEntry],
    host: &Host,
    notes: &mut Vec<String>,
) -> Result<&'a MatrixEntry, (Vec<String>, Vec<String>)> {
    let same_group: Vec<&MatrixEntry> = matrix
        .iter()
        .filter(|e| e.distribution == host.distro && e.architecture == host.arch)
        .collect();
    let mut exact: Vec<&MatrixEntry> = same_group
        .iter()
        .copied()
        .filter(|e| e.kversion == host.kernel_release)
        .collect();
    if exact.is_empty() {
        let mut releases: Vec<&str> = same_group.iter().map(|e| e.kversion.as_str()).collect();
        releases.sort_by(|a, b| natural_cmp(a, b));
        releases.dedup();
        let at = releases.partition_point(|r| natural_cmp(r, &host.kernel_release).is_lt());
        let lo = at.saturating_sub(3);
        let hi = (at + 3).min(releases.len());
        let nearest = releases[lo..hi].iter().map(|s| s.to_string()).collect();
        let mut groups: Vec<String> = Vec::new();
        for e in matrix {
            let g = format!("{}/{}", e.distribution, e.architecture);
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        groups.sort();
        return Err((nearest, groups));
    }
    if exact.len() > 1 {
        if let Some(pv) = host.package_version() {
            let m: Vec<_> = exact
                .iter()
                .copied()
                .filter(|e| e.packageversion.as_deref() == Some(pv.as_str()))
                .collect();
            if !m.is_empty() {
                exact = m;
            }
        }
    }
    if exact.len() > 1 {
        if let Some(n) = host.build_number() {
            let m: Vec<_> = exact
                .iter()
                .copied()
                .filter(|e| e.kernelversion == n)
                .collect();
            if !m.is_empty() {
                exact = m;
            }
        }
    }
    exact.sort_by(|a, b| {
        natural_cmp(
            a.packageversion.as_deref().unwrap_or(&a.kernelversion),
            b.packageversion.as_deref().unwrap_or(&b.kernelversion),
        )
    });
    let chosen = *exact.last().expect("not empty");
    if let (Some(host_pv), Some(pv)) = (host.package_version(), &chosen.packageversion) {
        if host_pv != *pv {
            notes.push(format!(
                "the host runs package version {host_pv} of {}; the module was built against {pv} (same release \
                 and ABI)",
                host.kernel_release
            ));
        }
    }
    Ok(chosen)
}

/// Finds, downloads, verifies and installs the host's modules, then runs depmod (and modprobe with `load`).
pub async fn install(
    store: &dyn Store,
    host: &Host,
    opts: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    let driver = pick_driver(store, opts.driver.as_deref()).await?;
    // The driver version comes from the record, which always names it.
    let (_, matrix) = published_matrix(store, &driver, opts.driver_version.as_deref()).await?;
    let mut notes = Vec::new();
    let entry = select(&matrix, host, &mut notes).map_err(|(nearest, groups)| {
        InstallError::NoMatch(Box::new(NoMatch {
            driver: driver.clone(),
            store: store.url(),
            distro: host.distro.clone(),
            arch: host.arch.to_string(),
            release: host.kernel_release.clone(),
            nearest,
            groups,
        }))
    })?;
    let prefix = variant_prefix(&driver, &entry.output);
    let corrupt = |key: &str, why: String| InstallError::Corrupt {
        store: store.url(),
        key: key.to_string(),
        why,
    };

    let meta_key = metadata_key(&prefix);
    let meta_bytes = store.get_bytes(&meta_key).await?.ok_or_else(|| {
        corrupt(
            &meta_key,
            "missing, though the published matrix lists the variant".into(),
        )
    })?;
    // The record also says where its files are; paths out of the prefix are refused by the parser.
    let record =
        PublishedVariant::parse(&meta_bytes).map_err(|e| corrupt(&meta_key, e.to_string()))?;
    if record.kernel_release != host.kernel_release {
        return Err(corrupt(
            &meta_key,
            format!(
                "built for kernel {:?}, not {}",
                record.kernel_release, host.kernel_release
            ),
        ));
    }
    let driver_version = record.driver_version.clone();
    if record.modules.is_empty() {
        return Err(corrupt(&meta_key, "lists no modules".into()));
    }

    // SHA256SUMS, where published, must agree with metadata.json.
    let sums_key = record.object_key(&prefix, "SHA256SUMS");
    let sums = store
        .get_bytes(&sums_key)
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned());

    // Download and check everything before installing anything.
    let mut verified: Vec<(InstalledModule, Vec<u8>)> = Vec::new();
    for m in &record.modules {
        let file_name = m.file_name.clone();
        let sha256 = m.sha256.to_ascii_lowercase();
        if file_name.is_empty()
            || file_name.contains('/')
            || !file_name.ends_with(".ko")
            || sha256.len() != 64
        {
            let shown = serde_json::to_string(m).unwrap_or_else(|_| format!("{m:?}"));
            return Err(corrupt(&meta_key, format!("bad module record {shown}")));
        }
        if let Some(sums) = &sums {
            let listed = sums.lines().any(|l| {
                l.split_once("  ")
                    .is_some_and(|(h, f)| f == file_name && h.eq_ignore_ascii_case(&sha256))
            });
            if !listed {
                return Err(corrupt(
                    &sums_key,
                    format!("does not list {file_name} with the SHA256 metadata.json gives"),
                ));
            }
        }
        let key = record.object_key(&prefix, &file_name);
        let bytes = store
            .get_bytes(&key)
            .await?
            .ok_or_else(|| corrupt(&key, "missing".into()))?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(corrupt(
                &key,
                format!("SHA256 {actual} does not match metadata.json's {sha256}"),
            ));
        }
        if let Some(size) = m.size {
            if size != bytes.len() as u64 {
                return Err(corrupt(
                    &key,
                    format!("{} bytes, metadata.json says {size}", bytes.len()),
                ));
            }
        }
        if let Some(cert) = &opts.verify_cert {
            kmf_verify::signature::verify_signature(&bytes, cert)
                .map_err(|e| corrupt(&key, format!("module signature: {e}")))?;
        }
        // As the kernel names a module whose `.modinfo` has no name.
        let name = match m.modinfo.name.as_str() {
            "" => file_name.trim_end_matches(".ko").replace('-', "_"),
            name => name.to_string(),
        };
        verified.push((
            InstalledModule {
                name,
                size: bytes.len() as u64,
                file_name,
                sha256,
                path: PathBuf::new(),
            },
            bytes,
        ));
    }

    let dest = match &opts.dest {
        Some(d) => d.clone(),
        None => opts
            .root
            .join("lib/modules")
            .join(&host.kernel_release)
            .join("extra")
            .join(&driver),
    };
    std::fs::create_dir_all(&dest).map_err(io("create", &dest))?;
    let mut installed = Vec::new();
    for (mut module, bytes) in verified {
        let path = dest.join(&module.file_name);
        write_atomic(&path, &bytes)?;
        module.path = path;
        installed.push(module);
    }

    // depmod indexes <root>/lib/modules/<release>: a --dest outside it is not the kernel's module tree.
    let module_tree = opts.root.join("lib/modules").join(&host.kernel_release);
    let depmod = if dest.starts_with(&module_tree) {
        run_depmod(&opts.root, &host.kernel_release)?
    } else {
        format!(
            "skipped: {} is outside {}, which depmod indexes",
            dest.display(),
            module_tree.display()
        )
    };
    let mut loaded = Vec::new();
    if opts.load {
        if opts.root != Path::new("/") {
            return Err(InstallError::Command(format!(
                "--load loads into the running kernel: it needs --root / (installed under {} without loading)",
                opts.root.display()
            )));
        }
        for m in &installed {
            let status = Command::new(find_tool("modprobe").unwrap_or_else(|| "modprobe".into()))
                .arg(&m.name)
                .status()
                .map_err(|e| InstallError::Command(format!("running modprobe {}: {e}", m.name)))?;
            if !status.success() {
                return Err(InstallError::Command(format!(
                    "modprobe {} failed ({status}); see the kernel log",
                    m.name
                )));
            }
            loaded.push(m.name.clone());
        }
    }
    Ok(InstallReport {
        driver,
        driver_version,
        host: host.clone(),
        variant: prefix,
        modules: installed,
        depmod,
        loaded,
        notes,
    })
}

/// Temp file beside the target, synced, renamed over it: a crash leaves the old module or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = path.parent().expect("module paths have a directory");
    let tmp = dir.join(format!(
        ".{}.kmf-tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", path)(e));
    }
    Ok(())
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// `depmod [-b ROOT] RELEASE`; skipped with a note where depmod is absent.
fn run_depmod(root: &Path, release: &str) -> Result<String, InstallError> {
    let Some(depmod) = find_tool("depmod") else {
        return Ok("skipped: depmod is not installed (kmod)".to_string());
    };
    let mut cmd = Command::new(depmod);
    if root != Path::new("/") {
        cmd.arg("-b").arg(root);
    }
    cmd.arg(release);
    let out = cmd
        .output()
        .map_err(|e| InstallError::Command(format!("running depmod: {e}")))?;
    if !out.status.success() {
        return Err(InstallError::Command(format!(
            "depmod {release} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok("ran".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmf_types::Arch;

    fn entry(kversion: &str, pv: &str, kv: &str) -> MatrixEntry {
        serde_json::from_value(serde_json::json!({
            "kversion": kversion,
            "distribution": "debian",
            "architecture": "x86_64",
            "kernelurls": [],
            "output": format!("0.1.0/debian/x86_64/{kversion}_{kv}"),
            "driverversion": "0.1.0",
            "kernelversion": kv,
            "packageversion": pv,
        }))
        .unwrap()
    }

    fn host(release: &str, v: &str) -> Host {
        Host {
            distro: "debian".into(),
            kernel_release: release.into(),
            kernel_version: Some(v.into()),
            arch: Arch::X86_64,
        }
    }

    #[test]
    fn picks_the_package_version_uname_names() {
        let m = vec![
            entry("6.1.0-9-amd64", "6.1.27-1", "1"),
            entry("6.1.0-27-amd64", "6.1.115-1", "1"),
            entry("6.1.0-27-amd64", "6.1.116-1", "1"),
        ];
        let mut notes = vec![];
        let h = host(
            "6.1.0-27-amd64",
            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)",
        );
        assert_eq!(
            select(&m, &h, &mut notes)
                .unwrap()
                .packageversion
                .as_deref(),
            Some("6.1.115-1")
        );
        assert!(notes.is_empty());
        let h = host(
            "6.1.0-27-amd64",
            "#1 SMP PREEMPT_DYNAMIC Debian 6.1.117-1 (2024-11-01)",
        );
        assert_eq!(
            select(&m, &h, &mut notes)
                .unwrap()
                .packageversion
                .as_deref(),
            Some("6.1.116-1")
        );
        assert_eq!(notes.len(), 1);
    }

    /// A store holding `hello` 0.1.0 for Debian 6.1.0-9-amd64 as the publisher leaves it: the module in the
    /// artifacts directory, `SHA256SUMS`, the record, the matrix and the index.
    async fn published_store(dir: &Path, module: &[u8]) -> kmf_store::LocalStore {
        let store = kmf_store::LocalStore::new(dir).unwrap();
        let entry = entry("6.1.0-9-amd64", "6.1.27-1", "1");
        let prefix = variant_prefix("hello", &entry.output);
        let sha256 = hex::encode(Sha256::digest(module));
        let record = serde_json::json!({
            "schema": 1, "artifacts": "0123456789abcdef/", "kmodfarm_version": "0.1.0",
            "driver": "hello", "driver_version": "0.1.1", "result": "success",
            "variant": entry.clone(), "kernel_release": "6.1.0-9-amd64",
            "modules": [{"file_name": "hello.ko", "relative_path": "hello.ko", "sha256": sha256,
                "size": module.len(), "modinfo": {"name": "hello_world"}}],
            "toolchain": {"builder": "b", "builder_identity": "b@1", "suite": "bookworm",
                "cc_version_text": null, "sandbox": "bubblewrap"},
            "inputs": {"source_sha256": "00", "packages": []},
            "build_key": "0123456789abcdef0123", "input_key": "in",
            "built_at": "2026-11-29T12:00:00Z", "log": "build.log",
        });
        let record = PublishedVariant::parse(record.to_string().as_bytes()).unwrap();
        let put = |key: String, bytes: Vec<u8>| {
            let store = &store;
            async move { store.put_bytes(&key, &bytes).await.unwrap() }
        };
        put(record.object_key(&prefix, "hello.ko"), module.to_vec()).await;
        put(
            record.object_key(&prefix, "SHA256SUMS"),
            format!("{sha256}  hello.ko\n").into_bytes(),
        )
        .await;
        put(metadata_key(&prefix), serde_json::to_vec(&record).unwrap()).await;
        let matrix = matrix_key("hello", "0.1.1");
        put(matrix.clone(), serde_json::to_vec(&[entry]).unwrap()).await;
        let mut index = DriverIndex {
            driver: "hello".into(),
            ..DriverIndex::default()
        };
        index.add("0.1.1", &matrix);
        put(
            driver_index_key("hello"),
            serde_json::to_vec(&index).unwrap(),
        )
        .await;
        store
    }

    fn options(dest: &Path) -> InstallOptions {
        InstallOptions {
            driver: None,
            driver_version: None,
            root: dest.join("root"),
            dest: Some(dest.join("modules")),
            load: false,
            verify_cert: None,
        }
    }

    #[tokio::test]
    async fn installs_what_the_record_and_index_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = published_store(&dir.path().join("store"), b"\x7fELF hello").await;
        let report = install(&store, &host("6.1.0-9-amd64", "#1"), &options(dir.path()))
            .await
            .unwrap();
        assert_eq!(report.driver, "hello");
        assert_eq!(report.driver_version, "0.1.1");
        assert_eq!(report.modules[0].name, "hello_world");
        assert_eq!(
            std::fs::read(dir.path().join("modules/hello.ko")).unwrap(),
            b"\x7fELF hello"
        );
        let (version, matrix) = published_matrix(&store, "hello", Some("0.1.0"))
            .await
            .unwrap();
        assert_eq!((version.as_str(), matrix.len()), ("0.1.0", 1));
    }

    #[tokio::test]
    async fn refuses_a_record_the_bytes_or_host_disagree_with() {
        let dir = tempfile::tempdir().unwrap();
        let store = published_store(&dir.path().join("store"), b"\x7fELF hello").await;
        let prefix = "hello/0.1.0/debian/x86_64/6.1.0-9-amd64_1";
        store
            .put_bytes(&format!("{prefix}/0123456789abcdef/hello.ko"), b"other")
            .await
            .unwrap();
        let err = install(&store, &host("6.1.0-9-amd64", "#1"), &options(dir.path()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("does not match metadata.json's"),
            "{err}"
        );
        assert!(!dir.path().join("modules").exists());

        // A record for another kernel than the matrix entry says.
        let key = metadata_key(prefix);
        let mut record =
            PublishedVariant::parse(&store.get_bytes(&key).await.unwrap().unwrap()).unwrap();
        record.kernel_release = "6.1.0-10-amd64".into();
        store
            .put_bytes(&key, &serde_json::to_vec(&record).unwrap())
            .await
            .unwrap();
        let err = install(&store, &host("6.1.0-9-amd64", "#1"), &options(dir.path()))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"built for kernel "6.1.0-10-amd64", not 6.1.0-9-amd64"#),
            "{err}"
        );
    }

    #[tokio::test]
    async fn finds_matrices_by_listing_without_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = published_store(dir.path(), b"m").await;
        store.delete(&driver_index_key("hello")).await.unwrap();
        let (version, _) = published_matrix(&store, "hello", None).await.unwrap();
        assert_eq!(version, "0.1.0");
        assert!(matches!(
            pick_driver(&store, None).await,
            Err(InstallError::NoDriver(_))
        ));
    }

    #[test]
    fn names_the_nearest_releases() {
        let m: Vec<MatrixEntry> = [2, 9, 13, 18, 21, 25, 27, 30]
            .iter()
            .map(|abi| entry(&format!("6.1.0-{abi}-amd64"), "6.1.1-1", "1"))
            .collect();
        let (nearest, _) = select(&m, &host("6.1.0-20-amd64", "#1"), &mut vec![]).unwrap_err();
        assert_eq!(
            nearest,
            [
                "6.1.0-9-amd64",
                "6.1.0-13-amd64",
                "6.1.0-18-amd64",
                "6.1.0-21-amd64",
                "6.1.0-25-amd64",
                "6.1.0-27-amd64"
            ]
        );
        let mut other = host("6.1.0-20-amd64", "#1");
        other.distro = "ubuntu".into();
        let (nearest, groups) = select(&m, &other, &mut vec![]).unwrap_err();
        assert!(nearest.is_empty());
        assert_eq!(groups, ["debian/x86_64"]);
    }
}
