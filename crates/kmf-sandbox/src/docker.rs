//! The Docker sandbox (`--sandbox docker`), also usable with Podman's Docker-compatible CLI.
//!
//! A builder root filesystem (a directory made by mmdebstrap) becomes a local image once, tagged
//! `kmodfarm-builder:<builder id>` and labelled with a digest of its dpkg status file; later runs reuse it
//! while the label matches. Each run is one `docker run` of that image:
//!
//! * `--network none`, `--init` (the build is not pid 1), `--read-only` root, a private `/tmp` tmpfs, `--cap-drop ALL`,
//!   `--security-opt no-new-privileges`, `--ipc private`, `--pull never` (nothing is ever fetched);
//! * the header package roots bound read-only at their absolute paths (the same merge plan as bubblewrap,
//!   [`crate::plan_mounts`]; the rootfs part of it is the image itself), the writable build directory bound
//!   read-write;
//! * a non-root user: when kmodfarm is root, one of the unprivileged sandbox uids ([`crate::SANDBOX_UID_BASE`]
//!   up, one per concurrent run), which the writable mounts are `lchown`ed to; otherwise kmodfarm's own uid;
//! * `--memory` (= `--memory-swap`), `--pids-limit`, `--cpus` and `--ulimit core=0`;
//! * only the spec's environment (`-e NAME=VALUE` for each; never a bare `-e NAME`, which would copy the
//!   host's value), plus `PATH` and `HOME` defaults as under bubblewrap.
//!
//! The docker client runs through the same runner as the other sandboxes (log header, log cap, timeout).
//! The container is not started with `--rm`: once the client returns, kmodfarm reads the container's
//! `State.OOMKilled` (for [`RunOutcome::oom_killed`]), which `--rm` could have removed first. It is
//! removed by kmodfarm (`docker rm -f`) in every case: after the run, on timeout or when the output passes
//! the log limit (the client is killed, then the container), when the run's future is dropped, and on
//! SIGINT/SIGTERM/SIGHUP (a handler removes every live container of the process, then exits with
//! `128 + signal`). If kmodfarm is killed outright, the container runs on until its command ends and then
//! stays, stopped, until the next [`Docker::detect`] on the machine removes the containers (running or not)
//! whose owning process is gone.
//!
//! Unlike under bubblewrap, the host's kernel command line stays readable in `/proc/cmdline`: runc refuses
//! every mount inside `/proc` but a few lxcfs files ("cannot be mounted because it is inside /proc"), so an
//! empty file cannot be bound over it, and the docker CLI has no option to add a path to the masked ones.
//! The writable build directory keeps the flags of its source mount (a `nosuid,nodev` tmpfs stays so);
//! read-only binds are remounted by runc, which drops `nosuid`/`nodev` there (`no-new-privileges` still
//! keeps set-uid files from granting anything).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::bwrap::{check_env, check_log_outside_rw_mounts, check_mount_sources};
use crate::host::DEFAULT_PATH;
use crate::ids::{self, UidSlot};
use crate::mounts::{plan_mounts, BwrapArg, MountPlan};
use crate::runner::{execute, Launch};
use crate::{ExitKind, Limits, Mount, RunOutcome, Sandbox, SandboxError, SandboxSpec};

/// Repository of the images made from builder root filesystems.
pub const BUILDER_IMAGE_REPO: &str = "kmodfarm-builder";
/// Image label: the builder id (the rootfs directory's name).
pub const LABEL_BUILDER_ID: &str = "org.kmodfarm.builder-id";
/// Image label: SHA256 of the rootfs' `var/lib/dpkg/status` (what is installed, compiler included).
pub const LABEL_ROOTFS_DIGEST: &str = "org.kmodfarm.rootfs-digest";
/// Container label: `<pid>@<boot id>` of the kmodfarm process that started it.
pub const LABEL_OWNER: &str = "org.kmodfarm.owner";
/// Prefix of every container name kmodfarm starts.
pub const CONTAINER_PREFIX: &str = "kmodfarm-";

/// Environment variable naming the client to use (`docker`, `podman`, or a path); default `docker`.
pub const CLI_ENV: &str = "KMODFARM_DOCKER";

/// The client's own environment: what it needs to reach the engine. None of it reaches the container.
const CLIENT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "XDG_RUNTIME_DIR",
    "CONTAINER_HOST",
    "CONTAINERS_CONF",
];

