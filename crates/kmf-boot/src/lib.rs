//! Boot tests: load every built module into the real target kernel under QEMU.
//!
//! For one variant, [`BootTester::boot_test`]:
//!
//! 1. finds the kernel image package of the release (`linux-image-<release>`, else `-unsigned`, at the
//!    variant's package version) and `busybox-static` for the guest architecture through the apt index of
//!    the mirror, downloads both into the verified cache and extracts each once;
//! 2. plans the load order: the in-tree modules the built ones depend on (`depends` of `.modinfo`, looked
//!    up in the image's `lib/modules/<release>/kernel`, recursively) first, then the built modules, each
//!    after its dependencies;
//! 3. writes an initramfs (gzip'd newc cpio): busybox, an init script, the modules (decompressed) and the
//!    optional check script;
//! 4. boots it with `qemu-system-x86_64` / `qemu-system-aarch64` (KVM when usable for the guest, TCG
//!    otherwise), no network, no disks, a hard time limit after which the QEMU process group is killed;
//! 5. judges the console: every load and unload succeeded, the check passed, the kernel printed no
//!    "Unknown symbol", "disagrees about version of symbol", vermagic complaint, oops, BUG, WARNING or
//!    panic, and the taint flags are only O (out-of-tree) and E (unsigned).

pub mod cpio;
pub mod initramfs;
pub mod modules;
mod packages;
pub mod qemu;
pub mod verdict;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kmf_extract::PackageTrees;
use kmf_fetch::{Download, FetchOptions, Fetcher};
use kmf_kernels::mirrors::DebianMirrors;
use kmf_types::{Arch, FailureClass};
use serde::Serialize;
use tokio::sync::OnceCell;

pub use qemu::{Accel, ACCEL_ENV};

use modules::{InTreeModules, ModuleDeps, PlannedModule};
use packages::Indexes;

/// How boots run.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Guest memory.
    pub memory_mib: u32,
    pub accel: Accel,
    pub fetch: FetchOptions,
}

impl Default for BootOptions {
    /// 512 MiB, the accelerator from `KMODFARM_QEMU_ACCEL` (auto by default).
    fn default() -> Self {
        BootOptions {
            memory_mib: 512,
            accel: Accel::from_env(),
            fetch: FetchOptions::default(),
        }
    }
}

/// One variant to boot-test.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub arch: Arch,
    /// `uname -r` of the kernel: names the image package and its modules directory.
    pub kernel_release: String,
    /// The apt suite the kernel comes from (`bookworm-security`); the image is looked up there first.
    pub suite: Option<String>,
    /// The Debian package version of the kernel (`6.1.192-2`), preferred when several uploads exist.
    pub package_version: Option<String>,
    /// The built modules, loaded in dependency order.
    pub modules: Vec<PathBuf>,
    /// A shell script run in the guest after loading; a non-zero status fails the test. Its content, read
    /// by the caller (from an untrusted project, without following links).
    pub check_script: Option<Vec<u8>>,
    /// Hard limit for the boot, from QEMU's start to its exit.
    pub timeout: Duration,
    /// The kernel image and busybox packages, already at hand and verified (a worker of a plan that
    /// carries them); `None`: found through the mirror's index and fetched into the cache.
    pub packages: Option<BootPackages>,
}

/// A package file on local disk whose content the caller has checked against `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPackage {
    pub file_name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// What a boot needs besides the modules: the target kernel's image package and `busybox-static`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootPackages {
    pub kernel: LocalPackage,
    /// For a split image (Linux 7 on): the packages holding the kernel, its modules and its config
    /// (`linux-binary-`, `linux-modules-`, `linux-base-<release>`); empty for older images.
    pub kernel_parts: Vec<LocalPackage>,
    pub busybox: LocalPackage,
}

/// A module of the load order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadStep {
    pub name: String,
    /// A dependency from the kernel image package rather than a built module.
    pub in_tree: bool,
}

/// Time spent per stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BootDurations {
    /// Finding, fetching and extracting packages, planning and writing the initramfs.
    pub prepare_secs: f64,
    /// QEMU's run, start to exit.
    pub boot_secs: f64,
}

