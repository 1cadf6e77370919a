//! One variant's module build: kbuild against the extracted header tree, inside a sandbox.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kmf_sandbox::{ExitKind, Limits, Mount, Sandbox, SandboxSpec};
use kmf_types::published::PublishedModule;
use kmf_types::{names, Arch, FailureClass};
use kmf_verify::ModuleInfo;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::applicability::{KernelConfig, KernelFacts};
use crate::dkms::{self, BuildContext, Decision, DkmsError, DkmsModule, DkmsVariables};
use crate::untrusted::{Beneath, UntrustedError};
use crate::workdir::WorkDir;
use crate::{BuildError, ProjectConfig};

/// Where the writable build directory appears inside the sandbox.
pub const SANDBOX_BUILD_DIR: &str = "/build";

/// The kernel build tree found among the extracted header packages.
#[derive(Debug, Clone, Serialize)]
pub struct KernelTree {
    /// On the host, inside one package's extraction root.
    pub host_dir: PathBuf,
    /// The same directory as the build sees it (`/usr/src/linux-headers-6.1.0-56-amd64`).
    pub sandbox_dir: PathBuf,
    /// `uname -r` of the kernel, from the tree's `utsrelease.h` (kernel-crawler's Debian names differ).
    pub release: String,
    /// `CONFIG_CC_VERSION_TEXT`.
    pub cc_version_text: Option<String>,
}

/// Looks through extracted package roots for the directory kbuild runs in: the one with the kernel's
/// `.config` and a Makefile, under `usr/src/*` (Debian's flavour headers beside `-common`, Ubuntu's
/// `linux-headers-<abi>-<flavour>` beside `linux-headers-<abi>`) or `usr/src/kernels/*` (RPM
/// distributions' kernel-devel). The Makefile may be a symlink into another package (Ubuntu's flavour
/// directory links most of the tree, Makefile included, into the shared package): it is resolved
/// through all the roots merged, as the sandbox shows them.
pub fn find_kernel_tree(package_roots: &[PathBuf]) -> Result<KernelTree, BuildError> {
    let mut found = Vec::new();
    for root in package_roots {
        for base in ["usr/src", "usr/src/kernels"] {
            let Ok(rd) = std::fs::read_dir(root.join(base)) else {
                continue;
            };
            for entry in rd.flatten() {
                let dir = entry.path();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if !is_dir || !dir.join(".config").is_file() {
                    continue;
                }
                let in_sandbox = Path::new("/").join(base).join(entry.file_name());
                let makefile = resolve_merged(package_roots, &in_sandbox.join("Makefile"));
                if makefile.is_some_and(|m| m.is_file()) {
                    found.push((root.clone(), dir));
                }
            }
        }
    }
    found.sort();
    let (root, dir) = found.into_iter().next().ok_or(BuildError::NoKernelTree)?;
    let config = std::fs::read_to_string(dir.join(".config"))
        .map_err(BuildError::io("read", dir.join(".config")))?;
    let release = read_release(&dir).ok_or(BuildError::NoKernelTree)?;
    let rel = dir.strip_prefix(&root).expect("found under root");
    Ok(KernelTree {
        sandbox_dir: Path::new("/").join(rel),
        host_dir: dir,
        release,
        cc_version_text: crate::toolchain::cc_version_text(&config),
    })
}

/// The host path of `path` (absolute, as the sandbox sees it) in the merged view of the package roots,
/// following symlinks the way the sandbox will (a later root wins a clash). `None` when it leads to
/// nothing in the packages (the builder's own files are not looked at).
pub fn resolve_merged(roots: &[PathBuf], path: &Path) -> Option<PathBuf> {
    use std::collections::VecDeque;
    use std::path::Component;
    let mut pending: VecDeque<std::ffi::OsString> = VecDeque::new();
    let push_front = |pending: &mut VecDeque<_>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => pending.push_front(n.to_os_string()),
                Component::ParentDir => pending.push_front("..".into()),
                _ => {}
            }
        }
    };
    push_front(&mut pending, path);
    let mut done = PathBuf::new();
    let mut budget = 40u32;
    let mut host = None;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let candidate = done.join(&c);
        let hit = roots.iter().rev().find_map(|r| {
            let p = r.join(&candidate);
            std::fs::symlink_metadata(&p).ok().map(|m| (p, m))
        })?;
        if hit.1.file_type().is_symlink() {
            budget = budget.checked_sub(1)?;
            let target = std::fs::read_link(&hit.0).ok()?;
            if target.is_absolute() {
                done = PathBuf::new();
            }
            push_front(&mut pending, &target);
            continue;
        }
        done = candidate;
        host = Some(hit.0);
    }
    host
}

/// The ELF machine (`e_machine`) of an executable.
fn elf_machine(path: &Path) -> Option<u16> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if head[..4] != *b"\x7fELF" {
        return None;
    }
    let bytes = [head[18], head[19]];
    Some(match head[5] {
        2 => u16::from_be_bytes(bytes),
        _ => u16::from_le_bytes(bytes),
    })
}

fn arch_of_machine(machine: u16) -> Option<Arch> {
    match machine {
        62 => Some(Arch::X86_64),
        183 => Some(Arch::Aarch64),
        _ => None,
    }
}

/// kbuild runs the tree's host programs (`scripts/basic/fixdep`, `scripts/mod/modpost`, ...) on the
/// build machine. Debian ships them in `linux-kbuild`, which kmodfarm takes from the build host's
/// architecture, so Debian cross-builds. RPM distributions' kernel-devel and Ubuntu's flavour headers
/// carry them built for the kernel's own architecture: those need a worker of that architecture (or
/// the tools rebuilt for the host, which kmodfarm does not do). This refuses such a build up front, with
/// a message saying so, instead of letting make fail with "cannot execute binary file".
pub fn check_host_tools(
    package_roots: &[PathBuf],
    tree: &KernelTree,
    family: &str,
    target: Arch,
    host: Option<Arch>,
) -> Result<(), BuildError> {
    let Some(host) = host else { return Ok(()) };
    for tool in ["scripts/basic/fixdep", "scripts/mod/modpost"] {
        let Some(path) = resolve_merged(package_roots, &tree.sandbox_dir.join(tool)) else {
            continue;
        };
        let Some(arch) = elf_machine(&path).and_then(arch_of_machine) else {
            continue;
        };
        if arch != host {
            return Err(BuildError::HostToolsForeign {
                family: family.to_string(),
                target,
                host,
                tool: tool.to_string(),
                tool_arch: arch,
            });
        }
    }
    Ok(())
}