/// Longest wait for a short client command (inspect, rm, version).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs builds in containers; see the module documentation.
#[derive(Debug, Clone)]
pub struct Docker {
    cli: PathBuf,
    cpus: f64,
    /// Rootfs directory → image reference, once checked or imported in this process.
    images: Arc<Mutex<HashMap<PathBuf, String>>>,
    /// One import at a time per rootfs.
    import_locks: Arc<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Names of containers this process has running; removed by the signal handler.
static LIVE: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// The client the signal handler uses.
static SIGNAL_CLI: OnceLock<PathBuf> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn client_env() -> Vec<(OsString, OsString)> {
    CLIENT_ENV
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (OsString::from(k), v)))
        .collect()
}

/// A short client command, with output captured.
fn client(cli: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(cli);
    cmd.env_clear()
        .envs(client_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a short client command to completion (blocking; for `Drop` and the signal handler too): stdout on
/// success, the error text otherwise.
fn client_output_blocking(cli: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = client(cli)
        .args(args)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cli.display()))?;
    let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{} {}` did not answer within {CLIENT_TIMEOUT:?}",
                    cli.display(),
                    args.join(" ")
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn unusable(cli: &Path, detail: String) -> SandboxError {
    SandboxError::Spawn {
        program: cli.display().to_string(),
        source: std::io::Error::other(format!(
            "the container engine is not usable: {detail} (is the daemon running and may this user reach its \
             socket? {CLI_ENV}=podman selects Podman)"
        )),
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn owner_label() -> String {
    format!("{}@{}", std::process::id(), boot_id())
}

fn pid_alive(pid: i32) -> bool {
    match crate::sys::kill(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// The image reference of a builder id: `kmodfarm-builder:<id>`, the id reduced to what a tag may hold.
pub fn builder_image_tag(builder_id: &str) -> String {
    let mut tag: String = builder_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if tag.is_empty() || tag.starts_with(['.', '-']) {
        tag.insert(0, '_');
    }
    tag.truncate(128);
    format!("{BUILDER_IMAGE_REPO}:{tag}")
}

/// SHA256 of the rootfs' dpkg status file (hex), or of nothing when it has none.
pub fn rootfs_digest(rootfs: &Path) -> String {
    use sha2::{Digest, Sha256};
    let status = std::fs::read(rootfs.join("var/lib/dpkg/status")).unwrap_or_default();
    hex::encode(Sha256::digest(&status))
}

fn builder_id_of(rootfs: &Path) -> String {
    rootfs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".to_string())
}

/// Imports a root filesystem directory as an image (`tar -c | docker import -`), labelled with its builder
/// id and digest. Blocking; takes as long as writing the tree once.
pub fn import_rootfs(cli: &Path, rootfs: &Path, image: &str) -> Result<(), SandboxError> {
    if !rootfs.join("usr").is_dir() {
        return Err(SandboxError::BadPath {
            what: "root filesystem",
            path: rootfs.to_path_buf(),
            reason: "not a root filesystem (no usr/)".into(),
        });
    }
    let id = builder_id_of(rootfs);
    let digest = rootfs_digest(rootfs);
    tracing::info!(rootfs = %rootfs.display(), image, "importing the builder root filesystem as an image");
    let mut tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SandboxError::Spawn {
            program: "tar".into(),
            source,
        })?;
    let tar_out = tar.stdout.take().expect("piped");
    let import = client(cli)
        .args([
            "import",
            "--change",
            &format!("LABEL {LABEL_BUILDER_ID}={id}"),
            "--change",
            &format!("LABEL {LABEL_ROOTFS_DIGEST}={digest}"),
            "--change",
            &format!("ENV PATH={DEFAULT_PATH}"),
            "--message",
            &format!("kmodfarm builder {id}"),
            "-",
            image,
        ])
        .stdin(Stdio::from(tar_out))
        .output()
        .map_err(|source| SandboxError::Spawn {
            program: cli.display().to_string(),
            source,
        })?;
    let tar_result = tar.wait_with_output();
    let tar_ok = matches!(&tar_result, Ok(o) if o.status.success());
    if !import.status.success() || !tar_ok {
        let detail = if !import.status.success() {
            String::from_utf8_lossy(&import.stderr).trim().to_string()
        } else {
            tar_result
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        return Err(SandboxError::Spawn {
            program: format!("{} import", cli.display()),
            source: std::io::Error::other(format!("importing {}: {detail}", rootfs.display())),
        });
    }
    Ok(())
}

/// Lexically normalised absolute path (`..` never climbs above `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `path` is `base` or inside it, both resolved on the host (so no symlink leads outside).
fn stays_inside(path: &Path, base: &Path) -> bool {
    match (std::fs::canonicalize(path), std::fs::canonicalize(base)) {
        (Ok(p), Ok(b)) => p.starts_with(b),
        _ => false,
    }
}

/// The read-only bind mounts that show the overlays over the image. The image already is the rootfs, so the
/// rootfs entries of the bubblewrap plan (and its tmpfs shadows) are left out: only overlay binds remain.
/// The container engine cannot create symlinks, so an overlay symlink becomes a bind of what it points to
/// (resolved in the merged view, to an overlay bind or the rootfs), or is left out when it dangles.
pub(crate) fn overlay_binds(rootfs: &Path, plan: &MountPlan) -> Vec<Mount> {
    let mut binds: Vec<Mount> = Vec::new();
    let mut symlinks = Vec::new();
    for m in &plan.mounts {
        match m {
            BwrapArg::RoBind { src, dest } if !src.starts_with(rootfs) => binds.push(Mount {
                src: src.clone(),
                dest: dest.clone(),
            }),
            BwrapArg::Symlink { target, dest } => {
                let in_rootfs = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
                if std::fs::read_link(&in_rootfs).ok().as_deref() != Some(target.as_path()) {
                    symlinks.push((target.clone(), dest.clone()));
                }
            }
            _ => {}
        }
    }
    let overlay_binds = binds.clone();
    for (target, dest) in symlinks {
        let abs = if target.is_absolute() {
            normalize(&target)
        } else {
            normalize(&dest.parent().unwrap_or(Path::new("/")).join(&target))
        };
        let covering = overlay_binds
            .iter()
            .filter(|b| abs.starts_with(&b.dest))
            .max_by_key(|b| b.dest.components().count());
        let (host, base) = match covering {
            Some(b) => {
                let rest = abs.strip_prefix(&b.dest).unwrap_or(Path::new(""));
                (b.src.join(rest), b.src.clone())
            }
            None => (
                rootfs.join(abs.strip_prefix("/").unwrap_or(&abs)),
                rootfs.to_path_buf(),
            ),
        };
        if host.exists() && stays_inside(&host, &base) {
            let src = std::fs::canonicalize(&host).unwrap_or(host);
            binds.push(Mount { src, dest });
        } else {
            tracing::debug!(
                dest = %dest.display(),
                target = %target.display(),
                "overlay symlink left out of the container: its target is not in the merged tree"
            );
        }
    }
    binds
}

fn mount_arg(m: &Mount, readonly: bool) -> Result<OsString, SandboxError> {
    for p in [&m.src, &m.dest] {
        let s = p.to_string_lossy();
        if s.contains([',', '"', '\n']) || p.to_str().is_none() {
            return Err(SandboxError::BadPath {
                what: "mount",
                path: p.clone(),
                reason: "the container engine's --mount syntax cannot hold `,`, `\"`, newlines or non-UTF-8 \
                         in a path"
                    .into(),
            });
        }
    }
    Ok(OsString::from(format!(
        "type=bind,source={},target={}{}",
        m.src.display(),
        m.dest.display(),
        if readonly { ",readonly" } else { "" }
    )))
}

/// Everything that goes into one `docker run` line.
#[derive(Debug, Clone)]
pub(crate) struct RunArgs<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub user: (u32, u32),
    pub cpus: f64,
    pub limits: &'a Limits,
    pub env: &'a [(String, String)],
    pub ro: &'a [Mount],
    pub rw: &'a [Mount],
    pub cwd: &'a Path,
    pub argv: &'a [String],
    pub owner: &'a str,
}