/// The result of one boot test.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    /// `Ok` when every module loaded and unloaded cleanly; otherwise the class and what happened.
    pub verdict: Result<(), (FailureClass, String)>,
    /// The serial console (kernel messages, the init's `KMF:` lines, the kernel log dump), then QEMU's
    /// stderr if it wrote any. Empty when the test failed before booting.
    pub console_log: String,
    /// The planned load order (in-tree dependencies first).
    pub load_order: Vec<LoadStep>,
    /// The modules the guest reported loaded, in order.
    pub modules_loaded: Vec<String>,
    /// `kvm` or `tcg`; empty when nothing booted.
    pub accel: &'static str,
    /// The kernel image package booted (its file name).
    pub kernel_package: Option<String>,
    /// `/proc/sys/kernel/tainted` after the test.
    pub taint: Option<u64>,
    pub durations: BootDurations,
}

impl BootOutcome {
    /// An outcome for a test that stopped before any VM started (`prepare` spent getting there).
    pub fn failed_before_boot(class: FailureClass, msg: String, prepare: Duration) -> BootOutcome {
        BootOutcome {
            verdict: Err((class, msg)),
            console_log: String::new(),
            load_order: vec![],
            modules_loaded: vec![],
            accel: "",
            kernel_package: None,
            taint: None,
            durations: BootDurations {
                prepare_secs: prepare.as_secs_f64(),
                boot_secs: 0.0,
            },
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict.is_ok()
    }
}

type Failure = (FailureClass, String);

/// An extracted kernel image package.
struct Kernel {
    vmlinuz: PathBuf,
    modules: InTreeModules,
    /// Decompressed in-tree modules, shared by every boot of this image: `<cache>/boot/modules/<sha256>/`.
    plain_dir: PathBuf,
    package: String,
}

type KernelCell = Arc<OnceCell<Result<Arc<Kernel>, Failure>>>;
/// (architecture, release, package version).
type KernelKey = (Arch, String, Option<String>);
type BusyboxCell = Arc<OnceCell<Result<Arc<Vec<u8>>, Failure>>>;

/// Runs boot tests; cheap to share (`Arc`) between parallel tests, which then share package lookups,
/// downloads and extractions.
pub struct BootTester {
    cache_dir: PathBuf,
    options: BootOptions,
    fetcher: Fetcher,
    trees: PackageTrees,
    indexes: Indexes,
    kernels: Mutex<HashMap<KernelKey, KernelCell>>,
    busyboxes: Mutex<HashMap<(Arch, String), BusyboxCell>>,
    /// Set when KVM failed once: later boots use TCG straight away.
    kvm_broken: std::sync::atomic::AtomicBool,
}

impl BootTester {
    /// A tester using the cache at `cache_dir` (`downloads/` and `packages/`, shared with builds, plus
    /// `boot/`) and the Debian `mirrors`.
    /// Without mirrors, only requests that bring their [`BootPackages`] can be served.
    pub fn new(
        cache_dir: &Path,
        mirrors: Option<DebianMirrors>,
        trust: std::sync::Arc<kmf_kernels::apt::AptTrust>,
        options: BootOptions,
    ) -> Result<BootTester, String> {
        let fetcher = Fetcher::new(cache_dir.join("downloads"), options.fetch.clone())
            .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("kmodfarm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(BootTester {
            cache_dir: cache_dir.to_path_buf(),
            trees: PackageTrees::new(cache_dir.join("packages")),
            fetcher,
            indexes: Indexes::new(client, mirrors, trust, Some(cache_dir.join("indexes"))),
            kernels: Mutex::default(),
            busyboxes: Mutex::default(),
            options,
            kvm_broken: Default::default(),
        })
    }

