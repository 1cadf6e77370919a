//! Starting a command with limits, logging its output with a cap, and ending it: shared by every sandbox.

use std::borrow::Cow;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
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
    /// Descriptors the program inherits under their numbers (which its arguments name); closed in
    /// kmodfarm once the program has started.
    pub pass_fds: Vec<OwnedFd>,
}

/// Output counters, shared so that they survive a reader that had to be abandoned.
#[derive(Debug, Default)]
struct LogStats {
    /// Bytes of the output's log form written (prefixes and escapes included).
    written: AtomicU64,
    /// Bytes of raw output read after the cap was reached.
    dropped: AtomicU64,
    truncated: AtomicBool,
    /// Tells the run to stop once the cap is reached.
    limit_hit: tokio::sync::Notify,
}

/// What starts every line of the command's output in the log: kmodfarm's own lines (`# ` header lines,
/// `[kmodfarm: ...]` notes) are then the only ones starting with `#` or `[`, whatever the build prints.
const OUTPUT_PREFIX: &[u8] = b"| ";

/// Turns the command's raw output into its log form: each line prefixed with [`OUTPUT_PREFIX`], and every
/// control character but tab and newline written as an escape (`\r`, `\xNN`), so that the log holds no
/// line the build could pass off as kmodfarm's and no sequence that drives a terminal showing it. C1
/// controls encoded in UTF-8 (U+0080..U+009F, which xterm obeys like their 7-bit forms) are escaped too;
/// other bytes, invalid UTF-8 included, go through unchanged, so compiler messages stay readable.
#[derive(Debug, Default)]
struct LogFormat {
    /// Inside a line whose prefix is written.
    mid_line: bool,
    /// A 0xC2 byte held back until the next byte tells whether it starts a C1 control.
    pending_c2: bool,
}

impl LogFormat {
    /// Appends the log form of `input` to `out`, `budget` bytes at most and only in whole units (one input
    /// byte's form with the line's prefix before it where the line starts), so that the log never ends in
    /// half an escape. Returns false when the budget ran out before all of `input` went in; the rest is
    /// then lost, and so is a held-back byte.
    fn push(&mut self, input: &[u8], budget: usize, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let mut unit = Vec::with_capacity(16);
        for &b in input {
            unit.clear();
            if !self.mid_line {
                unit.extend_from_slice(OUTPUT_PREFIX);
            }
            let (mut ends_line, mut hold) = (false, false);
            if self.pending_c2 && (0x80..=0x9f).contains(&b) {
                unit.extend_from_slice(b"\\xc2");
                push_hex_escape(&mut unit, b);
            } else {
                if self.pending_c2 {
                    unit.push(0xc2);
                }
                match b {
                    0xc2 => hold = true,
                    b'\n' => {
                        unit.push(b);
                        ends_line = true;
                    }
                    b'\t' => unit.push(b),
                    b'\r' => unit.extend_from_slice(b"\\r"),
                    0..=0x1f | 0x7f => push_hex_escape(&mut unit, b),
                    _ => unit.push(b),
                }
            }
            if out.len() - start + unit.len() > budget {
                self.pending_c2 = false;
                return false;
            }
            out.extend_from_slice(&unit);
            self.pending_c2 = hold;
            if ends_line {
                self.mid_line = false;
            } else if !unit.is_empty() {
                self.mid_line = true;
            }
        }
        true
    }

    /// At the end of the output: a held-back byte (within `budget`), then a newline if the last line was not
    /// ended, so that whatever follows in the log starts a line of its own. Returns the bytes that count
    /// against the budget: only the held-back byte, the newline belongs to kmodfarm's notes.
    fn finish(&mut self, budget: usize, out: &mut Vec<u8>) -> usize {
        let mut counted = 0;
        // A held-back byte always follows its line's prefix, which went out with it.
        if std::mem::take(&mut self.pending_c2) && budget >= 1 {
            out.push(0xc2);
            counted = 1;
        }
        if self.mid_line {
            out.push(b'\n');
            self.mid_line = false;
        }
        counted
    }
}

/// `\xNN`, lower-case.
fn push_hex_escape(unit: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    unit.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ]);
}