/// The arguments of `docker run` (without the program name).
pub(crate) fn run_args(a: &RunArgs<'_>) -> Result<Vec<OsString>, SandboxError> {
    let mut args: Vec<OsString> = [
        "run",
        // A minimal init as pid 1: signals reach the build as usual and exits are reported as 128 + N.
        "--init",
        "--pull",
        "never",
        "--log-driver",
        "none",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,exec,nosuid,nodev,mode=1777",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--ipc",
        "private",
        "--hostname",
        "kmodfarm",
        "--ulimit",
        "core=0",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut push = |k: &str, v: String| {
        args.push(k.into());
        args.push(v.into());
    };
    push("--name", a.name.to_string());
    push("--label", format!("{LABEL_OWNER}={}", a.owner));
    push("--user", format!("{}:{}", a.user.0, a.user.1));
    if let Some(m) = a.limits.memory_bytes {
        push("--memory", m.to_string());
        push("--memory-swap", m.to_string());
    }
    if let Some(n) = a.limits.max_processes {
        push("--pids-limit", n.to_string());
    }
    if a.cpus > 0.0 {
        push("--cpus", format!("{:.2}", a.cpus));
    }
    for (k, v) in a.env {
        push("-e", format!("{k}={v}"));
    }
    for m in a.ro {
        args.push("--mount".into());
        args.push(mount_arg(m, true)?);
    }
    for m in a.rw {
        args.push("--mount".into());
        args.push(mount_arg(m, false)?);
    }
    args.push("--workdir".into());
    args.push(a.cwd.as_os_str().to_owned());
    args.push(a.image.into());
    args.extend(a.argv.iter().map(OsString::from));
    Ok(args)
}

/// Removes the container when dropped (unless disarmed), and keeps it in the signal handler's list meanwhile.
struct ContainerGuard {
    cli: PathBuf,
    name: String,
}

impl ContainerGuard {
    fn new(cli: &Path, name: String) -> Self {
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(name.clone());
        ContainerGuard {
            cli: cli.to_path_buf(),
            name,
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        // `rm -f` kills and removes; an error means it is already gone (or never made).
        let _ = client_output_blocking(&self.cli, &["rm", "-f", &self.name]);
        if let Some(set) = LIVE.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            set.remove(&self.name);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: removes every container of this process, then exits as the signal would
/// have (`128 + N`). Installed once, when the first container is started inside a tokio runtime.
fn install_signal_handler(cli: &Path) {
    if SIGNAL_CLI.set(cli.to_path_buf()).is_err() {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, num) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
    ] {
        let _guard = handle.enter();
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        handle.spawn(async move {
            if stream.recv().await.is_some() {
                remove_live_containers();
                std::process::exit(128 + num);
            }
        });
    }
}

fn remove_live_containers() {
    let names: Vec<String> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    if let (Some(cli), false) = (SIGNAL_CLI.get(), names.is_empty()) {
        eprintln!(
            "kmodfarm: removing {} running build container(s)",
            names.len()
        );
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        let _ = client_output_blocking(cli, &args);
    }
}

/// Removes containers left by kmodfarm processes that no longer exist (killed before they could clean up).
fn sweep_orphans(cli: &Path) {
    let format = format!("{{{{.Names}}}} {{{{.Label \"{LABEL_OWNER}\"}}}}");
    let Ok(out) = client_output_blocking(
        cli,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label={LABEL_OWNER}"),
            "--format",
            &format,
        ],
    ) else {
        return;
    };
    let boot = boot_id();
    let orphans: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            let (name, owner) = l.split_once(' ')?;
            let (pid, owner_boot) = owner.split_once('@')?;
            let pid: i32 = pid.parse().ok()?;
            let dead = owner_boot != boot || !pid_alive(pid);
            (dead && name.starts_with(CONTAINER_PREFIX)).then_some(name)
        })
        .collect();
    if !orphans.is_empty() {
        tracing::warn!(containers = ?orphans, "removing build containers left by a kmodfarm process that is gone");
        let mut args = vec!["rm", "-f"];
        args.extend(orphans);
        let _ = client_output_blocking(cli, &args);
    }
}