    /// Boot-tests one variant. Never panics on bad input: every failure is a classified verdict.
    pub async fn boot_test(&self, req: &BootRequest) -> BootOutcome {
        let started = Instant::now();
        let prepared = match self.prepare(req).await {
            Ok(p) => p,
            Err((class, msg)) => {
                return BootOutcome::failed_before_boot(class, msg, started.elapsed());
            }
        };
        let prepare = started.elapsed();
        let mut kvm = self.options.accel.use_kvm(req.arch)
            && !self.kvm_broken.load(std::sync::atomic::Ordering::Relaxed);
        let program = qemu::qemu_binary(req.arch);
        if qemu::find_program(program).is_none() {
            return BootOutcome::failed_before_boot(
                FailureClass::Internal,
                format!("{program} is not installed (Debian: qemu-system-x86 / qemu-system-arm)"),
                prepare,
            );
        }
        let run = loop {
            let args = qemu::qemu_args(
                req.arch,
                kvm,
                &prepared.kernel.vmlinuz,
                &prepared.initrd,
                self.options.memory_mib,
            );
            tracing::debug!(program, ?args, "starting QEMU");
            let run = match qemu::run(program, &args, req.timeout).await {
                Ok(r) => r,
                Err(e) => {
                    return BootOutcome::failed_before_boot(
                        FailureClass::Internal,
                        format!("cannot run {program}: {e}"),
                        prepare,
                    )
                }
            };
            // KVM that opens but cannot run a VM: QEMU exits at once; retry under TCG.
            if kvm
                && self.options.accel == Accel::Auto
                && !run.timed_out
                && !run.console.contains("Linux version")
                && run.stderr.to_ascii_lowercase().contains("kvm")
            {
                tracing::warn!(stderr = %run.stderr.trim(), "KVM unusable; falling back to TCG");
                self.kvm_broken
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                kvm = false;
                continue;
            }
            break run;
        };
        drop(prepared.workdir);
        let ending = if run.timed_out {
            verdict::Ending::TimedOut(req.timeout)
        } else {
            verdict::Ending::Exited
        };
        let mut console_log = run.console;
        if !run.stderr.trim().is_empty() {
            console_log.push_str("\n--- qemu stderr ---\n");
            console_log.push_str(&run.stderr);
        }
        let mut result = verdict::judge(&console_log, ending);
        if let Err((FailureClass::BootFailed, msg)) = &mut result {
            if !run.stderr.trim().is_empty() && !console_log.contains("KMF:INIT") {
                msg.push_str(&format!("; qemu: {}", run.stderr.trim()));
            }
        }
        if let Err((FailureClass::LoadFailed, msg)) = &mut result {
            for note in &prepared.vermagic_notes {
                msg.push_str(&format!("; {note}"));
            }
        }
        let markers = verdict::markers(&console_log);
        tracing::info!(
            release = %req.kernel_release,
            arch = %req.arch.as_str(),
            accel = if kvm { "kvm" } else { "tcg" },
            boot_secs = run.elapsed.as_secs_f64(),
            ok = result.is_ok(),
            "boot test finished"
        );
        BootOutcome {
            verdict: result,
            console_log,
            load_order: prepared
                .plan
                .iter()
                .map(|p| LoadStep {
                    name: p.name.clone(),
                    in_tree: p.in_tree,
                })
                .collect(),
            modules_loaded: markers.loaded,
            accel: if kvm { "kvm" } else { "tcg" },
            kernel_package: Some(prepared.kernel.package.clone()),
            taint: markers.taint,
            durations: BootDurations {
                prepare_secs: prepare.as_secs_f64(),
                boot_secs: run.elapsed.as_secs_f64(),
            },
        }
    }

    async fn prepare(&self, req: &BootRequest) -> Result<Prepared, Failure> {
        let suite = req.suite.clone().ok_or_else(|| {
            (
                FailureClass::BootFailed,
                "the variant has no apt suite: boot tests find the kernel image through the Debian index"
                    .to_string(),
            )
        })?;
        let preset = req.packages.as_ref();
        let (kernel, busybox) = tokio::join!(
            self.kernel(
                req.arch,
                &req.kernel_release,
                &suite,
                req.package_version.as_deref(),
                preset.map(|p| (&p.kernel, p.kernel_parts.as_slice())),
            ),
            self.busybox(req.arch, &suite, preset.map(|p| &p.busybox))
        );
        let (kernel, busybox) = (kernel?, busybox?);
        let modules = req.modules.clone();
        let check = req.check_script.clone();
        let work_root = self.cache_dir.join("boot/work");
        let arch = req.arch;
        let release = req.kernel_release.clone();
        let kernel2 = kernel.clone();
        tokio::task::spawn_blocking(move || {
            build_initramfs(
                &kernel2,
                arch,
                &release,
                &busybox,
                &modules,
                check.as_deref(),
                &work_root,
            )
        })
        .await
        .map_err(|e| (FailureClass::Internal, e.to_string()))?
        .map(|(workdir, initrd, plan, vermagic_notes)| Prepared {
            kernel,
            workdir,
            initrd,
            plan,
            vermagic_notes,
        })
    }