fn read_release(dir: &Path) -> Option<String> {
    if let Ok(h) = std::fs::read_to_string(dir.join("include/generated/utsrelease.h")) {
        if let Some(r) = h
            .lines()
            .find_map(|l| l.strip_prefix("#define UTS_RELEASE "))
        {
            return Some(r.trim().trim_matches('"').to_string());
        }
    }
    std::fs::read_to_string(dir.join("include/config/kernel.release"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Limits on what a build leaves behind; the operator's, never the project's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes the build directory may hold (source copy, objects, modules).
    pub disk_bytes: u64,
    /// Bytes of each module.
    pub module_bytes: u64,
    /// Modules of one variant.
    pub modules: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            disk_bytes: 4 << 30,
            module_bytes: 256 << 20,
            modules: 256,
        }
    }
}

/// Everything one kbuild needs.
pub struct KbuildJob<'a> {
    pub arch: Arch,
    pub tree: &'a KernelTree,
    pub project: &'a ProjectConfig,
    /// The builder's root filesystem.
    pub rootfs: PathBuf,
    /// Extracted header package roots, merged over the rootfs.
    pub package_roots: Vec<PathBuf>,
    /// This variant's private writable directory; becomes `/build` in the sandbox.
    pub work: &'a WorkDir,
    /// Where the modules are copied to once the sandbox is gone: kmodfarm's own, out of every build's reach.
    pub staging: &'a Path,
    pub log_path: PathBuf,
    /// `timeout` and `max_log_bytes` are for the whole build, all steps together.
    pub limits: Limits,
    pub output_limits: OutputLimits,
    pub make_jobs: usize,
    pub gcc_major: u32,
    /// Fixed timestamp for reproducible modules.
    pub source_date_epoch: u64,
}

/// A built and verified module: what its published record says ([`PublishedModule`]), plus where the
/// staged copy is on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltModule {
    pub file_name: String,
    /// Path relative to the project source root.
    pub relative_path: String,
    /// The staged copy on the host (never the build directory).
    #[serde(skip)]
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub modinfo: ModuleInfo,
    /// Where a host installs it, relative to `/lib/modules/<release>/` (`updates/dkms/hello.ko`); `None`
    /// for the default (see [`kmf_types::published::DEFAULT_INSTALL_DIR`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

impl From<&BuiltModule> for PublishedModule {
    fn from(m: &BuiltModule) -> PublishedModule {
        PublishedModule {
            file_name: m.file_name.clone(),
            relative_path: m.relative_path.clone(),
            sha256: m.sha256.clone(),
            size: Some(m.size),
            modinfo: m.modinfo.clone(),
            destination: m.destination.clone(),
        }
    }
}

#[derive(Debug)]
pub struct KbuildOutput {
    pub modules: Vec<BuiltModule>,
    pub failure: Option<(FailureClass, String)>,
    /// The project's requirements rule the kernel out (the sentence says why): nothing was compiled.
    pub excluded: Option<String>,
    pub duration: Duration,
}

impl KbuildOutput {
    fn excluded(why: String, start: Instant) -> KbuildOutput {
        KbuildOutput {
            modules: vec![],
            failure: None,
            excluded: Some(why),
            duration: start.elapsed(),
        }
    }
}

/// How often the disk use of a work directory that is not a tmpfs of its own is measured.
const DISK_POLL: Duration = Duration::from_millis(500);

/// Copies the source, runs each kbuild step in the sandbox (or, for a DKMS package, evaluates its
/// `dkms.conf` and runs the build it describes), then copies the modules out and verifies them. A kernel
/// the project's requirements rule out comes back in [`KbuildOutput::excluded`] before anything is
/// compiled. Build failures come back in [`KbuildOutput::failure`] with the log kept; `Err` is for local
/// problems.
pub async fn run_kbuild(
    sandbox: &dyn Sandbox,
    job: &KbuildJob<'_>,
) -> Result<KbuildOutput, BuildError> {
    let start = Instant::now();
    let work_dir = job.work.path().to_path_buf();
    let src = work_dir.join("src");
    let mut log = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&job.log_path)
        .map_err(BuildError::io("create", &job.log_path))?;
    let _ = writeln!(
        log,
        "# kmodfarm build: {} for {} ({}), kernel tree {}\n\
         # kmodfarm: lines from the build start with `| `; lines without it are kmodfarm's",
        job.project.name(),
        job.tree.release,
        job.arch,
        job.tree.sandbox_dir.display()
    );
    let facts = KernelFacts {
        release: job.tree.release.clone(),
        arch: job.arch,
        config: KernelConfig::of_tree(&job.tree.host_dir),
    };
    if let Some(why) = job.project.requirements().exclusion(&facts) {
        let _ = writeln!(log, "# kmodfarm: excluded: kmodfarm.toml: {why}");
        return Ok(KbuildOutput::excluded(
            format!("kmodfarm.toml: {why}"),
            start,
        ));
    }
    copy_source(&job.project.source_dir(), &src)?;
    // `--sandbox none` has no mount namespace: the build sees the host path of the work dir.
    let build_root = if sandbox.name() == "none" {
        work_dir.clone()
    } else {
        PathBuf::from(SANDBOX_BUILD_DIR)
    };
    let mut runner = StepRunner {
        sandbox,
        job,
        start,
        log,
        log_used: 0,
        work_dir: work_dir.clone(),
        build_root: build_root.clone(),
    };
    let (runs, wanted) = if job.project.uses_dkms() {
        match dkms_runs(&mut runner, &facts).await? {
            DkmsPlan::Runs(runs, wanted) => (runs, Some(wanted)),
            DkmsPlan::Excluded(why) => {
                let _ = writeln!(runner.log, "# kmodfarm: excluded: {why}");
                return Ok(KbuildOutput::excluded(why, start));
            }
            DkmsPlan::Failed(failure) => return runner.fail(failure),
        }
    } else {
        (kbuild_runs(job, &build_root), None)
    };
    for (i, run) in runs.iter().enumerate() {
        if let Some(failure) = runner.run(i, run).await? {
            return runner.fail(failure);
        }
    }

    // Every process of the build is gone (each run ends with its whole tree killed); only now is its
    // directory read, through links never, and into copies of kmodfarm's own.
    let (modules, failure) = match collect(job, &work_dir, wanted.as_ref()) {
        Ok(modules) => (modules, None),
        Err(failure) => (vec![], Some(failure)),
    };
    if let Some((class, msg)) = &failure {
        let _ = writeln!(runner.log, "# kmodfarm: {class}: {msg}");
    }
    Ok(KbuildOutput {
        modules,
        failure,
        excluded: None,
        duration: start.elapsed(),
    })
}