impl Docker {
    /// The client named by `KMODFARM_DOCKER` (default `docker`), after checking that it reaches an engine.
    /// Also removes containers that dead kmodfarm processes left behind.
    pub fn detect() -> Result<Self, SandboxError> {
        let cli = std::env::var_os(CLI_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("docker"), PathBuf::from);
        Self::with_cli(cli)
    }

    /// As [`Docker::detect`], with this client (`docker`, `podman`, or a path).
    pub fn with_cli(cli: impl Into<PathBuf>) -> Result<Self, SandboxError> {
        let cli = cli.into();
        let version = client_output_blocking(&cli, &["version", "--format", "{{.Server.Version}}"])
            .map_err(|detail| unusable(&cli, detail))?;
        tracing::debug!(cli = %cli.display(), server = version.trim(), "container engine reachable");
        sweep_orphans(&cli);
        Ok(Self::unchecked(cli))
    }

    fn unchecked(cli: PathBuf) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Docker {
            cli,
            cpus,
            images: Default::default(),
            import_locks: Default::default(),
        }
    }

    /// CPUs one run may use (`--cpus`); default: all of the machine's.
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.cpus = cpus;
        self
    }

    /// The client in use.
    pub fn cli(&self) -> &Path {
        &self.cli
    }

    /// The image for a builder root filesystem, imported first when missing or made from other content.
    pub async fn image_for(&self, rootfs: &Path) -> Result<String, SandboxError> {
        if let Some(image) = self.images.lock().expect("poisoned").get(rootfs) {
            return Ok(image.clone());
        }
        let lock = self
            .import_locks
            .lock()
            .expect("poisoned")
            .entry(rootfs.to_path_buf())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(image) = self.images.lock().expect("poisoned").get(rootfs) {
            return Ok(image.clone());
        }
        let image = builder_image_tag(&builder_id_of(rootfs));
        let (root, cli, img) = (rootfs.to_path_buf(), self.cli.clone(), image.clone());
        tokio::task::spawn_blocking(move || ensure_image(&cli, &root, &img))
            .await
            .map_err(|e| SandboxError::Task(e.to_string()))??;
        self.images
            .lock()
            .expect("poisoned")
            .insert(rootfs.to_path_buf(), image.clone());
        Ok(image)
    }
}

