//! Judging a boot from its console: the init's `KMF:` markers and the kernel's own messages.

use std::time::Duration;

use kmf_types::FailureClass;

/// Taint bits an out-of-tree (`O`, 4096), unsigned (`E`, 8192) module causes; any other bit fails.
pub const ALLOWED_TAINT: u64 = (1 << 12) | (1 << 13);

/// `/proc/sys/kernel/tainted` bits as `dmesg` letters them.
const TAINT_LETTERS: &[(u32, char, &str)] = &[
    (0, 'P', "proprietary module"),
    (1, 'F', "forced module load"),
    (2, 'S', "unsafe SMP / out-of-spec system"),
    (3, 'R', "forced module unload"),
    (4, 'M', "machine check"),
    (5, 'B', "bad page"),
    (6, 'U', "user request"),
    (7, 'D', "kernel died (oops or BUG)"),
    (8, 'A', "ACPI table overridden"),
    (9, 'W', "kernel warning"),
    (10, 'C', "staging driver"),
    (11, 'I', "firmware workaround"),
    (12, 'O', "out-of-tree module"),
    (13, 'E', "unsigned module"),
    (14, 'L', "soft lockup"),
    (15, 'K', "live patched"),
    (16, 'X', "auxiliary"),
    (17, 'T', "randomised struct layout"),
    (18, 'N', "in-kernel test"),
];

/// The taint flags of `value` in `dmesg`'s letters, with what they mean.
pub fn describe_taint(value: u64) -> String {
    let mut parts = Vec::new();
    for (bit, letter, what) in TAINT_LETTERS {
        if value & (1 << bit) != 0 {
            parts.push(format!("{letter} ({what})"));
        }
    }
    let known: u64 = TAINT_LETTERS.iter().map(|(b, _, _)| 1u64 << b).sum();
    if value & !known != 0 {
        parts.push(format!("bits {:#x}", value & !known));
    }
    parts.join(", ")
}

/// Taint bits not caused by loading an out-of-tree unsigned module.
pub fn disallowed_taint(value: u64) -> u64 {
    value & !ALLOWED_TAINT
}

/// What the init reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    pub init: bool,
    pub done: bool,
    /// The module being loaded last (`KMF:LOADING:`).
    pub loading: Option<String>,
    pub loaded: Vec<String>,
    /// (module, message) of a failed load.
    pub load_failed: Option<(String, String)>,
    pub unload_failed: Vec<(String, String)>,
    pub unloaded: Vec<String>,
    pub check: Option<i32>,
    pub taint_before: Option<u64>,
    pub taint: Option<u64>,
}

/// Reads the `KMF:` markers. The init repeats them between `KMF:SUMMARY:BEGIN` and `KMF:SUMMARY:END`
/// once the kernel is quiet; without that block (a hang, a panic) the live markers count, where the
/// kernel may have printed into the middle of a line, so a marker is found anywhere in a line, and any
/// marker at all shows that init ran.
pub fn markers(console: &str) -> Markers {
    let summary = console.find("KMF:SUMMARY:BEGIN").and_then(|start| {
        let body = &console[start + "KMF:SUMMARY:BEGIN".len()..];
        body.find("KMF:SUMMARY:END").map(|end| &body[..end])
    });
    let mut m = markers_in(summary.unwrap_or(console));
    m.init = m.init || console.contains("KMF:");
    m.done = m.done || console.contains("KMF:DONE") || summary.is_some();
    m
}

fn markers_in(text: &str) -> Markers {
    let mut m = Markers::default();
    for line in text.lines() {
        let Some(pos) = line.find("KMF:") else {
            continue;
        };
        let rest = line[pos + 4..].trim_end_matches('\r').trim_end();
        let (tag, value) = rest.split_once(':').unwrap_or((rest, ""));
        match tag {
            "INIT" => m.init = true,
            "DONE" => m.done = true,
            "LOADING" => m.loading = Some(value.to_string()),
            "LOAD" => {
                if let Some(name) = value.strip_prefix("OK:") {
                    m.loaded.push(name.to_string());
                } else if let Some(rest) = value.strip_prefix("FAIL:") {
                    let (name, msg) = split_failure(rest);
                    m.load_failed.get_or_insert((name, msg));
                }
            }
            "UNLOAD" => {
                if let Some(name) = value.strip_prefix("OK:") {
                    m.unloaded.push(name.to_string());
                } else if let Some(rest) = value.strip_prefix("FAIL:") {
                    m.unload_failed.push(split_failure(rest));
                }
            }
            "CHECK" => m.check = value.trim().parse().ok(),
            "TAINT0" => m.taint_before = value.trim().parse().ok(),
            "TAINT" => m.taint = value.trim().parse().ok(),
            _ => {}
        }
    }
    m
}