/// One command of a build in the sandbox.
struct SandboxRun {
    /// What the log calls it (`make M=/build/src/producer`).
    title: String,
    argv: Vec<String>,
    /// Working directory, relative to the source copy (checked to be a real directory before the run).
    dir: String,
    /// Added to the build environment.
    env: Vec<(String, String)>,
    /// A shorter time limit than what is left of the build's.
    timeout: Option<Duration>,
}

/// The kbuild runs of a project without `dkms.conf`: one `make -C <tree> M=<dir> modules` per step.
fn kbuild_runs(job: &KbuildJob<'_>, build_root: &Path) -> Vec<SandboxRun> {
    let sandbox_src = build_root.join("src");
    let cross = Arch::host() != Some(job.arch);
    job.project
        .steps()
        .iter()
        .map(|step| {
            let step_dir = sandbox_src.join(&step.dir);
            let mut argv = vec![
                "make".to_string(),
                "-C".into(),
                job.tree.sandbox_dir.display().to_string(),
                format!("M={}", step_dir.display()),
            ];
            argv.extend(toolchain_make_args(job, cross));
            if !step.extra_symbols.is_empty() {
                let files: Vec<String> = step
                    .extra_symbols
                    .iter()
                    .map(|d| {
                        sandbox_src
                            .join(d)
                            .join("Module.symvers")
                            .display()
                            .to_string()
                    })
                    .collect();
                argv.push(format!("KBUILD_EXTRA_SYMBOLS={}", files.join(" ")));
            }
            argv.extend(job.project.build.make_args.iter().cloned());
            argv.extend(step.make_args.iter().cloned());
            argv.push("modules".into());
            SandboxRun {
                title: format!("make M={}", step_dir.display()),
                argv,
                dir: step.dir.clone(),
                env: vec![],
                timeout: None,
            }
        })
        .collect()
}

/// `-jN ARCH=… [CROSS_COMPILE=…] CC=…`: the same toolchain for every build of the variant.
fn toolchain_make_args(job: &KbuildJob<'_>, cross: bool) -> Vec<String> {
    let mut args = vec![
        format!("-j{}", job.make_jobs.max(1)),
        format!("ARCH={}", job.arch.kernel_arch()),
    ];
    if cross {
        args.push(format!("CROSS_COMPILE={}-", job.arch.gnu_triplet()));
    }
    // Debian's headers name the compiler `$(CROSS_COMPILE)gcc-N` themselves; other trees use plain `gcc`.
    args.push(format!(
        "CC={}gcc-{}",
        if cross {
            format!("{}-", job.arch.gnu_triplet())
        } else {
            String::new()
        },
        job.gcc_major
    ));
    args
}

/// How long `dkms.conf` may take to evaluate (it only sets variables; DKMS gives it no limit).
const DKMS_EVAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the evaluation writes its records, in the work directory.
const DKMS_RECORDS: &str = "dkms-variables";

enum DkmsPlan {
    Runs(Vec<SandboxRun>, Vec<DkmsModule>),
    Excluded(String),
    Failed((FailureClass, String)),
}