/// Imports `rootfs` as `image` unless an image of that name with the same digest label exists.
pub fn ensure_image(cli: &Path, rootfs: &Path, image: &str) -> Result<bool, SandboxError> {
    let digest = rootfs_digest(rootfs);
    let format = format!("{{{{index .Config.Labels \"{LABEL_ROOTFS_DIGEST}\"}}}}");
    if let Ok(have) = client_output_blocking(cli, &["image", "inspect", "--format", &format, image])
    {
        if have.trim() == digest {
            return Ok(false);
        }
        tracing::info!(
            image,
            "the image was made from other content; importing again"
        );
    }
    import_rootfs(cli, rootfs, image)?;
    Ok(true)
}

/// Image label of Dockerfile builds: the family (directory name under `builders/`).
pub const LABEL_FAMILY: &str = "org.kmodfarm.family";

/// SHA256 (hex) over a build context: every file's relative path and content, in path order, then `extra`
/// (build arguments). Symlinks count by their target.
pub fn context_digest(dir: &Path, extra: &[String]) -> Result<String, SandboxError> {
    use sha2::{Digest, Sha256};
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| SandboxError::Io {
            action: "walk",
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_path_buf();
        if entry.file_type().is_file() {
            let data =
                std::fs::read(entry.path()).map_err(SandboxError::io("read", entry.path()))?;
            entries.push((rel, Sha256::digest(&data).to_vec()));
        } else if entry.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path())
                .map_err(SandboxError::io("read link", entry.path()))?;
            entries.push((rel, target.to_string_lossy().as_bytes().to_vec()));
        }
    }
    let mut h = Sha256::new();
    for (rel, digest) in entries {
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(&digest);
        h.update([0]);
    }
    for e in extra {
        h.update(e.as_bytes());
        h.update([0]);
    }
    Ok(hex::encode(h.finalize()))
}

/// One kmodfarm image in the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `repository:tag`.
    pub reference: String,
    pub id: String,
    pub created: String,
    pub size: String,
    /// The builder id of an imported builder.
    pub builder_id: Option<String>,
    /// The family of a Dockerfile build.
    pub family: Option<String>,
}

/// kmodfarm's images: imported builders and Dockerfile builds (by their labels).
pub fn list_images(cli: &Path) -> Result<Vec<ImageInfo>, SandboxError> {
    let mut out: Vec<ImageInfo> = Vec::new();
    let format = "{{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
    for label in [LABEL_BUILDER_ID, LABEL_FAMILY] {
        let text = client_output_blocking(
            cli,
            &[
                "images",
                "--filter",
                &format!("label={label}"),
                "--format",
                format,
            ],
        )
        .map_err(|detail| unusable(cli, detail))?;
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 || f[0].contains("<none>") || out.iter().any(|i| i.reference == f[0]) {
                continue;
            }
            out.push(ImageInfo {
                reference: f[0].to_string(),
                id: f[1].to_string(),
                created: f[2].to_string(),
                size: f[3].to_string(),
                builder_id: None,
                family: None,
            });
        }
    }
    if out.is_empty() {
        return Ok(out);
    }
    // The listing has no labels; one inspect of every image gives them, in order.
    let format = format!(
        "{{{{index .Config.Labels \"{LABEL_BUILDER_ID}\"}}}}\t{{{{index .Config.Labels \"{LABEL_FAMILY}\"}}}}"
    );
    let mut args = vec!["image", "inspect", "--format", format.as_str()];
    args.extend(out.iter().map(|i| i.reference.as_str()));
    let text = client_output_blocking(cli, &args).map_err(|detail| unusable(cli, detail))?;
    for (info, line) in out.iter_mut().zip(text.lines()) {
        let (b, f) = line.split_once('\t').unwrap_or((line, ""));
        let opt = |s: &str| (!s.is_empty() && s != "<no value>").then(|| s.to_string());
        info.builder_id = opt(b);
        info.family = opt(f);
    }
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(out)
}

/// Removes images by reference (`repository:tag`).
pub fn remove_images(cli: &Path, references: &[String]) -> Result<(), SandboxError> {
    if references.is_empty() {
        return Ok(());
    }
    let mut args = vec!["rmi"];
    args.extend(references.iter().map(String::as_str));
    client_output_blocking(cli, &args).map_err(|detail| unusable(cli, detail))?;
    Ok(())
}

/// Whether an image of this reference exists.
pub fn image_exists(cli: &Path, reference: &str) -> bool {
    client_output_blocking(cli, &["image", "inspect", "--format", "{{.Id}}", reference]).is_ok()
}

fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{CONTAINER_PREFIX}{}-{n}-{nanos:08x}", std::process::id())
}