/// `name:rc:message` → (name, "exit status rc: message").
fn split_failure(rest: &str) -> (String, String) {
    let mut parts = rest.splitn(3, ':');
    let name = parts.next().unwrap_or("").to_string();
    let rc = parts.next().unwrap_or("?");
    let msg = parts.next().unwrap_or("").trim();
    let msg = if msg.is_empty() {
        format!("exit status {rc}")
    } else {
        format!("exit status {rc}: {msg}")
    };
    (name, msg)
}

/// A kernel message that fails the test, with the class it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelProblem {
    pub class: FailureClass,
    /// What kind: "kernel oops", "unknown symbol", ...
    pub kind: &'static str,
    pub line: String,
}

/// Kernel messages that mean the module did not load cleanly, or the kernel is in trouble; the first
/// matching pattern of a line wins. Lines the init printed (`KMF:`) are not kernel messages.
const PATTERNS: &[(&str, FailureClass, &str)] = &[
    (
        "version magic",
        FailureClass::LoadFailed,
        "vermagic mismatch",
    ),
    (
        "disagrees about version of symbol",
        FailureClass::LoadFailed,
        "symbol version mismatch",
    ),
    ("Unknown symbol", FailureClass::LoadFailed, "unknown symbol"),
    (
        ".gnu.linkonce.this_module section size must match",
        FailureClass::LoadFailed,
        "vermagic/ABI mismatch (struct module differs: built for another kernel)",
    ),
    (
        "Invalid module format",
        FailureClass::LoadFailed,
        "invalid module format",
    ),
    ("Kernel panic", FailureClass::KernelWarning, "kernel panic"),
    ("Oops", FailureClass::KernelWarning, "kernel oops"),
    (
        "Internal error:",
        FailureClass::KernelWarning,
        "kernel oops",
    ),
    (
        "Unable to handle kernel",
        FailureClass::KernelWarning,
        "kernel oops",
    ),
    (
        "general protection fault",
        FailureClass::KernelWarning,
        "kernel oops",
    ),
    ("BUG:", FailureClass::KernelWarning, "kernel BUG"),
    ("kernel BUG at", FailureClass::KernelWarning, "kernel BUG"),
    ("WARNING:", FailureClass::KernelWarning, "kernel WARNING"),
    (
        "blocked for more than",
        FailureClass::KernelWarning,
        "hung task",
    ),
];

/// Every problem line of the kernel log in `console`, in order.
pub fn kernel_problems(console: &str) -> Vec<KernelProblem> {
    let mut out = Vec::new();
    for line in console.lines() {
        if line.contains("KMF:") || line.contains("Kernel command line:") {
            continue;
        }
        if let Some((_, class, kind)) = PATTERNS.iter().find(|(p, _, _)| line.contains(p)) {
            out.push(KernelProblem {
                class: *class,
                kind,
                line: clean(line),
            });
        }
    }
    out
}

/// A console line without its `[    1.234567]` timestamp and carriage return.
fn clean(line: &str) -> String {
    let line = line.trim_end_matches('\r').trim();
    let line = match line.strip_prefix('[') {
        Some(rest) => match rest.find(']') {
            Some(end) => rest[end + 1..].trim_start(),
            None => line,
        },
        None => line,
    };
    line.to_string()
}

/// How the VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself (power off, reboot after a panic, or a QEMU error).
    Exited,
    /// The hard time limit killed it.
    TimedOut(Duration),
}

