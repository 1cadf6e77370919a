//! Starting a command with limits, logging its output with a cap, and ending it: shared by every sandbox.

use std::borrow::Cow;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cgroup::RunCgroup;
use crate::sys::{self, ChildSetup, Rlimit};
use crate::{ExitKind, Limits, RunOutcome, SandboxError};

/// How long output may keep coming after the command ended and its leftovers were killed.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// A command ready to start on the host.
#[derive(Debug)]
pub(crate) struct Launch {
    /// For the log header and tracing (`bubblewrap`, `none`).
    pub sandbox: &'static str,
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The whole environment of the started program.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    /// Host (uid, gid) to run as.
    pub drop_to: Option<(u32, u32)>,
    /// Set `RLIMIT_NPROC` even when a pids cgroup is there: right when the uid belongs to this run alone.
    pub nproc_rlimit_always: bool,
    /// More header lines for the log (without `# `).
    pub notes: Vec<String>,
}

/// Output counters, shared so that they survive a reader that had to be abandoned.
#[derive(Debug, Default)]
struct LogStats {
    written: AtomicU64,
    dropped: AtomicU64,
    truncated: AtomicBool,
}

/// Quotes an argument for a POSIX shell, so that the header line can be pasted back into one.
pub(crate) fn shell_quote(arg: &str) -> Cow<'_, str> {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        return Cow::Borrowed(arg);
    }
    if arg.chars().any(char::is_control) {
        // One header line must stay one line: ANSI-C quoting spells control characters out.
        let mut s = String::from("$'");
        for c in arg.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\'' => s.push_str("\\'"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('\'');
        return Cow::Owned(s);
    }
    Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")))
}

pub(crate) fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn pump(
    mut rx: tokio::net::unix::pipe::Receiver,
    mut log: tokio::fs::File,
    max: u64,
    stats: Arc<LogStats>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut write_error = None;
    loop {
        let n = rx.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let written = stats.written.load(Ordering::Relaxed);
        let keep = (max.saturating_sub(written)).min(n as u64) as usize;
        if keep > 0 && write_error.is_none() {
            match log.write_all(&buf[..keep]).await {
                Ok(()) => {
                    stats.written.fetch_add(keep as u64, Ordering::Relaxed);
                }
                // Keep reading all the same: a full pipe would stall the build.
                Err(e) => write_error = Some(e),
            }
        }
        if keep < n {
            stats.truncated.store(true, Ordering::Relaxed);
            stats
                .dropped
                .fetch_add((n - keep) as u64, Ordering::Relaxed);
        }
    }
    if let Some(e) = write_error {
        return Err(e);
    }
    log.flush().await
}