    async fn kernel(
        &self,
        arch: Arch,
        release: &str,
        suite: &str,
        version: Option<&str>,
        preset: Option<(&LocalPackage, &[LocalPackage])>,
    ) -> Result<Arc<Kernel>, Failure> {
        let cell = {
            let mut map = self.kernels.lock().expect("kernel map poisoned");
            map.entry((arch, release.to_string(), version.map(str::to_string)))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| async {
            let locals: Vec<LocalPackage> = match preset {
                Some((image, parts)) => std::iter::once(image).chain(parts).cloned().collect(),
                None => {
                    let downloads = packages::kernel_image(
                        &self.indexes,
                        suite,
                        arch.deb_arch(),
                        release,
                        version,
                    )
                    .await
                    .map_err(|e| (FailureClass::DownloadFailed, e))?;
                    let mut locals = Vec::new();
                    for d in &downloads {
                        locals.push(self.fetch(d).await?);
                    }
                    locals
                }
            };
            let mut trees = Vec::new();
            for local in &locals {
                trees.push(self.extract(local).await?);
            }
            // The image's digest names the decompressed modules: one directory per image upload.
            let sha256 = locals[0].sha256.clone();
            let release = release.to_string();
            let plain_dir = self.cache_dir.join("boot/modules").join(&sha256);
            let package = locals
                .iter()
                .map(|l| l.file_name.as_str())
                .collect::<Vec<_>>()
                .join(" + ");
            tokio::task::spawn_blocking(move || {
                // Up to Linux 6: /boot/vmlinuz-<release> and /lib/modules/<release> in the image package;
                // from 7 on the kernel, the modules and the config are in packages of their own, under
                // /usr/lib/modules/<release>/.
                let find = |paths: &[String]| {
                    trees
                        .iter()
                        .flat_map(|t| paths.iter().map(move |p| t.join(p)))
                        .find(|p| p.exists())
                };
                let vmlinuz = find(&[
                    format!("boot/vmlinuz-{release}"),
                    format!("usr/lib/modules/{release}/vmlinuz"),
                    format!("lib/modules/{release}/vmlinuz"),
                ])
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    (
                        FailureClass::BootFailed,
                        format!("{package} has no boot/vmlinuz-{release} or modules/{release}/vmlinuz"),
                    )
                })?;
                let modules_dir = find(&[
                    format!("lib/modules/{release}/kernel"),
                    format!("usr/lib/modules/{release}/kernel"),
                ])
                .and_then(|k| k.parent().map(Path::to_path_buf))
                .filter(|d| d.is_dir())
                .ok_or_else(|| {
                    (
                        FailureClass::BootFailed,
                        format!("{package} has no lib/modules/{release}/kernel"),
                    )
                })?;
                let config = find(&[
                    format!("boot/config-{release}"),
                    format!("usr/lib/modules/{release}/config"),
                    format!("lib/modules/{release}/config"),
                ])
                .unwrap_or_else(|| PathBuf::from(format!("boot/config-{release}")));
                let vmlinuz = match direct_boot_image(arch, &vmlinuz, &config, &plain_dir) {
                    Ok(Some(elf)) => elf,
                    Ok(None) => vmlinuz,
                    Err(e) => {
                        tracing::warn!(image = %vmlinuz.display(), "cannot unpack the kernel for direct boot ({e}); booting the bzImage");
                        vmlinuz
                    }
                };
                let modules = InTreeModules::index(&modules_dir).map_err(|e| {
                    (
                        FailureClass::Internal,
                        format!("indexing {}: {e}", modules_dir.display()),
                    )
                })?;
                Ok(Arc::new(Kernel {
                    vmlinuz,
                    modules,
                    plain_dir,
                    package,
                }))
            })
            .await
            .map_err(|e| (FailureClass::Internal, e.to_string()))?
        })
        .await
        .clone()
    }

    async fn busybox(
        &self,
        arch: Arch,
        suite: &str,
        preset: Option<&LocalPackage>,
    ) -> Result<Arc<Vec<u8>>, Failure> {
        let base = packages::base_suite(suite).to_string();
        let cell = {
            let mut map = self.busyboxes.lock().expect("busybox map poisoned");
            map.entry((arch, base.clone())).or_default().clone()
        };
        cell.get_or_init(|| async {
            let local = match preset {
                Some(p) => p.clone(),
                None => {
                    let download = packages::busybox(&self.indexes, &base, arch.deb_arch())
                        .await
                        .map_err(|e| (FailureClass::DownloadFailed, e))?;
                    self.fetch(&download).await?
                }
            };
            let tree = self.extract(&local).await?;
            ["bin/busybox", "usr/bin/busybox"]
                .iter()
                .map(|p| tree.join(p))
                .find(|p| p.is_file())
                .and_then(|p| std::fs::read(p).ok())
                .map(Arc::new)
                .ok_or_else(|| {
                    (
                        FailureClass::BootFailed,
                        format!("{} has no bin/busybox", local.file_name),
                    )
                })
        })
        .await
        .clone()
    }

    /// The packages a boot of `req` needs, found through the mirror's index and fetched into the cache
    /// (verified): what a planner puts into a plan so that its workers boot-test offline.
    pub async fn packages_for(&self, req: &BootRequest) -> Result<BootPackages, Failure> {
        let suite = req.suite.clone().ok_or_else(|| {
            (
                FailureClass::BootFailed,
                "the variant has no apt suite: boot tests find the kernel image through the Debian index"
                    .to_string(),
            )
        })?;
        let deb_arch = req.arch.deb_arch();
        let kernel = packages::kernel_image(
            &self.indexes,
            &suite,
            deb_arch,
            &req.kernel_release,
            req.package_version.as_deref(),
        )
        .await
        .map_err(|e| (FailureClass::DownloadFailed, e))?;
        let mut kernel_parts = Vec::new();
        for part in &kernel[1..] {
            kernel_parts.push(self.fetch(part).await?);
        }
        let busybox = packages::busybox(&self.indexes, packages::base_suite(&suite), deb_arch)
            .await
            .map_err(|e| (FailureClass::DownloadFailed, e))?;
        Ok(BootPackages {
            kernel: self.fetch(&kernel[0]).await?,
            kernel_parts,
            busybox: self.fetch(&busybox).await?,
        })
    }

    async fn fetch(&self, download: &Download) -> Result<LocalPackage, Failure> {
        let fetched = self.fetcher.fetch(download).await.map_err(|e| {
            (
                FailureClass::DownloadFailed,
                format!("{}: {e}", download.file_name),
            )
        })?;
        Ok(LocalPackage {
            file_name: download.file_name.clone(),
            path: fetched.path,
            sha256: fetched.sha256,
            size: fetched.size,
        })
    }

    /// The package's tree, extracted once into the shared cache.
    async fn extract(&self, package: &LocalPackage) -> Result<PathBuf, Failure> {
        let trees = self.trees.clone();
        let (path, sha) = (package.path.clone(), package.sha256.clone());
        tokio::task::spawn_blocking(move || trees.tree(&path, &sha))
            .await
            .map_err(|e| (FailureClass::Internal, e.to_string()))?
            .map_err(|e| {
                (
                    FailureClass::ExtractFailed,
                    format!("{}: {e}", package.file_name),
                )
            })
    }
}