/// Evaluates `dkms.conf` in the sandbox for this kernel and turns it into the build's run, or an exclusion.
async fn dkms_runs(
    runner: &mut StepRunner<'_, '_>,
    facts: &KernelFacts,
) -> Result<DkmsPlan, BuildError> {
    let job = runner.job;
    let name = job.project.name();
    let version = job.project.dkms_version();
    // DKMS builds in `$dkms_tree/<name>/<version>/build` and keeps the source in
    // `$source_tree/<name>-<version>`; both lead to the source copy here, inside the writable directory.
    let dkms_tree = runner.build_root.join("dkms");
    let build_link = runner.work_dir.join("dkms").join(&name).join(&version);
    std::fs::create_dir_all(&build_link).map_err(BuildError::io("create", &build_link))?;
    std::os::unix::fs::symlink("../../../src", build_link.join("build"))
        .map_err(BuildError::io("link", &build_link))?;
    let source_tree = runner.build_root.join("source");
    let source_dir = runner.work_dir.join("source");
    std::fs::create_dir_all(&source_dir).map_err(BuildError::io("create", &source_dir))?;
    std::os::unix::fs::symlink("../src", source_dir.join(format!("{name}-{version}")))
        .map_err(BuildError::io("link", &source_dir))?;

    // Debian's and Ubuntu's header packages carry the `/lib/modules/<release>/build` link DKMS expects;
    // an RPM distribution's kernel-devel does not (its kernel package does): the tree itself then.
    // (trixie's packages have it under /usr/lib, which the merged-/usr builder shows as /lib).
    let modules_build = format!("/lib/modules/{}/build", job.tree.release);
    let has_link = [modules_build.clone(), format!("/usr{modules_build}")]
        .iter()
        .any(|p| resolve_merged(&job.package_roots, Path::new(p)).is_some());
    let kernel_source_dir = if has_link {
        modules_build
    } else {
        job.tree.sandbox_dir.display().to_string()
    };
    let kernel_config = if job.tree.host_dir.join("include/config/auto.conf").is_file() {
        format!("{kernel_source_dir}/include/config/auto.conf")
    } else {
        format!("{kernel_source_dir}/.config")
    };
    let dkms_build_dir = dkms_tree.join(&name).join(&version).join("build");
    let dkms_args = vec![
        job.tree.release.clone(),
        job.arch.as_str().to_string(),
        kernel_source_dir.clone(),
        kernel_config,
        dkms_tree.display().to_string(),
        source_tree.display().to_string(),
        "/lib/modules".to_string(),
        name.clone(),
        version.clone(),
    ];
    let records = runner.build_root.join(DKMS_RECORDS);
    let mut argv = vec![
        "bash".to_string(),
        "-c".into(),
        dkms::eval_harness(),
        "kmodfarm-dkms-eval".into(),
    ];
    argv.extend(dkms_args.iter().cloned());
    argv.push(records.display().to_string());
    argv.push(job.project.dkms_conf_in_source());
    let eval = SandboxRun {
        title: "evaluating dkms.conf".into(),
        argv,
        dir: ".".into(),
        env: vec![],
        timeout: Some(DKMS_EVAL_TIMEOUT),
    };
    if let Some((class, msg)) = runner.run(0, &eval).await? {
        let class = match class {
            FailureClass::CompileError => FailureClass::ConfigError,
            other => other,
        };
        return Ok(DkmsPlan::Failed((
            class,
            format!("evaluating dkms.conf: {msg}"),
        )));
    }
    let conf_error = |e: DkmsError| DkmsPlan::Failed((FailureClass::ConfigError, e.to_string()));
    let bytes = match Beneath::open(&runner.work_dir)
        .and_then(|b| b.read(Path::new(DKMS_RECORDS), dkms::MAX_DKMS_BYTES))
    {
        Ok(bytes) => bytes,
        Err(e) => return Ok(conf_error(DkmsError::Unfinished(e.to_string()))),
    };
    let variables = match DkmsVariables::parse(&bytes) {
        Ok(v) => v,
        Err(e) => return Ok(conf_error(e)),
    };
    let cross = Arch::host() != Some(job.arch);
    let mut make_prefix = format!("make KERNELRELEASE={}", job.tree.release);
    for a in toolchain_make_args(job, cross) {
        make_prefix.push(' ');
        make_prefix.push_str(&a);
    }
    let ctx = BuildContext {
        kernel_source_dir,
        dkms_build_dir: dkms_build_dir.display().to_string(),
        make_prefix,
    };
    let build = match variables.decide(facts, &ctx) {
        Ok(Decision::Excluded(why)) => return Ok(DkmsPlan::Excluded(why)),
        Ok(Decision::Build(b)) => *b,
        Err(e) => return Ok(conf_error(e)),
    };
    if let (true, Some(v)) = (job.project.version_evaluated, variables.package().1) {
        if v != version {
            return Ok(conf_error(DkmsError::Invalid {
                variable: "PACKAGE_VERSION".into(),
                reason: format!(
                    "evaluates to {} for this kernel and to {} before any kernel, which the driver is \
                     stored under: a version that depends on the kernel needs one given with \
                     --driver-version or [driver] version",
                    names::printable(v),
                    names::printable(&version)
                ),
            }));
        }
    }
    if let (Some(n), Some(v)) = variables.package() {
        if n != name || v != version {
            let _ = writeln!(
                runner.log,
                "# kmodfarm: dkms.conf evaluates to {} {} for this kernel; the build uses {name} {version}",
                names::printable(n),
                names::printable(v)
            );
        }
    }
    let strip: Vec<String> = build
        .modules
        .iter()
        .filter(|m| m.strip)
        .map(|m| m.built_path())
        .collect();
    let strip_tool = if cross {
        format!("{}-strip", job.arch.gnu_triplet())
    } else {
        "strip".to_string()
    };
    let mut argv = vec![
        "bash".to_string(),
        "-c".into(),
        dkms::BUILD_HARNESS.to_string(),
        "kmodfarm-dkms-build".into(),
    ];
    argv.extend(dkms_args);
    argv.extend([
        build.make.clone(),
        build.pre_build.clone().unwrap_or_default(),
        build.post_build.clone().unwrap_or_default(),
        build.patches.join("\n"),
        strip.join("\n"),
        strip_tool,
    ]);
    let mut env = vec![("ARCH".to_string(), job.arch.kernel_arch().to_string())];
    if cross {
        env.push((
            "CROSS_COMPILE".into(),
            format!("{}-", job.arch.gnu_triplet()),
        ));
    }
    let run = SandboxRun {
        title: format!("dkms build: {}", build.make),
        argv,
        dir: ".".into(),
        env,
        timeout: None,
    };
    Ok(DkmsPlan::Runs(vec![run], build.modules))
}

/// Runs a build's commands one after another in the sandbox, with one log and one budget of time and
/// log bytes.
struct StepRunner<'s, 'j> {
    sandbox: &'s dyn Sandbox,
    job: &'s KbuildJob<'j>,
    start: Instant,
    log: std::fs::File,
    log_used: u64,
    work_dir: PathBuf,
    build_root: PathBuf,
}

impl StepRunner<'_, '_> {
    fn fail(&mut self, failure: (FailureClass, String)) -> Result<KbuildOutput, BuildError> {
        let _ = writeln!(self.log, "# kmodfarm: {}: {}", failure.0, failure.1);
        Ok(KbuildOutput {
            modules: vec![],
            failure: Some(failure),
            excluded: None,
            duration: self.start.elapsed(),
        })
    }

