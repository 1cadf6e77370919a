//! Running one QEMU guest: its command line, its console, and a hard time limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kmf_types::Arch;
use tokio::io::AsyncReadExt;

/// How the guest CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM when /dev/kvm is usable and the guest architecture is the host's, TCG otherwise.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Environment variable forcing the accelerator (`kvm`, `tcg`, `auto`).
pub const ACCEL_ENV: &str = "KMODFARM_QEMU_ACCEL";

impl Accel {
    pub fn parse(s: &str) -> Option<Accel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Accel::Auto),
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    /// `KMODFARM_QEMU_ACCEL` when set (and valid), else `Auto`.
    pub fn from_env() -> Accel {
        std::env::var(ACCEL_ENV)
            .ok()
            .and_then(|v| Accel::parse(&v))
            .unwrap_or_default()
    }

    /// Whether a guest of `arch` runs under KVM.
    pub fn use_kvm(self, arch: Arch) -> bool {
        match self {
            Accel::Tcg => false,
            Accel::Kvm => true,
            Accel::Auto => Arch::host() == Some(arch) && kvm_usable(),
        }
    }
}

/// /dev/kvm exists, this process may open it read-write, and (on x86) the CPU offers hardware
/// virtualisation: a /dev/kvm without VMX/SVM (a paravirtual implementation inside a VM) can open and
/// create VMs yet hang a stock kernel early in boot.
pub fn kvm_usable() -> bool {
    let open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !open {
        return false;
    }
    if cfg!(target_arch = "x86_64") {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        return cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    }
    true
}

/// The QEMU binary for a guest architecture.
pub fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "qemu-system-aarch64",
        _ => "qemu-system-x86_64",
    }
}

/// The kernel command line: the console, and every oops or panic ends the VM at once (`panic=-1` reboots
/// immediately and `-no-reboot` turns the reboot into QEMU's exit).
pub fn kernel_cmdline(arch: Arch) -> String {
    let console = match arch {
        Arch::Aarch64 => "ttyAMA0",
        _ => "ttyS0",
    };
    format!(
        "console={console} rdinit=/init panic=-1 oops=panic quiet loglevel=4 mitigations=off \
         random.trust_cpu=on"
    )
}

/// QEMU's arguments: no network, no disks, no host file sharing, the serial console on stdout.
pub fn qemu_args(
    arch: Arch,
    kvm: bool,
    kernel: &Path,
    initrd: &Path,
    memory_mib: u32,
) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |a: &[&str]| args.extend(a.iter().map(|s| s.to_string()));
    match arch {
        Arch::Aarch64 => {
            push(&["-M", "virt"]);
            push(&["-cpu", if kvm { "host" } else { "cortex-a57" }]);
        }
        _ => {
            push(&["-M", "pc"]);
            if kvm {
                push(&["-cpu", "host"]);
            }
        }
    }
    push(&["-accel", if kvm { "kvm" } else { "tcg" }]);
    push(&[
        "-smp",
        "1",
        "-m",
        &format!("{memory_mib}M"),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-nic",
        "none",
        "-no-reboot",
        "-kernel",
        &kernel.display().to_string(),
        "-initrd",
        &initrd.display().to_string(),
        "-append",
        &kernel_cmdline(arch),
    ]);
    args
}

/// What one QEMU run produced.
#[derive(Debug, Clone)]
pub struct Run {
    /// The serial console (capped), then QEMU's own stderr when it said anything.
    pub console: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// The console is capped so that a module flooding the log cannot fill memory.
const CONSOLE_LIMIT: usize = 8 << 20;

/// After `KMF:DONE` the guest powers off; if QEMU lingers, it is killed after this.
const DONE_GRACE: Duration = Duration::from_secs(3);

/// Runs QEMU with `args` until it exits, the init reports `KMF:DONE` (plus a grace period), or `timeout`.
/// QEMU runs in its own process group, which is killed whenever the run ends without its exit.
pub async fn run(program: &str, args: &[String], timeout: Duration) -> std::io::Result<Run> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(1 << 20).read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });

    let mut console = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut done_at: Option<tokio::time::Instant> = None;
    let mut chunk = vec![0u8; 16 << 10];
    let mut timed_out = false;
    loop {
        let limit = match done_at {
            Some(d) => d.min(deadline),
            None => deadline,
        };
        match tokio::time::timeout_at(limit, stdout.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                let room = CONSOLE_LIMIT.saturating_sub(console.len());
                console.extend_from_slice(&chunk[..n.min(room)]);
                if done_at.is_none() && contains(&console, b"KMF:DONE") {
                    done_at = Some(tokio::time::Instant::now() + DONE_GRACE);
                }
            }
            Err(_) => {
                timed_out = done_at.is_none();
                break;
            }
        }
    }
    // Wait briefly for a normal exit after the console closed; kill the group otherwise.
    let exited = matches!(
        tokio::time::timeout(
            if timed_out {
                Duration::ZERO
            } else {
                Duration::from_secs(2)
            },
            child.wait()
        )
        .await,
        Ok(Ok(_))
    );
    if !exited {
        kill_group(pid);
        let _ = child.kill().await;
        let _ = child.wait().await;
    }
    let stderr = match tokio::time::timeout(Duration::from_secs(2), stderr_task).await {
        Ok(Ok(s)) => s,
        _ => String::new(),
    };
    if console.len() >= CONSOLE_LIMIT {
        console.extend_from_slice(b"\n[console output truncated]\n");
    }
    Ok(Run {
        console: String::from_utf8_lossy(&console).into_owned(),
        stderr,
        timed_out,
        elapsed: started.elapsed(),
    })
}

fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // Only the tail can hold a marker that just arrived, but markers are rare: search it all.
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the `program` is installed (on PATH).
pub fn find_program(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let x = qemu_args(Arch::X86_64, false, Path::new("/k"), Path::new("/i"), 512);
        let s = x.join(" ");
        assert!(s.contains("-accel tcg"), "{s}");
        assert!(s.contains("-nic none"), "{s}");
        assert!(s.contains("-no-reboot"), "{s}");
        assert!(s.contains("console=ttyS0"), "{s}");
        assert!(!s.contains("-cpu host"), "{s}");
        let a = qemu_args(Arch::Aarch64, true, Path::new("/k"), Path::new("/i"), 512).join(" ");
        assert!(a.contains("-M virt -cpu host -accel kvm"), "{a}");
        assert!(a.contains("console=ttyAMA0"), "{a}");
        assert_eq!(Accel::parse("TCG"), Some(Accel::Tcg));
        assert_eq!(Accel::parse("x"), None);
        assert!(!Accel::Tcg.use_kvm(Arch::X86_64));
    }

    #[tokio::test]
    async fn the_time_limit_kills_the_process_group() {
        // A shell that starts a grandchild and never exits: both must be gone after the limit.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let run = run("sh", &["-c".into(), script], Duration::from_millis(500))
            .await
            .unwrap();
        assert!(run.timed_out);
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Reaped by init or a zombie at most: not running `sleep` any more.
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z"), "{state}");
    }

    #[tokio::test]
    async fn done_marker_ends_the_run() {
        let run = run(
            "sh",
            &["-c".into(), "echo KMF:DONE; exec sleep 300".into()],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert!(!run.timed_out);
        assert!(run.console.contains("KMF:DONE"));
        assert!(run.elapsed < Duration::from_secs(10));
    }
}