/// The verdict of one boot: `Ok` only if every module loaded and unloaded, the check (if any) passed,
/// the kernel printed no problem and the taint flags are only those of an out-of-tree unsigned module.
pub fn judge(console: &str, ending: Ending) -> Result<(), (FailureClass, String)> {
    let m = markers(console);
    let problems = kernel_problems(console);
    let first_warning = problems
        .iter()
        .find(|p| p.class == FailureClass::KernelWarning);
    let during = |m: &Markers| match (&m.load_failed, &m.loading) {
        (Some((name, _)), _) => format!(" while loading {name}"),
        (None, Some(name)) if !m.loaded.contains(name) => format!(" while loading {name}"),
        _ if m.unloaded.is_empty() && m.unload_failed.is_empty() => String::new(),
        _ => " while unloading".to_string(),
    };

    if let Ending::TimedOut(limit) = ending {
        let secs = limit.as_secs_f64();
        let seen = first_warning
            .map(|p| format!(" (the kernel reported: {})", p.line))
            .unwrap_or_default();
        let msg = if !m.init {
            format!("the kernel did not start init within {secs:.0} s{seen}")
        } else if m.done {
            format!("the VM did not power off within {secs:.0} s{seen}")
        } else {
            let what = match &m.loading {
                Some(name) if !m.loaded.contains(name) => format!("loading {name}"),
                _ if m.check.is_none() && !m.loaded.is_empty() => "the check or unloading".into(),
                _ => "the test".into(),
            };
            format!("{what} did not finish within {secs:.0} s{seen}")
        };
        return Err((FailureClass::BootTimeout, msg));
    }
    if let Some(p) = first_warning {
        if !m.init {
            return Err((
                FailureClass::BootFailed,
                format!("{} before init: {}", p.kind, p.line),
            ));
        }
        // An oops starts with its cause ("BUG: kernel NULL pointer dereference"): report that line,
        // named as the oops it is.
        let kind = if problems.iter().any(|p| p.kind == "kernel oops") {
            "kernel oops"
        } else {
            p.kind
        };
        return Err((
            FailureClass::KernelWarning,
            format!("{kind}{}: {}", during(&m), p.line),
        ));
    }
    if !m.init {
        return Err((
            FailureClass::BootFailed,
            format!(
                "the kernel did not start init; last console lines: {}",
                tail(console, 3)
            ),
        ));
    }
    let load_problem = problems
        .iter()
        .find(|p| p.class == FailureClass::LoadFailed);
    if let Some((name, msg)) = &m.load_failed {
        let why = match load_problem {
            Some(p) => format!("{}: {}", p.kind, p.line),
            None => msg.clone(),
        };
        return Err((
            FailureClass::LoadFailed,
            format!("loading {name} failed: {why}"),
        ));
    }
    if let Some(p) = load_problem {
        return Err((FailureClass::LoadFailed, format!("{}: {}", p.kind, p.line)));
    }
    if let Some((name, msg)) = m.unload_failed.first() {
        return Err((
            FailureClass::LoadFailed,
            format!("unloading {name} failed: {msg}"),
        ));
    }
    if let Some(rc) = m.check.filter(|rc| *rc != 0) {
        return Err((
            FailureClass::CheckFailed,
            format!("the check script exited with status {rc}"),
        ));
    }
    if !m.done {
        return Err((
            FailureClass::BootFailed,
            format!(
                "the VM stopped before the test finished; last console lines: {}",
                tail(console, 3)
            ),
        ));
    }
    match m.taint {
        Some(t) if disallowed_taint(t) != 0 => Err((
            FailureClass::KernelWarning,
            format!(
                "the kernel is tainted: {}{}",
                describe_taint(disallowed_taint(t)),
                match m.taint_before {
                    Some(b) if disallowed_taint(b) != 0 => " (already before loading)",
                    _ => "",
                }
            ),
        )),
        Some(_) => Ok(()),
        None => Err((
            FailureClass::BootFailed,
            "the init did not report the taint flags".into(),
        )),
    }
}