    /// Runs `run` as step `i` (0-based); `Some` is why the build failed.
    async fn run(
        &mut self,
        i: usize,
        run: &SandboxRun,
    ) -> Result<Option<(FailureClass, String)>, BuildError> {
        let job = self.job;
        let n = i + 1;
        // An earlier run may have turned this run's directory into a link: refuse it before the sandbox
        // (or the container engine, which would follow it on the host) is asked to go there.
        let beneath = Beneath::open(&self.work_dir).map_err(|e| BuildError::Io {
            op: "open",
            path: self.work_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Err(e) = beneath.require_dir(&Path::new("src").join(&run.dir)) {
            let class = if e.is_content() {
                FailureClass::UnsafeOutput
            } else {
                FailureClass::Internal
            };
            return Ok(Some((class, format!("step {n}'s directory: {e}"))));
        }
        let mut remaining_time = job.limits.timeout.saturating_sub(self.start.elapsed());
        if let Some(cap) = run.timeout {
            remaining_time = remaining_time.min(cap);
        }
        let remaining_log = job.limits.max_log_bytes.saturating_sub(self.log_used);
        if remaining_time.is_zero() {
            return Ok(Some((
                FailureClass::Timeout,
                format!(
                    "the build ran out of its {}s before step {n}",
                    job.limits.timeout.as_secs()
                ),
            )));
        }
        let cwd = self.build_root.join("src").join(&run.dir);
        let mut env = build_env(&self.build_root, job.source_date_epoch);
        env.extend(run.env.iter().cloned());
        // Outside the writable mount: the build must not be able to swap the log for a symlink.
        let step_log = job.log_path.with_extension(format!("step-{i}.log"));
        let spec = SandboxSpec {
            rootfs: job.rootfs.clone(),
            overlays: job.package_roots.clone(),
            ro_mounts: vec![],
            rw_mounts: vec![Mount {
                src: self.work_dir.clone(),
                dest: PathBuf::from(SANDBOX_BUILD_DIR),
            }],
            argv: run.argv.clone(),
            env,
            cwd,
            limits: Limits {
                timeout: remaining_time,
                max_log_bytes: remaining_log,
                ..job.limits.clone()
            },
            log_path: step_log.clone(),
        };
        let (outcome, over_disk) = run_watching_disk(self.sandbox, &spec, job).await;
        let _ = writeln!(self.log, "# step {n}: {}", run.title);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&step_log)
        {
            let _ = std::io::copy(&mut f, &mut self.log);
        }
        let _ = std::fs::remove_file(&step_log);
        if let Some(used) = over_disk {
            return Ok(Some((
                FailureClass::ResourceLimit,
                format!(
                    "step {n} used {used} bytes of disk, more than the limit of {} bytes; it was stopped",
                    job.output_limits.disk_bytes
                ),
            )));
        }
        let outcome = outcome?;
        self.log_used += outcome.log_bytes;
        let _ = writeln!(self.log, "# step {n} result: {:?}", outcome.exit);
        Ok(if outcome.log_limit_exceeded {
            Some((
                FailureClass::ResourceLimit,
                format!(
                    "step {n} printed more than the build's log limit of {} bytes; it was stopped",
                    job.limits.max_log_bytes
                ),
            ))
        } else if outcome.oom_killed {
            Some((
                FailureClass::OutOfMemory,
                format!(
                    "step {n}: the kernel killed a process at the build's memory limit ({} bytes)",
                    job.limits.memory_bytes.unwrap_or(0)
                ),
            ))
        } else if outcome.exit != ExitKind::Exited(0) && job.work.full() {
            Some((
                FailureClass::ResourceLimit,
                format!(
                    "step {n} filled the build directory's {} bytes (the disk limit)",
                    job.output_limits.disk_bytes
                ),
            ))
        } else {
            match outcome.exit {
                ExitKind::Exited(0) => None,
                ExitKind::TimedOut => Some((
                    FailureClass::Timeout,
                    match run.timeout {
                        Some(cap) if cap == remaining_time => {
                            format!("step {n} ran past its limit of {}s", cap.as_secs())
                        }
                        _ => format!(
                            "step {n} ran past the build's limit of {}s",
                            job.limits.timeout.as_secs()
                        ),
                    },
                )),
                ExitKind::Exited(code) => Some((
                    FailureClass::CompileError,
                    format!("{} exited with status {code} (step {n})", run.argv[0]),
                )),
                ExitKind::Signaled(sig) => Some((
                    FailureClass::CompileError,
                    format!("{} was killed by signal {sig} (step {n})", run.argv[0]),
                )),
            }
        })
    }
}

/// Runs one step; where the work directory is not a tmpfs of its own size, measures its use meanwhile and
/// stops the run (by dropping it, which kills it) once it is over the limit: `Some(bytes used)` then.
async fn run_watching_disk(
    sandbox: &dyn Sandbox,
    spec: &SandboxSpec,
    job: &KbuildJob<'_>,
) -> (Result<kmf_sandbox::RunOutcome, BuildError>, Option<u64>) {
    let run = sandbox.run(spec);
    if job.work.is_tmpfs() {
        return (run.await.map_err(BuildError::from), None);
    }
    tokio::pin!(run);
    let limit = job.output_limits.disk_bytes;
    loop {
        tokio::select! {
            outcome = &mut run => return (outcome.map_err(BuildError::from), None),
            _ = tokio::time::sleep(DISK_POLL) => {
                let used = job.work.usage();
                if used > limit {
                    return (
                        Err(BuildError::Io {
                            op: "stop",
                            path: job.work.path().to_path_buf(),
                            source: std::io::Error::other("disk limit"),
                        }),
                        Some(used),
                    );
                }
            }
        }
    }
}

fn build_env(home: &Path, epoch: u64) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("KBUILD_BUILD_USER", "kmodfarm"),
        ("KBUILD_BUILD_HOST", "kmodfarm"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([
        ("HOME".to_string(), home.display().to_string()),
        ("SOURCE_DATE_EPOCH".to_string(), epoch.to_string()),
        ("KBUILD_BUILD_TIMESTAMP".to_string(), format!("@{epoch}")),
    ])
    .collect()
}

/// Most entries a build directory is searched through for modules when the project names none.
const MAX_WALK_ENTRIES: usize = 1_000_000;

/// A module to collect, relative to the work directory, and where a host installs it (when the project
/// says).
type WantedModule = (PathBuf, Option<String>);

/// The modules to take, relative to the work directory: the configured ones, or every `.ko` the build left
/// (a `.ko` that is a link or a special file is refused, not skipped: kbuild never makes one).
fn wanted_modules(
    job: &KbuildJob<'_>,
    work_dir: &Path,
    dkms: Option<&Vec<DkmsModule>>,
) -> Result<Vec<WantedModule>, (FailureClass, String)> {
    let limit = job.output_limits.modules;
    let too_many = |n: String| {
        (
            FailureClass::ResourceLimit,
            format!("the build produced {n} modules, more than the limit of {limit}"),
        )
    };
    if let Some(modules) = dkms {
        if modules.len() > limit {
            return Err(too_many(modules.len().to_string()));
        }
        return Ok(modules
            .iter()
            .map(|m| {
                let dest = format!("{}/{}.ko", m.dest_location.trim_matches('/'), m.dest_name);
                (Path::new("src").join(m.built_path()), Some(dest))
            })
            .collect());
    }
    if !job.project.build.modules.is_empty() {
        let n = job.project.build.modules.len();
        if n > limit {
            return Err(too_many(n.to_string()));
        }
        return Ok(job
            .project
            .build
            .modules
            .iter()
            .map(|m| (Path::new("src").join(m), None))
            .collect());
    }
    let mut found = Vec::new();
    let walk = walkdir::WalkDir::new(work_dir.join("src"))
        .follow_links(false)
        .into_iter()
        .take(MAX_WALK_ENTRIES);
    for e in walk.flatten() {
        if e.path().extension().is_none_or(|x| x != "ko") {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(work_dir)
            .expect("walk stays under its root")
            .to_path_buf();
        if !e.file_type().is_file() {
            return Err((
                FailureClass::UnsafeOutput,
                format!(
                    "`{}` is not a regular file (a link or a special file)",
                    names::printable(&rel.to_string_lossy())
                ),
            ));
        }
        found.push((rel, None));
        if found.len() > limit {
            return Err(too_many(format!("at least {}", found.len())));
        }
    }
    found.sort();
    if found.is_empty() {
        return Err((
            FailureClass::VerificationFailed,
            "the build produced no .ko file".into(),
        ));
    }
    Ok(found)
}

fn collect(
    job: &KbuildJob<'_>,
    work_dir: &Path,
    dkms: Option<&Vec<DkmsModule>>,
) -> Result<Vec<BuiltModule>, (FailureClass, String)> {
    let internal = |e: &dyn std::fmt::Display| (FailureClass::Internal, e.to_string());
    let wanted = wanted_modules(job, work_dir, dkms)?;
    let beneath = Beneath::open(work_dir).map_err(|e| internal(&e))?;
    let mut missing = Vec::new();
    let mut names_seen = std::collections::BTreeSet::new();
    let mut modules = Vec::new();
    for (rel, destination) in wanted {
        let shown_rel = rel.strip_prefix("src").unwrap_or(&rel).to_path_buf();
        let file_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The name becomes a store key and a line of SHA256SUMS.
        names::check_path_component("module file name", &file_name)
            .map_err(|e| (FailureClass::UnsafeOutput, e.to_string()))?;
        if !names_seen.insert(file_name.clone()) {
            return Err((
                FailureClass::VerificationFailed,
                format!(
                    "two modules are named {file_name}; each module needs a file name of its own"
                ),
            ));
        }
        // `[install] dest` in kmodfarm.toml wins over dkms.conf's destinations.
        let destination = match &job.project.install.dest {
            Some(dir) => Some(format!("{}/{file_name}", dir.trim_matches('/'))),
            None => destination,
        };
        let staged = job.staging.join(&file_name);
        match beneath.stage(&rel, &staged, job.output_limits.module_bytes) {
            Ok((sha256, size)) => {
                modules.push((shown_rel, file_name, staged, sha256, size, destination))
            }
            Err(UntrustedError::Missing { .. }) => {
                missing.push(shown_rel.display().to_string());
            }
            Err(e @ UntrustedError::TooLarge { .. }) => {
                return Err((FailureClass::ResourceLimit, e.to_string()))
            }
            Err(e) if e.is_content() => return Err((FailureClass::UnsafeOutput, e.to_string())),
            Err(e) => return Err(internal(&e)),
        }
    }
    if !missing.is_empty() {
        return Err((
            FailureClass::VerificationFailed,
            format!(
                "expected modules not produced: {}",
                names::printable(&missing.join(", "))
            ),
        ));
    }
    let mut built = Vec::new();
    for (rel, file_name, path, sha256, size, destination) in modules {
        let info = kmf_verify::verify_module(&path, job.arch, &job.tree.release)
            .map_err(|e| (FailureClass::VerificationFailed, e.to_string()))?;
        built.push(BuiltModule {
            file_name,
            relative_path: rel.display().to_string(),
            path,
            sha256,
            size,
            modinfo: info,
            destination,
        });
    }
    Ok(built)
}

pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((hex::encode(h.finalize()), n))
}

/// Where a link at `rel` (relative to the tree's root) pointing to `target` leads, when it stays inside the
/// tree; `None` when it is absolute or climbs out.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = rel.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

/// A link in the source tree that leads out of it: the project is refused before anything is copied.
pub fn escaping_link(from: &Path, rel: &Path, link: &Path) -> Result<(), BuildError> {
    let target = std::fs::read_link(link).map_err(BuildError::io("read", link))?;
    if link_stays_inside(rel, &target) {
        return Ok(());
    }
    Err(BuildError::Config {
        path: from.to_path_buf(),
        msg: format!(
            "`{}` is a link to `{}`, outside the source tree; kmodfarm copies links only when they stay \
             inside it",
            names::printable(&rel.to_string_lossy()),
            names::printable(&target.to_string_lossy())
        ),
    })
}

/// The source directory must be a real directory under the project root, reached without links.
fn check_source_root(from: &Path) -> Result<(), BuildError> {
    let meta = std::fs::symlink_metadata(from).map_err(BuildError::io("stat", from))?;
    if meta.is_dir() {
        return Ok(());
    }
    Err(BuildError::Config {
        path: from.to_path_buf(),
        msg: if meta.file_type().is_symlink() {
            "the source directory is a link; kmodfarm reads a project's own directories only".into()
        } else {
            "the source directory is not a directory".into()
        },
    })
}

/// Copies the driver source into the build dir. Links are copied as links, and only when they stay inside
/// the tree (the project is refused otherwise): a link in an untrusted tree must not pull host files into
/// the sandbox. Only directories, regular files and links are copied. VCS metadata and build outputs stay
/// behind.
pub fn copy_source(from: &Path, to: &Path) -> Result<(), BuildError> {
    check_source_root(from)?;
    std::fs::create_dir_all(to).map_err(BuildError::io("create", to))?;
    for entry in walkdir::WalkDir::new(from)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !is_ignored(e.file_name().to_string_lossy().as_ref()))
    {
        let entry = entry.map_err(|e| BuildError::Io {
            op: "walk",
            path: from.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .expect("walk stays under root");
        if rel.as_os_str().is_empty() {
            continue;
        }
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).map_err(BuildError::io("create", &dest))?;
        } else if ft.is_symlink() {
            escaping_link(from, rel, entry.path())?;
            let target =
                std::fs::read_link(entry.path()).map_err(BuildError::io("read", entry.path()))?;
            std::os::unix::fs::symlink(&target, &dest).map_err(BuildError::io("link", &dest))?;
        } else if ft.is_file() {
            let mut src = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(entry.path())
                .map_err(BuildError::io("open", entry.path()))?;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(entry.metadata().map(|m| m.mode() & 0o755).unwrap_or(0o644))
                .open(&dest)
                .map_err(BuildError::io("create", &dest))?;
            std::io::copy(&mut src, &mut out).map_err(BuildError::io("copy", &dest))?;
        }
    }
    Ok(())
}