/// Escapes control characters in a line kmodfarm writes itself (the header's notes hold paths), so that it
/// stays one line.
fn escape_note(note: &str) -> String {
    let mut s = String::with_capacity(note.len());
    for c in note.chars() {
        match c {
            '\t' => s.push(c),
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    s
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
    let mut out = Vec::with_capacity(buf.len() * 2);
    let mut format = LogFormat::default();
    let mut write_error = None;
    let budget = |stats: &LogStats| {
        usize::try_from(max.saturating_sub(stats.written.load(Ordering::Relaxed)))
            .unwrap_or(usize::MAX)
    };
    loop {
        let n = rx.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        // Past the cap the run is being stopped; what still comes is read (a full pipe would keep a
        // writer alive) and dropped.
        if stats.truncated.load(Ordering::Relaxed) {
            stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        out.clear();
        if !format.push(&buf[..n], budget(&stats), &mut out) {
            stats.truncated.store(true, Ordering::Relaxed);
            stats.limit_hit.notify_one();
        }
        if !out.is_empty() && write_error.is_none() {
            match log.write_all(&out).await {
                Ok(()) => {
                    stats.written.fetch_add(out.len() as u64, Ordering::Relaxed);
                }
                // Keep reading all the same: a full pipe would stall the build.
                Err(e) => write_error = Some(e),
            }
        }
    }
    if let Some(e) = write_error {
        return Err(e);
    }
    out.clear();
    let counted = format.finish(budget(&stats), &mut out);
    if !out.is_empty() {
        log.write_all(&out).await?;
        stats.written.fetch_add(counted as u64, Ordering::Relaxed);
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
        header.push_str(&format!("# {}\n", escape_note(note)));
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
            keep_fds: launch.pass_fds.iter().map(|fd| fd.as_raw_fd()).collect(),
        },
    );
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let started = Instant::now();
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end; EOF only comes once they are closed.
    drop(cmd);
    drop(launch.pass_fds);
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
    let mut stopped_for_log = false;
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
            // A build that floods its output is broken or hostile; letting it run on would only burn the
            // time limit.
            _ = stats.limit_hit.notified() => {
                stopped_for_log = true;
                tracing::warn!(
                    sandbox = launch.sandbox,
                    max_log_bytes = limits.max_log_bytes,
                    "the command's output went past the log limit; killing it"
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
    // Also when the cap was only reached while draining after the command's end: whatever was still
    // running was killed then all the same.
    let truncated = stats.truncated.load(Ordering::Relaxed);
    if truncated && !stopped_for_log {
        tracing::warn!(
            sandbox = launch.sandbox,
            max_log_bytes = limits.max_log_bytes,
            "the command's output went past the log limit after it ended"
        );
    }
    let mut trailer = String::new();
    if truncated {
        trailer.push_str(&format!(
            "\n[kmodfarm: output exceeded the log limit of {} bytes; the run was stopped]\n",
            limits.max_log_bytes
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
        dropped_after_the_cap = stats.dropped.load(Ordering::Relaxed),
        oom,
        "run finished"
    );
    Ok(RunOutcome {
        exit,
        duration,
        log_bytes: written,
        log_truncated: truncated,
        log_limit_exceeded: truncated,
        oom_killed: oom,
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

    /// The log form of `chunks` fed one after the other, with no cap.
    fn formatted(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = LogFormat::default();
        let mut out = Vec::new();
        for c in chunks {
            assert!(f.push(c, usize::MAX, &mut out));
        }
        f.finish(usize::MAX, &mut out);
        out
    }

    #[test]
    fn every_output_line_gets_the_prefix() {
        assert_eq!(formatted(&[b"a\nb\n"]), b"| a\n| b\n");
        assert_eq!(formatted(&[b"\n\n"]), b"| \n| \n");
        // Lines split across reads, and a last line without newline, which the log ends.
        assert_eq!(formatted(&[b"ab", b"c\nde", b"f"]), b"| abc\n| def\n");
        assert_eq!(formatted(&[]), b"");
        // What would pass for kmodfarm's own lines does not start the line.
        assert_eq!(
            formatted(&[b"[kmodfarm: all good]\n# kmodfarm sandbox=none: x\n"]),
            b"| [kmodfarm: all good]\n| # kmodfarm sandbox=none: x\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            formatted(&[b"\x1b[31mred\x1b[0m\tok\r\x07\x08\x7f\x00\x0b\x0c\x1f\n"]),
            b"| \\x1b[31mred\\x1b[0m\tok\\r\\x07\\x08\\x7f\\x00\\x0b\\x0c\\x1f\n".to_vec()
        );
        // UTF-8 text (gcc's quotes, a copyright sign) and invalid UTF-8 stay as they are.
        let text = "‘foo’ undeclared © é\n".as_bytes();
        assert_eq!(formatted(&[text]), [b"| ", text].concat());
        assert_eq!(formatted(&[b"\xff\xfe\x80\n"]), b"| \xff\xfe\x80\n");
        // C1 controls in their UTF-8 form (U+009B is a CSI to xterm), also when split across reads.
        assert_eq!(formatted(&[b"a\xc2\x9b31m\n"]), b"| a\\xc2\\x9b31m\n");
        assert_eq!(formatted(&[b"a\xc2", b"\x9b2J\n"]), b"| a\\xc2\\x9b2J\n");
        assert_eq!(formatted(&[b"\xc2", b"\xa9\n"]), b"| \xc2\xa9\n");
        assert_eq!(formatted(&[b"\xc2\xc2\x85\n"]), b"| \xc2\\xc2\\x85\n");
        assert_eq!(formatted(&[b"\xc2\n"]), b"| \xc2\n");
        assert_eq!(formatted(&[b"x\xc2"]), b"| x\xc2\n");
    }

    #[test]
    fn the_budget_takes_whole_units_only() {
        let mut f = LogFormat::default();
        let mut out = Vec::new();
        // "| a" + "b" fill 4 bytes; the escape of ESC (4 bytes) does not fit and nothing of it goes in.
        assert!(!f.push(b"ab\x1bc", 4, &mut out));
        assert_eq!(out, b"| ab");
        // A new line's prefix goes with its first byte, never alone.
        let mut f = LogFormat::default();
        let mut out = Vec::new();
        assert!(f.push(b"a\n", 4, &mut out));
        assert!(!f.push(b"b", 2, &mut out));
        assert_eq!(out, b"| a\n");
        f.finish(0, &mut out);
        assert_eq!(out, b"| a\n", "a line that never started needs no end");
        // The budget is per call: the caller passes what is left of the cap.
        let mut f = LogFormat::default();
        let mut out = Vec::new();
        assert!(f.push(b"abc", 5, &mut out));
        assert!(!f.push(b"de", 1, &mut out));
        assert_eq!(out, b"| abcd");
        f.finish(0, &mut out);
        assert_eq!(out, b"| abcd\n");
    }

    /// Arbitrary bytes in arbitrary reads: the log form never holds a control byte but newline and tab, and
    /// every line starts with the prefix.
    #[test]
    fn arbitrary_output_cannot_escape_its_lines() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200 {
            let len = (next() % 400) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| match next() % 4 {
                    0 => b"\n\r\x1b\xc2\x9b"[(next() % 5) as usize],
                    _ => next() as u8,
                })
                .collect();
            let mut f = LogFormat::default();
            let mut out = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len());
                assert!(f.push(&rest[..n], usize::MAX, &mut out));
                rest = &rest[n..];
            }
            f.finish(usize::MAX, &mut out);
            assert!(
                !out.iter()
                    .any(|&b| b < 0x20 && b != b'\n' && b != b'\t' || b == 0x7f),
                "{input:?} -> {out:?}"
            );
            assert!(
                !out.windows(2).any(|w| w == b"\xc2\x9b"),
                "{input:?} -> {out:?}"
            );
            if !out.is_empty() {
                assert_eq!(out.last(), Some(&b'\n'));
                for line in out[..out.len() - 1].split(|&b| b == b'\n') {
                    assert!(line.starts_with(b"| "), "{input:?} -> {out:?}");
                }
            }
        }
    }

    #[test]
    fn notes_stay_one_line() {
        assert_eq!(escape_note("a\nb\x1bc\td"), "a\\u{a}b\\u{1b}c\td");
    }
}