/// The last `n` non-empty lines, joined with " | ".
fn tail(console: &str, n: usize) -> String {
    let lines: Vec<String> = console
        .lines()
        .map(clean)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    if lines.is_empty() {
        return "(none)".into();
    }
    lines[start..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "\
[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.invalid)\r
[    0.000000] Kernel command line: console=ttyS0 panic=-1 oops=panic quiet\r
KMF:INIT\r
KMF:TAINT0:0\r
KMF:LOADING:pair_producer\r
[    1.201000] pair_producer: loading out-of-tree module taints kernel.\r
[    1.201500] pair_producer: module verification failed: signature and/or required key missing - tainting kernel\r
KMF:LOAD:OK:pair_producer\r
KMF:LOADING:pair_consumer\r
KMF:LOAD:OK:pair_consumer\r
KMF:UNLOAD:OK:pair_consumer\r
KMF:UNLOAD:OK:pair_producer\r
KMF:TAINT:12288\r
KMF:DONE\r
";

    #[test]
    fn a_clean_run_passes() {
        assert_eq!(judge(PASS, Ending::Exited), Ok(()));
        let m = markers(PASS);
        assert_eq!(m.loaded, ["pair_producer", "pair_consumer"]);
        assert_eq!(m.unloaded, ["pair_consumer", "pair_producer"]);
        assert_eq!(m.taint, Some(12288));
    }

    #[test]
    fn taint_rule() {
        assert_eq!(disallowed_taint(0), 0);
        assert_eq!(disallowed_taint(4096 | 8192), 0);
        assert_eq!(disallowed_taint(4096 | 512), 512);
        assert_eq!(
            describe_taint(512 | 128),
            "D (kernel died (oops or BUG)), W (kernel warning)"
        );
        let warned = PASS.replace("KMF:TAINT:12288", "KMF:TAINT:12800");
        let (class, msg) = judge(&warned, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::KernelWarning);
        assert!(msg.contains("W (kernel warning)"), "{msg}");
        let proprietary = PASS.replace("KMF:TAINT:12288", "KMF:TAINT:4097");
        assert!(judge(&proprietary, Ending::Exited).is_err());
    }

    #[test]
    fn an_oops_is_a_kernel_warning() {
        let console = "\
KMF:INIT\r
KMF:TAINT0:0\r
KMF:LOADING:nullderef\r
[    1.50] BUG: kernel NULL pointer dereference, address: 0000000000000000\r
[    1.51] #PF: supervisor write access in kernel mode\r
[    1.52] Oops: 0002 [#1] PREEMPT SMP NOPTI\r
[    1.60] Kernel panic - not syncing: Fatal exception\r
";
        let (class, msg) = judge(console, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::KernelWarning);
        assert!(
            msg.starts_with("kernel oops while loading nullderef: BUG: kernel NULL"),
            "{msg}"
        );
        // arm64 words it differently.
        let arm = "KMF:INIT\nKMF:LOADING:x\n[ 2.0] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000\n[ 2.1] Internal error: Oops: 0000000096000045 [#1] SMP\n";
        let (class, msg) = judge(arm, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::KernelWarning);
        assert!(msg.contains("kernel oops while loading x"), "{msg}");
    }

    #[test]
    fn load_failures_say_why() {
        let vermagic = "\
KMF:INIT\r
KMF:LOADING:hello\r
[    1.1] hello: version magic '6.1.0-55-amd64 SMP preempt mod_unload modversions ' should be '6.12.57+deb12-amd64 SMP preempt mod_unload modversions '\r
KMF:LOAD:FAIL:hello:1:insmod: can't insert '/kmf/00-hello.ko': invalid module format\r
KMF:TAINT:0\r
KMF:DONE\r
";
        let (class, msg) = judge(vermagic, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::LoadFailed);
        assert!(
            msg.starts_with("loading hello failed: vermagic mismatch: hello: version magic"),
            "{msg}"
        );

        let crc = vermagic.replace(
            "hello: version magic '6.1.0-55-amd64 SMP preempt mod_unload modversions ' should be '6.12.57+deb12-amd64 SMP preempt mod_unload modversions '",
            "hello: disagrees about version of symbol _printk",
        );
        let (class, msg) = judge(&crc, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::LoadFailed);
        assert!(
            msg.contains(
                "symbol version mismatch: hello: disagrees about version of symbol _printk"
            ),
            "{msg}"
        );

        let unknown = "KMF:INIT\n[ 1.0] pair_consumer: Unknown symbol pair_producer_answer (err -2)\nKMF:LOAD:FAIL:pair_consumer:1:insmod: can't insert 'x': unknown symbol in module, or unknown parameter\nKMF:DONE\n";
        let (class, msg) = judge(unknown, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::LoadFailed);
        assert!(
            msg.contains("unknown symbol: pair_consumer: Unknown symbol pair_producer_answer"),
            "{msg}"
        );

        let bare = "KMF:INIT\nKMF:LOAD:FAIL:m:1:insmod: can't insert 'm.ko': Operation not permitted\nKMF:DONE\n";
        let (class, msg) = judge(bare, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::LoadFailed);
        assert_eq!(
            msg,
            "loading m failed: exit status 1: insmod: can't insert 'm.ko': Operation not permitted"
        );
    }

    #[test]
    fn timeouts_and_boot_failures() {
        let stuck = "KMF:INIT\r\nKMF:TAINT0:0\r\nKMF:LOADING:spin\r\n[ 1.0] spin: spinning\r\n";
        let (class, msg) = judge(stuck, Ending::TimedOut(Duration::from_secs(20))).unwrap_err();
        assert_eq!(class, FailureClass::BootTimeout);
        assert_eq!(msg, "loading spin did not finish within 20 s");

        let (class, msg) = judge(
            "[ 0.1] Linux version 6.1\r\n",
            Ending::TimedOut(Duration::from_secs(5)),
        )
        .unwrap_err();
        assert_eq!(class, FailureClass::BootTimeout);
        assert!(msg.contains("did not start init"), "{msg}");

        let panic = "[ 0.9] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n";
        let (class, _) = judge(panic, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::BootFailed);

        let (class, _) =
            judge("qemu-system-x86_64: cannot load kernel\n", Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::BootFailed);

        let cut = "KMF:INIT\nKMF:LOADING:a\nKMF:LOAD:OK:a\n";
        let (class, msg) = judge(cut, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::BootFailed);
        assert!(msg.contains("stopped before the test finished"), "{msg}");
    }

    #[test]
    fn the_summary_block_wins_over_garbled_live_markers() {
        // The kernel printed into the live INIT and LOAD:OK lines; the summary repeats them intact.
        let console = "\
KMF:IN[    2.0] random: crng init done\r
IT\r
KMF:TAINT0:0\r
KMF:LOADING:a\r
KMF:LOAD:[    2.1] a: loaded\r
OK:a\r
KMF:UNLOAD:OK:a\r
KMF:TAINT:12288\r
KMF:DMESG:BEGIN\r
[    2.1] a: loaded\r
KMF:DMESG:END\r
KMF:SUMMARY:BEGIN\r
KMF:INIT\r
KMF:TAINT0:0\r
KMF:LOADING:a\r
KMF:LOAD:OK:a\r
KMF:UNLOAD:OK:a\r
KMF:TAINT:12288\r
KMF:SUMMARY:END\r
KMF:DONE\r
";
        assert_eq!(judge(console, Ending::Exited), Ok(()));
        assert_eq!(markers(console).loaded, ["a"]);
    }

    #[test]
    fn struct_module_mismatch_is_a_load_failure() {
        let console = "KMF:INIT\nKMF:LOADING:hello\n[ 3.3] module hello: .gnu.linkonce.this_module section size must match the kernel's built struct module size at run time\nKMF:LOAD:FAIL:hello:8:insmod: can't insert '/kmf/00-hello.ko': invalid module format\nKMF:DONE\n";
        let (class, msg) = judge(console, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::LoadFailed);
        assert!(
            msg.starts_with("loading hello failed: vermagic/ABI mismatch"),
            "{msg}"
        );
    }

    #[test]
    fn check_script_status_counts() {
        let failed = PASS.replace(
            "KMF:UNLOAD:OK:pair_consumer",
            "KMF:CHECK:3\r\nKMF:UNLOAD:OK:pair_consumer",
        );
        let (class, msg) = judge(&failed, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::CheckFailed);
        assert_eq!(msg, "the check script exited with status 3");
        let ok = PASS.replace(
            "KMF:UNLOAD:OK:pair_consumer",
            "KMF:CHECK:0\r\nKMF:UNLOAD:OK:pair_consumer",
        );
        assert_eq!(judge(&ok, Ending::Exited), Ok(()));
    }

    #[test]
    fn unload_failures_fail() {
        let failed = PASS.replace(
            "KMF:UNLOAD:OK:pair_consumer",
            "KMF:UNLOAD:FAIL:pair_consumer:1:rmmod: can't unload module 'pair_consumer': Resource temporarily unavailable",
        );
        let (class, msg) = judge(&failed, Ending::Exited).unwrap_err();
        assert_eq!(class, FailureClass::LoadFailed);
        assert!(
            msg.starts_with("unloading pair_consumer failed: exit status 1: rmmod"),
            "{msg}"
        );
    }
}
