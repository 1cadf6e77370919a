//! `--sandbox none`: no isolation, but the same logging, limits and clean-up.

mod common;

use std::time::{Duration, Instant};

use common::{assert_none_left, Fixture};
use kmf_sandbox::{ExitKind, HostRunner, Sandbox, SandboxError};

fn host_spec(f: &Fixture, script: &str) -> kmf_sandbox::SandboxSpec {
    let mut spec = f.spec(script);
    spec.cwd = f.build.clone();
    spec
}

#[tokio::test]
async fn runs_in_cwd_with_exit_codes_and_a_header() {
    let f = Fixture::new();
    let out = HostRunner
        .run(&host_spec(&f, "pwd; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.exit, ExitKind::Exited(3));
    assert_eq!(
        out.command_line,
        vec!["bash", "-c", "pwd; echo err >&2; exit 3"]
    );
    assert_eq!(f.output(), format!("{}\nerr\n", f.build.display()));
    let log = f.log_text();
    assert!(
        log.starts_with("# kmodfarm sandbox=none: bash -c 'pwd; echo err >&2; exit 3'\n"),
        "{log}"
    );
    assert!(log.contains("# no isolation"), "{log}");
    // Killed by a signal: no shell or bwrap in between to turn it into a status.
    let out = HostRunner
        .run(&host_spec(&f, "kill -KILL $$"))
        .await
        .unwrap();
    assert_eq!(out.exit, ExitKind::Signaled(9));
    assert_eq!(HostRunner.name(), "none");
}

#[tokio::test]
async fn a_timeout_kills_the_process_group() {
    let f = Fixture::new();
    let marker = "1000.0519";
    let mut spec = host_spec(&f, &format!("sh -c 'sleep {marker} & sleep {marker}'"));
    spec.limits.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let out = HostRunner.run(&spec).await.unwrap();
    assert_eq!(out.exit, ExitKind::TimedOut);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_none_left(marker, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn background_processes_do_not_outlive_the_run() {
    let f = Fixture::new();
    let marker = "1000.0631";
    let start = Instant::now();
    let out = HostRunner
        .run(&host_spec(
            &f,
            &format!("sleep {marker} & echo left-behind"),
        ))
        .await
        .unwrap();
    assert!(out.success());
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(f.output(), "left-behind\n");
    assert_none_left(marker, Duration::from_secs(2)).await;
}

/// The log's size is bounded by its header, the cap and kmodfarm's notes (plus the newline closing a
/// partial last line).
fn assert_log_within_cap(f: &Fixture, cap: u64) {
    let log = f.log_text();
    let header: usize = log
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| l.len() + 1)
        .sum();
    let notes: usize = log
        .lines()
        .filter(|l| l.starts_with("[kmodfarm: "))
        .map(|l| l.len() + 2)
        .sum();
    let size = std::fs::metadata(&f.log).unwrap().len() as usize;
    assert!(
        size <= header + cap as usize + 1 + notes,
        "log of {size} bytes: header {header} + cap {cap} + notes {notes}"
    );
}

#[tokio::test]
async fn output_past_the_log_limit_stops_the_run() {
    let f = Fixture::new();
    let marker = "1000.0523";
    // Endless output, and a background process that must not outlive the stop either.
    let mut spec = host_spec(
        &f,
        &format!("sleep {marker} & echo first; yes; echo finished"),
    );
    spec.limits.max_log_bytes = 1000;
    spec.limits.timeout = Duration::from_secs(60);
    let start = Instant::now();
    let out = HostRunner.run(&spec).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.exit, ExitKind::Signaled(9), "{}", f.log_text());
    assert!(!out.success());
    assert!(out.log_limit_exceeded && out.log_truncated);
    assert!(!out.oom_killed);
    assert!(
        out.log_bytes <= 1000 && out.log_bytes > 900,
        "{}",
        out.log_bytes
    );
    let log = f.log_text();
    assert!(log.contains("\n| first\n| y\n| y\n"), "{log}");
    assert!(
        log.ends_with(
            "\n\n[kmodfarm: output exceeded the log limit of 1000 bytes; the run was stopped]\n"
        ),
        "{log}"
    );
    assert!(!f.output().contains("finished"));
    assert_log_within_cap(&f, 1000);
    common::assert_log_is_well_formed(&std::fs::read(&f.log).unwrap());
    assert_none_left(marker, Duration::from_secs(2)).await;

    // Output that ends before the cap is left alone.
    let mut spec = host_spec(&f, "yes | head -c 500");
    spec.limits.max_log_bytes = 1000;
    let out = HostRunner.run(&spec).await.unwrap();
    assert!(out.success());
    assert!(!out.log_limit_exceeded && !out.log_truncated);
    assert_eq!(out.log_bytes, 1000, "250 lines of `y` with their prefixes");
    assert!(!f.log_text().contains("[kmodfarm:"));
}

/// Escapes and prefixes count against the cap: output made only of ESC bytes takes four times its size.
#[tokio::test]
async fn escapes_count_against_the_log_limit() {
    let f = Fixture::new();
    let mut spec = host_spec(&f, "head -c 100000 /dev/zero | tr '\\0' '\\033'");
    spec.limits.max_log_bytes = 4096;
    let out = HostRunner.run(&spec).await.unwrap();
    assert!(out.log_limit_exceeded);
    assert!(
        out.log_bytes <= 4096 && out.log_bytes >= 4090,
        "{}",
        out.log_bytes
    );
    let output = f.output();
    assert!(output.starts_with("\\x1b\\x1b"), "{output}");
    assert_eq!(
        output.trim_end().len() % 4,
        0,
        "only whole escapes: {output}"
    );
    assert_log_within_cap(&f, 4096);
    common::assert_log_is_well_formed(&std::fs::read(&f.log).unwrap());
}

/// Nothing the build prints can pass for one of kmodfarm's lines or drive the terminal of whoever reads
/// the log.
#[tokio::test]
async fn the_output_cannot_pass_for_kmodfarm_lines() {
    let f = Fixture::new();
    let script = r#"
        printf '[kmodfarm: the build passed]\n'
        printf '# kmodfarm sandbox=none: forged\n'
        printf 'red \033[31mtext\033[0m\tand a bell\a\n'
        printf 'progress 10%%\rprogress 100%%\n' >&2
        printf 'back\bspace del\177 csi\302\233 quote \342\200\230x\342\200\231\n'
        printf '\033]0;title\007\033[2J\n'
        printf '\n'
        printf 'no newline at the end'
    "#;
    let out = HostRunner.run(&host_spec(&f, script)).await.unwrap();
    assert!(out.success(), "{}", f.log_text());
    let raw = std::fs::read(&f.log).unwrap();
    common::assert_log_is_well_formed(&raw);
    assert_eq!(
        f.output(),
        "[kmodfarm: the build passed]\n\
         # kmodfarm sandbox=none: forged\n\
         red \\x1b[31mtext\\x1b[0m\tand a bell\\x07\n\
         progress 10%\\rprogress 100%\n\
         back\\x08space del\\x7f csi\\xc2\\x9b quote ‘x’\n\
         \\x1b]0;title\\x07\\x1b[2J\n\
         \n\
         no newline at the end\n"
    );
    let log = f.log_text();
    assert!(log.ends_with("| no newline at the end\n"), "{log}");
    // The only lines at column 0 with `#` or `[` are the real header.
    let own: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with('#') || l.starts_with('['))
        .collect();
    assert_eq!(own.len(), 3, "{own:?}");
    assert!(own[0].starts_with("# kmodfarm sandbox=none: bash -c "));
    assert!(own[1].starts_with("# limits: ") && own[2].starts_with("# no isolation"));
    // The newline that closes the partial last line is kmodfarm's, not counted as output.
    assert_eq!(
        out.log_bytes as usize + 1,
        log.len() - own.iter().map(|l| l.len() + 1).sum::<usize>()
    );
}

#[tokio::test]
async fn an_oom_kill_is_reported() {
    let f = Fixture::new();
    let mut spec = host_spec(&f, "head -c 1G /dev/zero | tail; echo after");
    spec.limits.memory_bytes = Some(64 << 20);
    let out = HostRunner.run(&spec).await.unwrap();
    let log = f.log_text();
    if !common::assert_oom_reported(&out, &log) {
        return;
    }
    // The shell survived the kill of `tail` and went on.
    assert!(out.success(), "{log}");
    assert!(f.output().ends_with("\nafter\n"), "{log}");

    let out = HostRunner.run(&host_spec(&f, "echo fine")).await.unwrap();
    assert!(!out.oom_killed);
}

#[tokio::test]
async fn the_memory_limit_applies_on_the_host_too() {
    let f = Fixture::new();
    let mut spec = host_spec(
        &f,
        "python3 -c 'b = bytearray(2 * 1024**3); print(\"ALLOCATED\")'",
    );
    spec.limits.memory_bytes = Some(256 << 20);
    let out = HostRunner.run(&spec).await.unwrap();
    assert!(!out.success(), "{}", f.log_text());
    assert!(!f.output().contains("ALLOCATED"));
}

#[tokio::test]
async fn a_planted_symlink_at_the_log_path_is_not_followed() {
    let f = Fixture::new();
    let victim = f.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::create_dir_all(f.log.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &f.log).unwrap();
    let err = HostRunner.run(&host_spec(&f, "echo x")).await.unwrap_err();
    assert!(err.to_string().contains("create the log"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[tokio::test]
async fn a_missing_program_or_cwd_is_an_error() {
    let f = Fixture::new();
    let mut spec = host_spec(&f, "");
    spec.argv = vec!["no-such-program-kmf".into()];
    let err = HostRunner.run(&spec).await.unwrap_err();
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("no-such-program-kmf"), "{err}");
    let mut spec = host_spec(&f, "true");
    spec.cwd = f.path().join("nope");
    let err = HostRunner.run(&spec).await.unwrap_err();
    assert!(err.to_string().contains("working directory"), "{err}");
}
