//! `kmodfarm install`: the host's variant from the store, verified, installed where its record says.
//!
//! Everything the record names is downloaded and checked first (SHA256 and size against `metadata.json`,
//! against `SHA256SUMS` where it lists the file, the module signature with `--verify-cert`), so a corrupt or
//! tampered store leaves the host as it was. Then, each file replaced atomically:
//!
//! * firmware files go to `<root>/lib/firmware/<name>`;
//! * the record's modprobe configuration to `<root>/etc/modprobe.d/kmodfarm-<driver>.conf`;
//! * modules to `<root>/lib/modules/<release>/<destination>` (without a destination,
//!   `extra/<driver>/<file_name>`).
//!
//! With `--dest DIR` everything goes under DIR instead, nothing under the root: the modules flat, the
//! firmware under `DIR/firmware/`, the modprobe configuration under `DIR/modprobe.d/`.
//!
//! The directories the record names (a destination's, a firmware name's) are created without following a
//! symlink: a store decides file names, not where on the host a link leads. `depmod` runs when the modules
//! are in the kernel's module tree. With `--load` (root `/` only) the in-tree modules the driver replaces
//! are unloaded first, then the modules load in the record's delivery order ([`load_sequence`]).

use std::collections::BTreeSet;
use std::fs::{OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kmf_store::{Store, StoreError};
use kmf_types::names::check_name;
use kmf_types::published::{
    driver_index_key, matrix_key, metadata_key, modprobe_conf_file, parse_driver_index_key,
    parse_matrix_key, variant_prefix, DriverIndex, PublishedModule, PublishedVariant,
    DEFAULT_INSTALL_DIR,
};
use kmf_types::{output_version, MatrixEntry};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::host::Host;
use crate::version::natural_cmp;

/// The mode of every installed file, whatever the umask: what packaged modules, firmware and modprobe
/// configuration have.
const FILE_MODE: u32 = 0o644;

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The driver; optional when the store can be listed and holds exactly one.
    pub driver: Option<String>,
    /// A driver version (its MAJOR.MINOR.0 picks the published matrix); default the newest published.
    pub driver_version: Option<String>,
    /// The host's root directory (`/`): modules go under `<root>/lib/modules/<release>/`, firmware under
    /// `<root>/lib/firmware/`, the modprobe configuration into `<root>/etc/modprobe.d/`.
    pub root: PathBuf,
    /// Install into this directory instead of the root: the modules flat, each under its destination's
    /// file name, the firmware under `firmware/`, the modprobe configuration under `modprobe.d/`.
    pub dest: Option<PathBuf>,
    /// Unload the in-tree modules the record names, then load the modules with modprobe (only when `root`
    /// is `/`).
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
    /// In record order, each with the path it was installed to.
    pub modules: Vec<InstalledModule>,
    /// `<root>/etc/modprobe.d/kmodfarm-<driver>.conf`, when the record carries a modprobe configuration.
    pub modprobe_conf: Option<PathBuf>,
    /// The firmware files installed, in record order.
    pub firmware: Vec<PathBuf>,
    /// `ran`, or why it did not run.
    pub depmod: String,
    /// The header packages the modules were built from, each with how it was proven (signed index, package
    /// signature, or unverified), as the record gives them.
    pub inputs: Vec<kmf_types::published::InputPackage>,
    /// In-tree modules unloaded (`modprobe -r`) before loading, in the record's order.
    pub unloaded: Vec<String>,
    /// The names passed to modprobe, in the order they were loaded.
    pub loaded: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstalledModule {
    /// The kernel's name for the module (`.modinfo`'s `name`).
    pub name: String,
    /// The file's name in the store; the installed file is named by its destination, which may differ.
    pub file_name: String,
    pub sha256: String,
    pub size: u64,
    /// Where it was installed.
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
    /// A directory on the way to a file the record names is a symlink (or not a directory at all):
    /// nothing is installed through it.
    #[error("{} is {what}, not a directory: not installing through it", .path.display())]
    NotADirectory { path: PathBuf, what: &'static str },
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

/// Finds, downloads and verifies the host's variant, installs its firmware, modprobe configuration and
/// modules, then runs depmod (and, with `load`, unloads what the driver replaces and loads the modules).
pub async fn install(
    store: &dyn Store,
    host: &Host,
    opts: &InstallOptions,
) -> Result<InstallReport, InstallError> {
    let driver = pick_driver(store, opts.driver.as_deref()).await?;
    // The driver's name becomes a directory (`extra/<driver>/`) and a file name (`<driver>.conf`).
    check_name("driver", &driver).map_err(|e| InstallError::NoDriver(e.to_string()))?;
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
    // The record also says where its files are and where they go; paths out of the prefix, out of the
    // module tree or out of /lib/firmware are refused by the parser.
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
    let delivery = &record.delivery;

    // SHA256SUMS, where published, must agree with metadata.json.
    let sums_key = record.object_key(&prefix, "SHA256SUMS");
    let sums = store
        .get_bytes(&sums_key)
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let sums_entry = |file_name: &str| {
        sums.as_deref().and_then(|sums| {
            sums.lines().find_map(|l| {
                let (hash, file) = l.split_once("  ")?;
                (file == file_name).then(|| hash.to_ascii_lowercase())
            })
        })
    };
    let module_tree = opts.root.join("lib/modules").join(&host.kernel_release);

    // Download and check everything before installing anything.
    let mut modules: Vec<(InstalledModule, Placement, Vec<u8>)> = Vec::new();
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
        if sums.is_some() && sums_entry(&file_name).as_deref() != Some(sha256.as_str()) {
            return Err(corrupt(
                &sums_key,
                format!("does not list {file_name} with the SHA256 metadata.json gives"),
            ));
        }
        let key = record.object_key(&prefix, &file_name);
        let bytes = store
            .get_bytes(&key)
            .await?
            .ok_or_else(|| corrupt(&key, "missing".into()))?;
        check_download(&bytes, &sha256, m.size).map_err(|why| corrupt(&key, why))?;
        if let Some(cert) = &opts.verify_cert {
            kmf_verify::signature::verify_signature(&bytes, cert)
                .map_err(|e| corrupt(&key, format!("module signature: {e}")))?;
        }
        // As the kernel names a module whose `.modinfo` has no name.
        let name = match m.modinfo.name.as_str() {
            "" => kernel_module_name(file_name.trim_end_matches(".ko")),
            name => name.to_string(),
        };
        let placement = module_placement(m, &driver, &module_tree, opts.dest.as_deref());
        modules.push((
            InstalledModule {
                name,
                size: bytes.len() as u64,
                file_name,
                sha256,
                path: PathBuf::new(),
            },
            placement,
            bytes,
        ));
    }

    let firmware_dir = match &opts.dest {
        Some(dir) => dir.join("firmware"),
        None => opts.root.join("lib/firmware"),
    };
    let mut firmware: Vec<(Placement, Vec<u8>)> = Vec::new();
    for f in &delivery.firmware {
        let key = record.object_key(&prefix, &f.file_name);
        let sha256 = f.sha256.to_ascii_lowercase();
        // The publisher's SHA256SUMS lists modules; a firmware file it lists must agree too.
        if sums_entry(&f.file_name).is_some_and(|listed| listed != sha256) {
            return Err(corrupt(
                &sums_key,
                format!(
                    "lists {} with another SHA256 than metadata.json gives",
                    f.file_name
                ),
            ));
        }
        let bytes = store
            .get_bytes(&key)
            .await?
            .ok_or_else(|| corrupt(&key, "missing".into()))?;
        check_download(&bytes, &sha256, Some(f.size)).map_err(|why| corrupt(&key, why))?;
        firmware.push((
            Placement {
                base: firmware_dir.clone(),
                rel: PathBuf::from(&f.name),
            },
            bytes,
        ));
    }

    let modprobe_conf = delivery.modprobe_conf.as_ref().map(|text| {
        let placement = Placement {
            base: match &opts.dest {
                Some(dir) => dir.join("modprobe.d"),
                None => opts.root.join("etc/modprobe.d"),
            },
            rel: PathBuf::from(modprobe_conf_file(&driver)),
        };
        (placement, text.as_bytes())
    });
    let placements = || {
        let modules = modules.iter().map(|(_, p, _)| p);
        let firmware = firmware.iter().map(|(p, _)| p);
        modules
            .chain(firmware)
            .chain(modprobe_conf.iter().map(|(p, _)| p))
    };

    // Two files at one path (two destinations alike, or alike once `--dest` flattens them): the second
    // would silently replace the first.
    let mut targets = BTreeSet::new();
    for placement in placements() {
        let path = placement.path();
        if !targets.insert(path.clone()) {
            return Err(corrupt(
                &meta_key,
                format!("names two files that install to {}", path.display()),
            ));
        }
    }
    // Every directory before any file, so that one refused (a symlink on the way) stops the install with
    // nothing written.
    for placement in placements() {
        create_dirs(placement)?;
    }

    // Firmware and modprobe options before the modules: whatever loads a module once it is in place
    // (udev after depmod, an administrator's modprobe) then finds its firmware and options.
    let mut firmware_paths = Vec::new();
    for (placement, bytes) in &firmware {
        let path = placement.path();
        write_atomic(&path, bytes)?;
        firmware_paths.push(path);
    }
    let modprobe_conf = match modprobe_conf {
        Some((placement, text)) => {
            let path = placement.path();
            write_atomic(&path, text)?;
            Some(path)
        }
        None => None,
    };
    let mut installed = Vec::new();
    for (mut module, placement, bytes) in modules {
        module.path = placement.path();
        write_atomic(&module.path, &bytes)?;
        installed.push(module);
    }

    // depmod indexes <root>/lib/modules/<release>: a --dest outside it is not the kernel's module tree.
    let depmod = match &opts.dest {
        Some(dest) if !dest.starts_with(&module_tree) => format!(
            "skipped: {} is outside {}, which depmod indexes",
            dest.display(),
            module_tree.display()
        ),
        _ => run_depmod(&opts.root, &host.kernel_release)?,
    };
    let mut unloaded = Vec::new();
    let mut loaded = Vec::new();
    if opts.load {
        if opts.root != Path::new("/") {
            return Err(InstallError::Command(format!(
                "--load loads into the running kernel: it needs --root / (installed under {} without loading)",
                opts.root.display()
            )));
        }
        let modprobe = find_tool("modprobe").unwrap_or_else(|| "modprobe".into());
        if !delivery.unload_first.is_empty() {
            let proc_modules = opts.root.join("proc/modules");
            let running =
                std::fs::read_to_string(&proc_modules).map_err(io("read", &proc_modules))?;
            let running = loaded_modules(&running);
            for name in &delivery.unload_first {
                if !running.contains(&kernel_module_name(name)) {
                    notes.push(format!("{name} is not loaded: nothing to unload"));
                    continue;
                }
                run_modprobe(&modprobe, &["-r", name])?;
                unloaded.push(name.clone());
            }
        }
        let names: Vec<&str> = installed.iter().map(|m| m.name.as_str()).collect();
        for wanted in &delivery.load_order {
            if !names.iter().any(|name| same_module(name, wanted)) {
                notes.push(format!(
                    "the load order names {wanted}, which is no module of this variant"
                ));
            }
        }
        for i in load_sequence(&names, &delivery.load_order) {
            let name = modprobe_name(&installed[i]);
            run_modprobe(&modprobe, &[&name])?;
            loaded.push(name);
        }
    }
    Ok(InstallReport {
        driver,
        driver_version,
        host: host.clone(),
        variant: prefix,
        modules: installed,
        modprobe_conf,
        firmware: firmware_paths,
        depmod,
        inputs: record.inputs.packages.clone(),
        unloaded,
        loaded,
        notes,
    })
}

/// Why downloaded `bytes` are not the file the record describes, if they are not.
fn check_download(bytes: &[u8], sha256: &str, size: Option<u64>) -> Result<(), String> {
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != sha256 {
        return Err(format!(
            "SHA256 {actual} does not match metadata.json's {sha256}"
        ));
    }
    match size {
        Some(size) if size != bytes.len() as u64 => {
            Err(format!("{} bytes, metadata.json says {size}", bytes.len()))
        }
        _ => Ok(()),
    }
}

/// Where a file is installed: `base` is a directory of the host's own layout (`/lib` may be a link to
/// `usr/lib`), created as it resolves; `rel` is the part the record names, whose directories are created
/// below `base` without following symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    base: PathBuf,
    rel: PathBuf,
}

impl Placement {
    fn path(&self) -> PathBuf {
        self.base.join(&self.rel)
    }
}

/// Where a module goes: at its destination in the kernel's module tree (without one,
/// `extra/<driver>/<file_name>`), or flat into `dest` under the destination's file name.
fn module_placement(
    m: &PublishedModule,
    driver: &str,
    module_tree: &Path,
    dest: Option<&Path>,
) -> Placement {
    let rel: PathBuf = match &m.destination {
        Some(destination) => PathBuf::from(destination),
        None => [DEFAULT_INSTALL_DIR, driver, &m.file_name].iter().collect(),
    };
    match dest {
        Some(dir) => Placement {
            base: dir.to_path_buf(),
            rel: PathBuf::from(rel.file_name().expect("destinations end in a file name")),
        },
        None => Placement {
            base: module_tree.to_path_buf(),
            rel,
        },
    }
}

/// Creates the directories a file at `placement` needs (see [`Placement`]).
fn create_dirs(placement: &Placement) -> Result<(), InstallError> {
    std::fs::create_dir_all(&placement.base).map_err(io("create", &placement.base))?;
    match placement.rel.parent() {
        Some(dirs) => create_dirs_no_follow(&placement.base, dirs),
        None => Ok(()),
    }
}

/// Creates each directory of `rel` below `base` that does not exist yet, refusing a symlink (or a file) on
/// the way: the record picks these names, and a link there could send its files anywhere on the host.
fn create_dirs_no_follow(base: &Path, rel: &Path) -> Result<(), InstallError> {
    let mut dir = base.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                return Err(InstallError::NotADirectory {
                    what: if meta.file_type().is_symlink() {
                        "a symlink"
                    } else {
                        "a file"
                    },
                    path: dir,
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => match std::fs::create_dir(&dir) {
                Ok(()) => {}
                // Created meanwhile (another install): fine if it is a real directory.
                Err(e)
                    if e.kind() == ErrorKind::AlreadyExists
                        && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(io("create", &dir)(e)),
            },
            Err(e) => return Err(io("inspect", &dir)(e)),
        }
    }
    Ok(())
}

/// Temp file beside the target, synced, renamed over it: a crash leaves the old file or the new one, and a
/// symlink at the target is replaced, not written through. Mode [`FILE_MODE`].
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let dir = path.parent().expect("installed paths have a directory");
    let tmp = dir.join(format!(
        ".{}.kmf-tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        // A leftover of a killed run (or a symlink put there) is unlinked, never opened: `create_new`
        // refuses any existing entry, a dangling symlink included.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // The umask may have taken bits off the mode asked for.
        f.set_permissions(Permissions::from_mode(FILE_MODE))?;
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

/// A module name as the kernel keeps it: `-` and `_` are the same to it, and it shows `_`.
fn kernel_module_name(name: &str) -> String {
    name.replace('-', "_")
}

fn same_module(a: &str, b: &str) -> bool {
    kernel_module_name(a) == kernel_module_name(b)
}

/// The modules `/proc/modules` lists as loaded, by kernel name.
fn loaded_modules(proc_modules: &str) -> BTreeSet<String> {
    proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(kernel_module_name)
        .collect()
}

/// The order `--load` loads a variant's modules in, as indices into `names` (their kernel names, in record
/// order): the modules `load_order` names first, in its order, then the others in record order. Names
/// compare as the kernel compares them (`-` and `_` alike); a name that is no module of the variant is
/// passed over.
pub fn load_sequence(names: &[&str], load_order: &[String]) -> Vec<usize> {
    let mut sequence: Vec<usize> = Vec::with_capacity(names.len());
    for wanted in load_order {
        for (i, name) in names.iter().enumerate() {
            if same_module(name, wanted) && !sequence.contains(&i) {
                sequence.push(i);
            }
        }
    }
    let rest: Vec<usize> = (0..names.len()).filter(|i| !sequence.contains(i)).collect();
    sequence.extend(rest);
    sequence
}

/// The name modprobe finds an installed module by. depmod indexes modules by file name, so one installed
/// under another file name than it was built as (a destination renaming it) is found by that name, not by
/// its `.modinfo` name.
fn modprobe_name(m: &InstalledModule) -> String {
    match m.path.file_name().and_then(|f| f.to_str()) {
        Some(installed) if installed != m.file_name => {
            kernel_module_name(installed.strip_suffix(".ko").unwrap_or(installed))
        }
        _ => m.name.clone(),
    }
}

/// Runs `modprobe [OPTIONS] -- NAME`, `args` being the options then the name: after `--`, a name from the
/// record is never read as an option.
fn run_modprobe(modprobe: &Path, args: &[&str]) -> Result<(), InstallError> {
    let (name, options) = args.split_last().expect("modprobe is given a module name");
    let shown = format!("modprobe {}", args.join(" "));
    let status = Command::new(modprobe)
        .args(options)
        .arg("--")
        .arg(name)
        .status()
        .map_err(|e| InstallError::Command(format!("running {shown}: {e}")))?;
    if !status.success() {
        return Err(InstallError::Command(format!(
            "{shown} failed ({status}); see the kernel log"
        )));
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
    use std::os::unix::fs::PermissionsExt;

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
        publish(dir, module, &[], |_| {}).await
    }

    /// As [`published_store`], with `artifacts` (file name, bytes) beside the module and the record
    /// changed by `edit` before it is written.
    async fn publish(
        dir: &Path,
        module: &[u8],
        artifacts: &[(&str, &[u8])],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> kmf_store::LocalStore {
        let store = kmf_store::LocalStore::new(dir).unwrap();
        let entry = entry("6.1.0-9-amd64", "6.1.27-1", "1");
        let prefix = variant_prefix("hello", &entry.output);
        let sha256 = hex::encode(Sha256::digest(module));
        let mut record = serde_json::json!({
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
        edit(&mut record);
        let record = PublishedVariant::parse(record.to_string().as_bytes()).unwrap();
        let put = |key: String, bytes: Vec<u8>| {
            let store = &store;
            async move { store.put_bytes(&key, &bytes).await.unwrap() }
        };
        put(record.object_key(&prefix, "hello.ko"), module.to_vec()).await;
        for (file_name, bytes) in artifacts {
            put(record.object_key(&prefix, file_name), bytes.to_vec()).await;
        }
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

    const FIRMWARE: &[u8] = b"pair firmware";

    /// A record whose module has a destination and that delivers a firmware file and a modprobe
    /// configuration; the firmware file recorded as [`FIRMWARE`] with `recorded_size`, stored as `stored`.
    async fn delivery_store(
        dir: &Path,
        stored: &[u8],
        recorded_size: usize,
    ) -> kmf_store::LocalStore {
        let firmware_sha256 = hex::encode(Sha256::digest(FIRMWARE));
        publish(
            dir,
            b"\x7fELF hello",
            &[("firmware-0.bin", stored)],
            |record| {
                record["modules"][0]["destination"] = "updates/dkms/kmf_hello.ko".into();
                record["delivery"] = serde_json::json!({
                    "load_order": ["hello_world"],
                    "modprobe_conf": "options hello_world debug=1\n",
                    "firmware": [{"name": "kmf/pair.bin", "file_name": "firmware-0.bin",
                        "sha256": firmware_sha256, "size": recorded_size}],
                });
            },
        )
        .await
    }

    /// Everything under `<dir>/root`, modules in its module tree.
    fn under_root(dir: &Path) -> InstallOptions {
        InstallOptions {
            dest: None,
            ..options(dir)
        }
    }

    #[tokio::test]
    async fn installs_modules_firmware_and_modprobe_conf_where_the_record_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = delivery_store(&dir.path().join("store"), FIRMWARE, FIRMWARE.len()).await;
        let opts = under_root(dir.path());
        let report = install(&store, &host("6.1.0-9-amd64", "#1"), &opts)
            .await
            .unwrap();

        let module = opts
            .root
            .join("lib/modules/6.1.0-9-amd64/updates/dkms/kmf_hello.ko");
        assert_eq!(report.modules[0].path, module);
        assert_eq!(report.modules[0].file_name, "hello.ko");
        assert_eq!(std::fs::read(&module).unwrap(), b"\x7fELF hello");
        assert!(!opts.root.join("lib/modules/6.1.0-9-amd64/extra").exists());

        let firmware = opts.root.join("lib/firmware/kmf/pair.bin");
        assert_eq!(report.firmware, std::slice::from_ref(&firmware));
        assert_eq!(std::fs::read(&firmware).unwrap(), FIRMWARE);

        let conf = opts.root.join("etc/modprobe.d/kmodfarm-hello.conf");
        assert_eq!(report.modprobe_conf.as_ref(), Some(&conf));
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "options hello_world debug=1\n"
        );
        for path in [&module, &firmware, &conf] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o644, "{}", path.display());
        }

        // The files are in the kernel's module tree: depmod indexed it, unless this host has none.
        assert!(
            report.depmod == "ran"
                || report
                    .depmod
                    .starts_with("skipped: depmod is not installed"),
            "{}",
            report.depmod
        );
        assert!(report.unloaded.is_empty() && report.loaded.is_empty());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["firmware"][0], firmware.to_str().unwrap());
        assert_eq!(json["modprobe_conf"], conf.to_str().unwrap());
        assert_eq!(json["unloaded"], serde_json::json!([]));

        // `--dest`: flat, under the destination's file name.
        let report = install(&store, &host("6.1.0-9-amd64", "#1"), &options(dir.path()))
            .await
            .unwrap();
        assert_eq!(
            report.modules[0].path,
            dir.path().join("modules/kmf_hello.ko")
        );
        assert!(report.depmod.starts_with("skipped: "), "{}", report.depmod);
        // Nothing of it outside the directory: firmware and modprobe configuration go under it too.
        assert!(report.firmware[0].starts_with(dir.path().join("modules/firmware")));
        assert_eq!(
            report.modprobe_conf.as_deref(),
            Some(
                dir.path()
                    .join("modules/modprobe.d/kmodfarm-hello.conf")
                    .as_path()
            )
        );
    }

    #[tokio::test]
    async fn refuses_firmware_the_record_disagrees_with_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let opts = under_root(dir.path());
        let host = host("6.1.0-9-amd64", "#1");

        // Same size, other bytes.
        let store =
            delivery_store(&dir.path().join("store"), b"pair firmwarE", FIRMWARE.len()).await;
        let err = install(&store, &host, &opts).await.unwrap_err();
        let InstallError::Corrupt { key, why, .. } = &err else {
            panic!("{err}");
        };
        assert!(key.ends_with("/0123456789abcdef/firmware-0.bin"), "{key}");
        assert!(why.contains("does not match metadata.json's"), "{why}");
        assert!(
            !opts.root.exists(),
            "no module, firmware or modprobe.d file"
        );

        // The right bytes, but the record says another size.
        let store = delivery_store(&dir.path().join("store2"), FIRMWARE, FIRMWARE.len() + 1).await;
        let err = install(&store, &host, &opts).await.unwrap_err();
        assert!(
            matches!(&err, InstallError::Corrupt { key, .. } if key.ends_with("firmware-0.bin")),
            "{err}"
        );
        assert!(err.to_string().contains("metadata.json says 14"), "{err}");
        assert!(!opts.root.exists());
    }

    #[tokio::test]
    async fn does_not_install_through_a_symlink_on_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let store = delivery_store(&dir.path().join("store"), FIRMWARE, FIRMWARE.len()).await;
        let opts = under_root(dir.path());
        let tree = opts.root.join("lib/modules/6.1.0-9-amd64");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tree.join("updates")).unwrap();

        let err = install(&store, &host("6.1.0-9-amd64", "#1"), &opts)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, InstallError::NotADirectory { path, what: "a symlink" }
                if *path == tree.join("updates")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // Refused before any file was written.
        assert!(!opts.root.join("lib/firmware/kmf/pair.bin").exists());
        assert!(!opts.root.join("etc/modprobe.d/hello.conf").exists());
    }

    #[test]
    fn loads_the_delivery_order_first_then_record_order() {
        let names = ["kmf_core", "kmf-pair", "kmf_extra", "kmf_last"];
        let sequence = |load_order: &[&str]| {
            let load_order: Vec<String> = load_order.iter().map(|s| s.to_string()).collect();
            load_sequence(&names, &load_order)
        };
        assert_eq!(sequence(&[]), [0, 1, 2, 3]);
        // `-` and `_` are one to the kernel.
        assert_eq!(sequence(&["kmf_pair", "kmf_core"]), [1, 0, 2, 3]);
        // A name that is no module of the variant is passed over; a repeated one loads once.
        assert_eq!(
            sequence(&["kmf_last", "crc32c", "kmf_last", "kmf_extra"]),
            [3, 2, 0, 1]
        );
    }

    #[test]
    fn knows_loaded_modules_and_what_modprobe_calls_a_renamed_one() {
        let running = loaded_modules(
            "e1000e 294912 0 - Live 0x0000000000000000\nsnd_hda_intel 57344 3 - Live 0x0 (E)\n",
        );
        assert!(running.contains("e1000e"));
        assert!(running.contains(&kernel_module_name("snd-hda-intel")));
        assert!(!running.contains("hello"));

        let mut module = InstalledModule {
            name: "hello_world".into(),
            file_name: "hello.ko".into(),
            sha256: String::new(),
            size: 0,
            path: PathBuf::from("/lib/modules/6.1.0-9-amd64/extra/hello/hello.ko"),
        };
        assert_eq!(modprobe_name(&module), "hello_world");
        module.path = PathBuf::from("/lib/modules/6.1.0-9-amd64/updates/dkms/kmf-hello.ko");
        assert_eq!(modprobe_name(&module), "kmf_hello");
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