/// First lines of the command's output in the log (here the client's own messages), for an error message.
fn log_excerpt(log_path: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(log_path).unwrap_or_default()).into_owned();
    text.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter(|l| !l.trim().is_empty())
        .take(5)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Whether the kernel's OOM killer acted in the container (`State.OOMKilled`); false when it cannot be
/// told (the container never got made).
fn container_oom_killed(cli: &Path, name: &str) -> bool {
    client_output_blocking(cli, &["inspect", "--format", "{{.State.OOMKilled}}", name])
        .is_ok_and(|out| out.trim() == "true")
}

/// Appends a note to the log after the runner has closed it.
fn append_note(log_path: &Path, note: &str) -> Result<(), SandboxError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log_path)
        .map_err(SandboxError::io("append to the log", log_path))?;
    f.write_all(note.as_bytes())
        .map_err(SandboxError::io("append to the log", log_path))
}

#[async_trait::async_trait]
impl Sandbox for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn run(&self, spec: &SandboxSpec) -> Result<RunOutcome, SandboxError> {
        if spec.argv.is_empty() {
            return Err(SandboxError::EmptyArgv);
        }
        check_env(&spec.env)?;
        check_mount_sources(spec)?;
        check_log_outside_rw_mounts(spec)?;
        let (rootfs, overlays) = (spec.rootfs.clone(), spec.overlays.clone());
        let ro_overlays = tokio::task::spawn_blocking(move || {
            plan_mounts(&rootfs, &overlays).map(|plan| overlay_binds(&rootfs, &plan))
        })
        .await
        .map_err(|e| SandboxError::Task(e.to_string()))??;
        let image = self.image_for(&spec.rootfs).await?;

        // Who the build is: an unprivileged uid of its own when kmodfarm is root.
        let mut slot = None;
        let user = if crate::sys::effective_uid() == 0 {
            let s = UidSlot::acquire().ok_or_else(|| SandboxError::Spawn {
                program: self.cli.display().to_string(),
                source: std::io::Error::other("every sandbox uid is in use"),
            })?;
            let (uid, gid) = (s.uid(), s.gid());
            let rw: Vec<PathBuf> = spec.rw_mounts.iter().map(|m| m.src.clone()).collect();
            tokio::task::spawn_blocking(move || {
                rw.iter().try_for_each(|src| ids::chown_tree(src, uid, gid))
            })
            .await
            .map_err(|e| SandboxError::Task(e.to_string()))??;
            slot = Some(s);
            (uid, gid)
        } else {
            // SAFETY: getegid(2) cannot fail and takes no arguments.
            #[allow(unsafe_code)]
            let gid = unsafe { libc::getegid() };
            (crate::sys::effective_uid(), gid)
        };

        let mut env = spec.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if !env.iter().any(|(k, _)| k == "HOME") {
            let home = spec
                .rw_mounts
                .first()
                .map_or_else(|| "/tmp".to_string(), |m| m.dest.display().to_string());
            env.push(("HOME".into(), home));
        }
        let mut ro = ro_overlays;
        ro.extend(spec.ro_mounts.iter().cloned());
        let name = unique_name();
        let owner = owner_label();
        let args = run_args(&RunArgs {
            name: &name,
            image: &image,
            user,
            cpus: self.cpus,
            limits: &spec.limits,
            env: &env,
            ro: &ro,
            rw: &spec.rw_mounts,
            cwd: &spec.cwd,
            argv: &spec.argv,
            owner: &owner,
        })?;

