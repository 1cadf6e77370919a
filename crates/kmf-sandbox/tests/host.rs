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

#[tokio::test]
async fn the_log_cap_applies() {
    let f = Fixture::new();
    let mut spec = host_spec(&f, "head -c 300000 /dev/zero | tr '\\0' x");
    spec.limits.max_log_bytes = 1000;
    let out = HostRunner.run(&spec).await.unwrap();
    assert!(out.success());
    assert!(out.log_truncated);
    assert_eq!(out.log_bytes, 1000);
    assert!(f.log_text().contains(
        "[kmodfarm: log truncated at 1000 bytes; 299000 more bytes of output were dropped]"
    ));
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