/// Runs `launch` to completion or timeout, writing the log, and cleans up every process it left.
pub(crate) async fn execute(
    launch: Launch,
    limits: &Limits,
    log_path: &Path,
) -> Result<RunOutcome, SandboxError> {
    let command_line: Vec<String> = std::iter::once(&launch.program)
        .chain(&launch.args)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();

    let cgroup = RunCgroup::create(limits.memory_bytes, limits.max_processes);
    let mut rlimits = vec![Rlimit::CoreSize(0)];
    let memory_via = match (&cgroup.memory, limits.memory_bytes) {
        (Some(via), _) => via.description.clone(),
        (None, Some(n)) => {
            rlimits.push(Rlimit::AddressSpace(n));
            format!("RLIMIT_AS={} per process (no usable memory cgroup)", n)
        }
        (None, None) => "no limit".to_string(),
    };
    let mut pids_via = Vec::new();
    if let (Some(via), Some(_)) = (&cgroup.pids, limits.max_processes) {
        pids_via.push(via.description.clone());
    }
    if let Some(n) = limits.max_processes {
        if launch.nproc_rlimit_always || cgroup.pids.is_none() {
            rlimits.push(Rlimit::Processes(n));
            pids_via.push(format!(
                "RLIMIT_NPROC={n} for uid {}",
                launch.drop_to.map_or(sys::effective_uid(), |(u, _)| u)
            ));
        }
    }
    let pids_via = if pids_via.is_empty() {
        "no limit".to_string()
    } else {
        pids_via.join(" + ")
    };
    tracing::info!(
        sandbox = launch.sandbox,
        memory = %memory_via,
        processes = %pids_via,
        "resource limits of the run"
    );

    if let Some(parent) = log_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(SandboxError::io("create the log directory", parent))?;
    }
    // Never follow a symlink someone planted where the log goes.
    let mut log = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log_path)
        .await
        .map_err(SandboxError::io("create the log", log_path))?;
    let mut header = format!(
        "# kmodfarm sandbox={}: {}\n",
        launch.sandbox,
        shell_join(&command_line)
    );
    header.push_str(&format!(
        "# limits: timeout {}s; memory: {memory_via}; processes: {pids_via}; log: {} bytes\n",
        limits.timeout.as_secs_f64(),
        limits.max_log_bytes
    ));
    for note in &launch.notes {
        header.push_str(&format!("# {note}\n"));
    }
    log.write_all(header.as_bytes())
        .await
        .map_err(SandboxError::io("write the log", log_path))?;

    // One pipe for stdout and stderr keeps their lines in the order they were written.
    let pipe_err = |e| {
        SandboxError::io(
            "create a pipe for the output of",
            PathBuf::from(&launch.program),
        )(e)
    };
    let (tx, rx) = tokio::net::unix::pipe::pipe().map_err(pipe_err)?;
    let out: OwnedFd = tx.into_blocking_fd().map_err(pipe_err)?;
    let err = out.try_clone().map_err(pipe_err)?;

    let mut cmd = std::process::Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // Its own process group: a timeout kills the group, and the terminal's Ctrl-C reaches kmodfarm,
        // which ends the run by dropping it (the child also gets SIGKILL when kmodfarm dies).
        .process_group(0);
    sys::install_child_setup(
        &mut cmd,
        ChildSetup {
            cgroup_procs: cgroup.procs_files(),
            rlimits,
            drop_to: launch.drop_to,
            parent_pid: std::process::id() as i32,
        },
    );
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let started = Instant::now();
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end; EOF only comes once they are closed.
    drop(cmd);
    let mut child = spawned.map_err(|source| SandboxError::Spawn {
        program: launch.program.to_string_lossy().into_owned(),
        source,
    })?;
    let pgid = child.id().map(|p| p as i32);

    let stats = Arc::new(LogStats::default());
    // Boxed so that an abandoned reader can be dropped (closing the log) before the notes are appended.
    let mut reader = Box::pin(pump(rx, log, limits.max_log_bytes, stats.clone()));
    let mut read_result: Option<std::io::Result<()>> = None;
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);

    let kill_tree = |child: &mut tokio::process::Child| {
        if let Some(pgid) = pgid {
            let _ = sys::kill_group(pgid, libc::SIGKILL);
        }
        let _ = child.start_kill();
        cgroup.kill_all();
    };

    let mut timed_out = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(SandboxError::Wait)?,
            r = &mut reader, if read_result.is_none() => read_result = Some(r),
            _ = &mut deadline => {
                timed_out = true;
                tracing::warn!(
                    sandbox = launch.sandbox,
                    timeout_s = limits.timeout.as_secs_f64(),
                    "the command ran past its time limit; killing it"
                );
                kill_tree(&mut child);
                break child.wait().await.map_err(SandboxError::Wait)?;
            }
        }
    };
    let duration = started.elapsed();

    // Nothing of the run may outlive it: background processes of the group or cgroup go too.
    if let Some(pgid) = pgid {
        let _ = sys::kill_group(pgid, libc::SIGKILL);
    }
    cgroup.kill_all();
    let mut abandoned = false;
    if read_result.is_none() {
        match tokio::time::timeout(DRAIN_GRACE, &mut reader).await {
            Ok(r) => read_result = Some(r),
            Err(_) => {
                tracing::warn!(
                    sandbox = launch.sandbox,
                    "a leftover process keeps the output open; stopped reading it"
                );
                abandoned = true;
            }
        }
    }
    let oom = cgroup.oom_killed();
    cgroup.remove().await;
    if let Some(Err(e)) = read_result {
        return Err(SandboxError::Io {
            action: "write the log",
            path: log_path.to_path_buf(),
            source: e,
        });
    }

    let written = stats.written.load(Ordering::Relaxed);
    let truncated = stats.truncated.load(Ordering::Relaxed);
    let mut trailer = String::new();
    if truncated {
        trailer.push_str(&format!(
            "\n[kmodfarm: log truncated at {} bytes; {} more bytes of output were dropped]\n",
            limits.max_log_bytes,
            stats.dropped.load(Ordering::Relaxed)
        ));
    }
    if timed_out {
        trailer.push_str(&format!(
            "\n[kmodfarm: timed out after {:.0}s; the command and all its processes were killed]\n",
            limits.timeout.as_secs_f64()
        ));
    }
    if oom {
        trailer.push_str(&format!(
            "\n[kmodfarm: the memory limit ({} bytes) was reached and the kernel killed a process]\n",
            limits.memory_bytes.unwrap_or(0)
        ));
    }
    if abandoned {
        trailer.push_str(
            "\n[kmodfarm: a leftover process kept the output open; the rest was not read]\n",
        );
    }
    drop(reader);
    if !trailer.is_empty() {
        let mut f = tokio::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(log_path)
            .await
            .map_err(SandboxError::io("append to the log", log_path))?;
        f.write_all(trailer.as_bytes())
            .await
            .map_err(SandboxError::io("append to the log", log_path))?;
        f.flush()
            .await
            .map_err(SandboxError::io("append to the log", log_path))?;
    }

    let exit = if timed_out {
        ExitKind::TimedOut
    } else if let Some(code) = status.code() {
        ExitKind::Exited(code)
    } else if let Some(sig) = status.signal() {
        ExitKind::Signaled(sig)
    } else {
        ExitKind::Exited(-1)
    };
    tracing::debug!(
        sandbox = launch.sandbox,
        ?exit,
        ?duration,
        log_bytes = written,
        "run finished"
    );
    Ok(RunOutcome {
        exit,
        duration,
        log_bytes: written,
        log_truncated: truncated,
        command_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_a_shell() {
        let args: Vec<String> = vec![
            "make".into(),
            "M=/build/src".into(),
            "it's".into(),
            "a b".into(),
            "".into(),
            "$HOME".into(),
            "x\ny".into(),
        ];
        let line = shell_join(&args);
        assert!(!line.contains('\n'), "{line}");
        // bash understands $'...' quoting; printf shows each argument on its own line.
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "for a in {}; do printf '<%s>' \"$a\"; done",
                &line[5..]
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "<M=/build/src><it's><a b><><$HOME><x\ny>"
        );
    }
}