        let notes = vec![
            format!(
                "container {name} from image {image}: uid {}:{}, no network, read-only root, capabilities dropped",
                user.0, user.1
            ),
            format!(
                "container limits: memory {}, processes {}, cpus {:.2} (the limits line above is the client's own)",
                spec.limits
                    .memory_bytes
                    .map_or("unlimited".to_string(), |m| format!("{m} bytes")),
                spec.limits
                    .max_processes
                    .map_or("unlimited".to_string(), |n| n.to_string()),
                self.cpus
            ),
        ];
        // The client process itself is not limited (a Go binary and RLIMIT_AS do not mix); the container is.
        let client_limits = Limits {
            memory_bytes: None,
            max_processes: None,
            ..spec.limits.clone()
        };
        let launch = Launch {
            sandbox: self.name(),
            program: self.cli.clone().into(),
            args,
            env: client_env(),
            cwd: PathBuf::from("/"),
            drop_to: None,
            nproc_rlimit_always: false,
            notes,
            pass_fds: Vec::new(),
        };
        install_signal_handler(&self.cli);
        let guard = ContainerGuard::new(&self.cli, name);
        let outcome = execute(launch, &client_limits, &spec.log_path).await;
        // Read before the container goes; removed in every case, timeout included, and dropping this future
        // on the way also removes it.
        let cli = self.cli.clone();
        let check_oom = outcome.is_ok();
        // The engine learns of an OOM kill through an event that can arrive after the container exited.
        // A run that failed is asked again for a moment (an OOM-killed compiler fails make), a successful
        // one only once, which keeps the common case fast.
        let failed = outcome.as_ref().is_ok_and(|o| !o.success());
        let oom_killed = tokio::task::spawn_blocking(move || {
            let mut oom = check_oom && container_oom_killed(&guard.cli, &guard.name);
            for _ in 0..10 {
                if oom || !check_oom || !failed {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                oom = container_oom_killed(&guard.cli, &guard.name);
            }
            drop(guard);
            oom
        })
        .await
        .map_err(|e| SandboxError::Task(e.to_string()))?;
        drop(slot);
        let mut outcome = outcome?;
        if oom_killed {
            outcome.oom_killed = true;
            append_note(
                &spec.log_path,
                &format!(
                    "\n[kmodfarm: the memory limit ({} bytes) was reached and the kernel killed a process]\n",
                    spec.limits.memory_bytes.unwrap_or(0)
                ),
            )?;
        }
        if outcome.exit == ExitKind::Exited(125) {
            // The engine's own failure (image, mounts, options): not the build's.
            return Err(SandboxError::Spawn {
                program: format!("{} run", cli.display()),
                source: std::io::Error::other(format!(
                    "the container did not start: {}",
                    log_excerpt(&spec.log_path)
                )),
            });
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(env: &[(String, String)], limits: &Limits) -> Vec<String> {
        let ro = vec![Mount {
            src: "/cache/packages/abc/usr/src/linux-headers-6.1.0-56-amd64".into(),
            dest: "/usr/src/linux-headers-6.1.0-56-amd64".into(),
        }];
        let rw = vec![Mount {
            src: "/cache/work/x".into(),
            dest: "/build".into(),
        }];
        let argv = vec!["make".to_string(), "modules".to_string()];
        run_args(&RunArgs {
            name: "kmodfarm-1-0-0",
            image: "kmodfarm-builder:debian-bookworm-gcc12-abc",
            user: (2_100_000_000, 2_100_000_000),
            cpus: 2.0,
            limits,
            env,
            ro: &ro,
            rw: &rw,
            cwd: Path::new("/build/src"),
            argv: &argv,
            owner: "1@boot",
        })
        .unwrap()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
    }

    fn has_pair(args: &[String], k: &str, v: &str) -> bool {
        args.windows(2).any(|w| w[0] == k && w[1] == v)
    }

    #[test]
    fn run_line_isolates_and_limits() {
        let env = vec![("SOURCE_DATE_EPOCH".to_string(), "1".to_string())];
        let args = args_of(&env, &Limits::default());
        assert_eq!(args[0], "run");
        for (k, v) in [
            ("--network", "none"),
            ("--cap-drop", "ALL"),
            ("--security-opt", "no-new-privileges"),
            ("--pull", "never"),
            ("--user", "2100000000:2100000000"),
            ("--memory", "4294967296"),
            ("--memory-swap", "4294967296"),
            ("--pids-limit", "512"),
            ("--cpus", "2.00"),
            ("--workdir", "/build/src"),
            ("--name", "kmodfarm-1-0-0"),
            ("--ulimit", "core=0"),
        ] {
            assert!(has_pair(&args, k, v), "{k} {v} missing in {args:?}");
        }
        assert!(args.contains(&"--read-only".to_string()));
        // The container must outlive the client for its OOM state to be read; kmodfarm removes it.
        assert!(!args.contains(&"--rm".to_string()));
        assert!(args.contains(&"--init".to_string()));
        assert!(has_pair(
            &args,
            "--mount",
            "type=bind,source=/cache/packages/abc/usr/src/linux-headers-6.1.0-56-amd64,\
             target=/usr/src/linux-headers-6.1.0-56-amd64,readonly"
        ));
        assert!(has_pair(
            &args,
            "--mount",
            "type=bind,source=/cache/work/x,target=/build"
        ));
        // The image, then the command, close the line.
        let n = args.len();
        assert_eq!(
            &args[n - 3..],
            [
                "kmodfarm-builder:debian-bookworm-gcc12-abc",
                "make",
                "modules"
            ]
        );
        // No host-network or privilege options sneak in.
        for bad in ["--privileged", "host", "--env-file", "-v", "--volume"] {
            assert!(!args.contains(&bad.to_string()), "{bad} in {args:?}");
        }
    }

    #[test]
    fn only_the_specs_environment_is_passed() {
        std::env::set_var("KMODFARM_TEST_SECRET", "hunter2");
        let env = vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("HOME".to_string(), "/build".to_string()),
        ];
        let args = args_of(&env, &Limits::default());
        let envs: Vec<&String> = args
            .windows(2)
            .filter(|w| w[0] == "-e")
            .map(|w| &w[1])
            .collect();
        assert_eq!(envs, ["PATH=/usr/bin:/bin", "HOME=/build"]);
        // Every -e carries its value: a bare NAME would copy the host's value in.
        assert!(envs.iter().all(|e| e.contains('=')));
        assert!(!args.iter().any(|a| a.contains("hunter2")));
    }

    #[test]
    fn limits_can_be_absent() {
        let limits = Limits {
            memory_bytes: None,
            max_processes: None,
            ..Limits::default()
        };
        let args = args_of(&[], &limits);
        assert!(!args.contains(&"--memory".to_string()));
        assert!(!args.contains(&"--pids-limit".to_string()));
    }

    #[test]
    fn paths_the_mount_syntax_cannot_hold_are_refused() {
        let m = Mount {
            src: "/a,b".into(),
            dest: "/x".into(),
        };
        assert!(mount_arg(&m, true).is_err());
        let m = Mount {
            src: "/a".into(),
            dest: "/x\"y".into(),
        };
        assert!(mount_arg(&m, false).is_err());
    }

    #[test]
    fn the_excerpt_is_the_clients_output_without_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        std::fs::write(
            &log,
            "# kmodfarm sandbox=docker: docker run x\n# limits: none\n| docker: Error response from daemon: \
             no such image\n| \n| See 'docker run --help'.\n\n[kmodfarm: a note]\n",
        )
        .unwrap();
        assert_eq!(
            log_excerpt(&log),
            "docker: Error response from daemon: no such image / See 'docker run --help'."
        );
    }