/// Names a source copy, digest and archive leave out: VCS metadata and build outputs.
pub fn is_ignored(name: &str) -> bool {
    matches!(name, ".git" | ".hg" | ".svn" | ".tmp_versions")
        || name.ends_with(".o")
        || name.ends_with(".ko")
        || name.ends_with(".cmd")
        || name == "Module.symvers"
        || name == "modules.order"
}

/// SHA256 over the source tree as the build sees it: sorted relative paths, file contents and link targets.
pub fn source_digest(dir: &Path) -> Result<String, BuildError> {
    check_source_root(dir)?;
    let mut entries: Vec<_> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !is_ignored(e.file_name().to_string_lossy().as_ref()))
        .flatten()
        .collect();
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    let mut h = Sha256::new();
    for e in entries {
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        if e.file_type().is_file() {
            h.update(b"F\0");
            h.update(rel.to_string_lossy().as_bytes());
            h.update(b"\0");
            let mut f = std::fs::File::open(e.path()).map_err(BuildError::io("read", e.path()))?;
            std::io::copy(&mut f, &mut h).map_err(BuildError::io("read", e.path()))?;
        } else if e.file_type().is_symlink() {
            escaping_link(dir, rel, e.path())?;
            h.update(b"L\0");
            h.update(rel.to_string_lossy().as_bytes());
            h.update(b"\0");
            if let Ok(t) = std::fs::read_link(e.path()) {
                h.update(t.to_string_lossy().as_bytes());
            }
        }
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_module_publishes_as_it_reports() {
        let built = BuiltModule {
            file_name: "hello.ko".into(),
            relative_path: "src/hello.ko".into(),
            path: PathBuf::from("/var/cache/kmodfarm/staging/hello.ko"),
            sha256: "ab".repeat(32),
            size: 4096,
            modinfo: ModuleInfo {
                name: "hello".into(),
                vermagic: "6.1.0-9-amd64 SMP mod_unload ".into(),
                elf_machine: 62,
                ..ModuleInfo::default()
            },
            destination: Some("updates/dkms/hello.ko".into()),
        };
        let published = PublishedModule::from(&built);
        assert_eq!(published.size, Some(4096));
        // results.json and metadata.json show a module alike, and neither shows the host path.
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            serde_json::to_value(&published).unwrap()
        );
    }

    #[test]
    fn finds_debian_style_tree() {
        let d = tempfile::tempdir().unwrap();
        let flavour = d.path().join("a/usr/src/linux-headers-6.1.0-56-amd64");
        std::fs::create_dir_all(flavour.join("include/generated")).unwrap();
        std::fs::write(
            flavour.join(".config"),
            "CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\n",
        )
        .unwrap();
        std::fs::write(flavour.join("Makefile"), "include /x\n").unwrap();
        std::fs::write(
            flavour.join("include/generated/utsrelease.h"),
            "#define UTS_RELEASE \"6.1.0-56-amd64\"\n",
        )
        .unwrap();
        let common = d.path().join("b/usr/src/linux-headers-6.1.0-56-common");
        std::fs::create_dir_all(&common).unwrap();
        std::fs::write(common.join("Makefile"), "").unwrap();
        let t = find_kernel_tree(&[d.path().join("b"), d.path().join("a")]).unwrap();
        assert_eq!(t.release, "6.1.0-56-amd64");
        assert_eq!(
            t.sandbox_dir,
            Path::new("/usr/src/linux-headers-6.1.0-56-amd64")
        );
        assert!(t.cc_version_text.unwrap().starts_with("gcc-12"));
        assert!(find_kernel_tree(&[d.path().join("b")]).is_err());
    }

    fn elf_stub(machine: u16) -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        v.resize(18, 0);
        v.extend_from_slice(&machine.to_le_bytes());
        v.resize(64, 0);
        v
    }

    #[test]
    fn finds_ubuntu_pair_through_symlinks_into_the_shared_package() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let shared = d.path().join("shared/usr/src/linux-headers-5.15.0-91");
        std::fs::create_dir_all(shared.join("scripts")).unwrap();
        std::fs::write(shared.join("Makefile"), "VERSION = 5\n").unwrap();
        let flavour = d
            .path()
            .join("flavour/usr/src/linux-headers-5.15.0-91-generic");
        std::fs::create_dir_all(flavour.join("include/generated")).unwrap();
        std::fs::create_dir_all(flavour.join("scripts/basic")).unwrap();
        std::fs::write(
            flavour.join(".config"),
            "CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Ubuntu 12.3.0-1ubuntu1~22.04) 12.3.0\"\n",
        )
        .unwrap();
        std::fs::write(
            flavour.join("include/generated/utsrelease.h"),
            "#define UTS_RELEASE \"5.15.0-91-generic\"\n",
        )
        .unwrap();
        symlink(
            "../linux-headers-5.15.0-91/Makefile",
            flavour.join("Makefile"),
        )
        .unwrap();
        let roots = [d.path().join("shared"), d.path().join("flavour")];
        // Alone, the flavour package's Makefile leads nowhere.
        assert!(find_kernel_tree(&roots[1..]).is_err());
        let t = find_kernel_tree(&roots).unwrap();
        assert_eq!(t.release, "5.15.0-91-generic");
        assert_eq!(
            t.sandbox_dir,
            Path::new("/usr/src/linux-headers-5.15.0-91-generic")
        );
        assert_eq!(
            resolve_merged(&roots, &t.sandbox_dir.join("Makefile")).unwrap(),
            shared.join("Makefile")
        );

        // Ubuntu's flavour package carries the host tools built for the kernel's architecture.
        std::fs::write(flavour.join("scripts/basic/fixdep"), elf_stub(183)).unwrap();
        let err =
            check_host_tools(&roots, &t, "ubuntu", Arch::Aarch64, Some(Arch::X86_64)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "cross-building ubuntu aarch64 needs native aarch64 workers or host tools rebuilt"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("scripts/basic/fixdep is built for aarch64"),
            "{msg}"
        );
        check_host_tools(&roots, &t, "ubuntu", Arch::Aarch64, Some(Arch::Aarch64)).unwrap();
        std::fs::write(flavour.join("scripts/basic/fixdep"), elf_stub(62)).unwrap();
        check_host_tools(&roots, &t, "ubuntu", Arch::X86_64, Some(Arch::X86_64)).unwrap();
    }

    #[test]
    fn finds_rpm_kernel_devel_tree_and_debian_kbuild_tools_through_links() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("r/usr/src/kernels/5.14.0-427.el9.x86_64");
        std::fs::create_dir_all(k.join("include/config")).unwrap();
        std::fs::write(
            k.join(".config"),
            "CONFIG_CC_VERSION_TEXT=\"gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3)\"\n",
        )
        .unwrap();
        std::fs::write(k.join("Makefile"), "").unwrap();
        std::fs::write(
            k.join("include/config/kernel.release"),
            "5.14.0-427.el9.x86_64\n",
        )
        .unwrap();
        let t = find_kernel_tree(&[d.path().join("r")]).unwrap();
        assert_eq!(t.release, "5.14.0-427.el9.x86_64");
        assert_eq!(
            t.sandbox_dir,
            Path::new("/usr/src/kernels/5.14.0-427.el9.x86_64")
        );

        // Debian: scripts is an absolute link into linux-kbuild, another package.
        let kbuild = d.path().join("kb/usr/lib/linux-kbuild-6.1/scripts/basic");
        std::fs::create_dir_all(&kbuild).unwrap();
        std::fs::write(kbuild.join("fixdep"), elf_stub(62)).unwrap();
        symlink("/usr/lib/linux-kbuild-6.1/scripts", k.join("scripts")).unwrap();
        let roots = [d.path().join("r"), d.path().join("kb")];
        assert_eq!(
            resolve_merged(&roots, &t.sandbox_dir.join("scripts/basic/fixdep")).unwrap(),
            kbuild.join("fixdep")
        );
        check_host_tools(&roots, &t, "debian", Arch::Aarch64, Some(Arch::X86_64)).unwrap();
        let err = check_host_tools(&roots, &t, "almalinux", Arch::X86_64, Some(Arch::Aarch64))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cross-building almalinux x86_64"),
            "{err}"
        );
    }

    #[test]
    fn source_copy_keeps_inner_links_and_refuses_links_out() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.c"), "int x;").unwrap();
        std::fs::write(src.join("old.o"), "junk").unwrap();
        symlink("../a.c", src.join("sub/a.c")).unwrap();
        symlink("sub", src.join("alias")).unwrap();
        let dst = d.path().join("dst");
        copy_source(&src, &dst).unwrap();
        assert!(dst.join("a.c").is_file());
        assert!(!dst.join(".git").exists());
        assert!(!dst.join("old.o").exists());
        assert_eq!(
            std::fs::read_link(dst.join("sub/a.c")).unwrap(),
            Path::new("../a.c")
        );
        let a = source_digest(&src).unwrap();
        std::fs::write(src.join("a.c"), "int y;").unwrap();
        assert_ne!(a, source_digest(&src).unwrap());

        for (name, target) in [
            ("evil", "/etc/hostname"),
            ("sub/up", "../../outside"),
            ("deep", "sub/../../x"),
        ] {
            symlink(target, src.join(name)).unwrap();
            for err in [
                copy_source(
                    &src,
                    &d.path().join(format!("dst-{}", name.replace('/', "-"))),
                )
                .unwrap_err(),
                source_digest(&src).unwrap_err(),
            ] {
                let msg = err.to_string();
                assert!(msg.contains("outside the source tree"), "{name}: {msg}");
            }
            std::fs::remove_file(src.join(name)).unwrap();
        }
        // The source directory itself must not be a link (it would be followed as root).
        let linked = d.path().join("linked");
        symlink(&src, &linked).unwrap();
        assert!(copy_source(&linked, &d.path().join("dst-l")).is_err());
        assert!(source_digest(&linked).is_err());
    }

    #[test]
    fn links_inside_and_out() {
        assert!(link_stays_inside(Path::new("a"), Path::new("b")));
        assert!(link_stays_inside(Path::new("x/a"), Path::new("../b")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("../b")));
        assert!(!link_stays_inside(Path::new("x/a"), Path::new("/etc")));
        assert!(!link_stays_inside(Path::new("x/a"), Path::new("./../../b")));
        assert!(link_stays_inside(Path::new("x/y/a"), Path::new("../../b")));
    }
}