struct Prepared {
    kernel: Arc<Kernel>,
    /// Holds the initramfs; removed when dropped.
    workdir: tempfile::TempDir,
    initrd: PathBuf,
    plan: Vec<PlannedModule>,
    /// Built modules whose vermagic names another kernel release, for load failure messages.
    vermagic_notes: Vec<String>,
}

/// Plans the load order and writes the initramfs into a fresh directory under `work_root`.
type Initramfs = (tempfile::TempDir, PathBuf, Vec<PlannedModule>, Vec<String>);

fn build_initramfs(
    kernel: &Kernel,
    arch: Arch,
    release: &str,
    busybox: &[u8],
    built: &[PathBuf],
    check: Option<&[u8]>,
    work_root: &Path,
) -> Result<Initramfs, Failure> {
    let internal =
        |what: &str, e: &dyn std::fmt::Display| (FailureClass::Internal, format!("{what}: {e}"));
    let mut built_deps = Vec::new();
    let mut vermagic_notes = Vec::new();
    for path in built {
        let info = kmf_verify::read_module(path).map_err(|e| {
            (
                FailureClass::LoadFailed,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        if info.elf_machine != arch.elf_machine() {
            return Err((
                FailureClass::LoadFailed,
                format!(
                    "{} is for {}, not {}",
                    path.display(),
                    kmf_verify::machine_name(info.elf_machine),
                    arch.as_str()
                ),
            ));
        }
        if info.vermagic.split_whitespace().next() != Some(release) {
            vermagic_notes.push(format!(
                "{} has vermagic '{}', the kernel is {release}",
                info.name,
                info.vermagic.trim()
            ));
        }
        built_deps.push(ModuleDeps {
            name: info.name,
            depends: info.depends,
            path: path.clone(),
        });
    }
    let plan = modules::plan(&built_deps, |name| {
        let Some(src) = kernel.modules.get(name) else {
            return Ok(None);
        };
        let plain = plain_module(kernel, name, src).map_err(|e| format!("{name}: {e}"))?;
        let info = kmf_verify::read_module(&plain).map_err(|e| format!("{name}: {e}"))?;
        Ok(Some(ModuleDeps {
            name: name.to_string(),
            depends: info.depends,
            path: plain,
        }))
    })
    .map_err(|e| (FailureClass::LoadFailed, e))?;

    let mut init_modules = Vec::new();
    for step in &plan {
        let data = std::fs::read(&step.path)
            .map_err(|e| internal(&step.path.display().to_string(), &e))?;
        init_modules.push(initramfs::InitModule {
            name: step.name.clone(),
            data,
        });
    }
    std::fs::create_dir_all(work_root)
        .map_err(|e| internal(&work_root.display().to_string(), &e))?;
    let workdir = tempfile::Builder::new()
        .prefix("boot-")
        .tempdir_in(work_root)
        .map_err(|e| internal(&work_root.display().to_string(), &e))?;
    let initrd = workdir.path().join("initrd.img");
    initramfs::write_initramfs(&initrd, busybox, &init_modules, check)
        .map_err(|e| internal("writing the initramfs", &e))?;
    Ok((workdir, initrd, plan, vermagic_notes))
}

/// On x86_64, the ELF `vmlinux` inside a bzImage whose kernel supports PVH entry (`CONFIG_PVH=y`),
/// unpacked once into `dir`: QEMU loads it directly, skipping the firmware and the in-guest
/// decompression, which take seconds under TCG. `None` when not applicable.
fn direct_boot_image(
    arch: Arch,
    bzimage: &Path,
    config: &Path,
    dir: &Path,
) -> std::io::Result<Option<PathBuf>> {
    if arch != Arch::X86_64 {
        return Ok(None);
    }
    let pvh = std::fs::read_to_string(config)
        .map(|c| c.lines().any(|l| l.trim() == "CONFIG_PVH=y"))
        .unwrap_or(false);
    if !pvh {
        return Ok(None);
    }
    let target = dir.join("vmlinux");
    if target.is_file() {
        return Ok(Some(target));
    }
    let data = std::fs::read(bzimage)?;
    let Some(elf) = modules::unpack_bzimage(&data)? else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), &elf)?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(Some(target))
}

/// The decompressed copy of an in-tree module, made once per image (temp file + rename).
fn plain_module(kernel: &Kernel, name: &str, src: &Path) -> std::io::Result<PathBuf> {
    let target = kernel.plain_dir.join(format!("{name}.ko"));
    if target.is_file() {
        return Ok(target);
    }
    std::fs::create_dir_all(&kernel.plain_dir)?;
    let data = modules::read_decompressed(src)?;
    let tmp = tempfile::NamedTempFile::new_in(&kernel.plain_dir)?;
    std::fs::write(tmp.path(), &data)?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(target)
}

/// How many boots to run at once: one per core, and as many as fit in the available memory with
/// `memory_mib` per guest plus QEMU's own overhead.
pub fn default_jobs(memory_mib: u32) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let available_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let per_guest_kib = (u64::from(memory_mib) + 256) * 1024;
    let by_memory = available_kib.map_or(cores, |kib| (kib / per_guest_kib).max(1) as usize);
    cores.min(by_memory).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_bounded() {
        let j = default_jobs(512);
        assert!(j >= 1);
        assert!(j <= std::thread::available_parallelism().unwrap().get());
        assert_eq!(default_jobs(u32::MAX / 2), 1);
    }
}