    #[test]
    fn image_tags_are_valid() {
        assert_eq!(
            builder_image_tag("debian-bookworm-gcc12-186770cb457b"),
            "kmodfarm-builder:debian-bookworm-gcc12-186770cb457b"
        );
        assert_eq!(builder_image_tag("a b+c"), "kmodfarm-builder:a_b_c");
        assert_eq!(builder_image_tag(".x"), "kmodfarm-builder:_.x");
    }

    #[test]
    fn normalize_stays_under_root() {
        assert_eq!(normalize(Path::new("/a/b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../../x")), PathBuf::from("/x"));
    }

    #[test]
    fn overlay_binds_leave_out_the_rootfs_and_resolve_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["usr/src", "usr/lib", "usr/bin", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", rootfs.join("lib")).unwrap();
        let kbuild = dir.path().join("kbuild");
        std::fs::create_dir_all(kbuild.join("usr/lib/linux-kbuild-6.1/scripts")).unwrap();
        // An overlay symlink in a directory the rootfs has: the engine cannot make it, so it is bound.
        std::os::unix::fs::symlink("../lib/linux-kbuild-6.1", kbuild.join("usr/src/kb"))
            .unwrap_or_else(|_| {
                std::fs::create_dir_all(kbuild.join("usr/src")).unwrap();
                std::os::unix::fs::symlink("../lib/linux-kbuild-6.1", kbuild.join("usr/src/kb"))
                    .unwrap();
            });
        std::os::unix::fs::symlink("/etc/passwd", kbuild.join("usr/src/dangling")).unwrap();
        let headers = dir.path().join("headers");
        std::fs::create_dir_all(headers.join("usr/src/linux-headers-6.1.0-56-amd64")).unwrap();
        std::fs::create_dir_all(headers.join("lib/modules/6.1.0-56-amd64")).unwrap();
        let plan = plan_mounts(&rootfs, &[kbuild.clone(), headers.clone()]).unwrap();
        let binds = overlay_binds(&rootfs, &plan);
        let dests: Vec<_> = binds.iter().map(|b| b.dest.display().to_string()).collect();
        assert!(
            binds.iter().all(|b| !b.src.starts_with(&rootfs)),
            "{binds:?}"
        );
        for want in [
            "/usr/lib/linux-kbuild-6.1",
            "/usr/src/linux-headers-6.1.0-56-amd64",
            "/usr/lib/modules",
            "/usr/src/kb",
        ] {
            assert!(dests.contains(&want.to_string()), "{want} not in {dests:?}");
        }
        let kb = binds
            .iter()
            .find(|b| b.dest == Path::new("/usr/src/kb"))
            .unwrap();
        assert_eq!(
            kb.src,
            std::fs::canonicalize(kbuild.join("usr/lib/linux-kbuild-6.1")).unwrap()
        );
        assert!(!dests.contains(&"/usr/src/dangling".to_string()));
    }
}
