//! Progress and summaries. Bars on a terminal; plain log lines in CI or when stderr is not a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kmf_farm::{FarmReporter, Stage, Status, VariantResult};
use kmf_types::names::printable;
use tracing_subscriber::EnvFilter;

pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("KMODFARM_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,kmodfarm={default},kmf_farm={default},kmf_build={default},kmf_kernels={default},kmf_fetch={default}"
        ))
    });
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

fn interactive() -> bool {
    std::io::stderr().is_terminal() && std::env::var("CI").map_or(true, |v| v != "true")
}

/// Live view: an overall bar plus one line per running variant (stage, elapsed).
pub struct FarmProgress {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    lines: Mutex<HashMap<String, ProgressBar>>,
    downloads: Mutex<HashMap<String, ProgressBar>>,
}

impl FarmProgress {
    pub fn new(total: usize) -> Arc<Self> {
        let (multi, overall) = if interactive() {
            let multi = MultiProgress::new();
            let bar = multi.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} variants {elapsed} {msg}")
                    .expect("valid template"),
            );
            (Some(multi), Some(bar))
        } else {
            (None, None)
        };
        Arc::new(FarmProgress {
            multi,
            overall,
            lines: Mutex::default(),
            downloads: Mutex::default(),
        })
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.overall {
            bar.finish_and_clear();
        }
    }
}

impl FarmReporter for FarmProgress {
    fn started(&self, label: &str) {
        if let Some(multi) = &self.multi {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {prefix:.bold} {msg:10} {elapsed}")
                    .expect("valid template"),
            );
            bar.set_prefix(printable(label).into_owned());
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            self.lines.lock().unwrap().insert(label.to_string(), bar);
        }
    }

    fn stage(&self, label: &str, stage: Stage) {
        if self.multi.is_some() {
            if let Some(bar) = self.lines.lock().unwrap().get(label) {
                bar.set_message(stage.as_str());
            }
        } else if stage == Stage::Check {
            // One per variant of a nightly sync, thousands of them: only when asked for.
            tracing::debug!("{}: {}", printable(label), stage.as_str());
        } else {
            tracing::info!("{}: {}", printable(label), stage.as_str());
        }
    }

    fn finished(&self, r: &VariantResult) {
        if let Some(bar) = self.lines.lock().unwrap().remove(&r.label) {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.overall {
            bar.inc(1);
        }
        // Labels and messages carry names from projects, kernel lists and builds: spelled out, never raw.
        let label = printable(&r.label);
        let line = match &r.status {
            Status::Success => format!("ok     {label} ({:.1}s)", r.durations.total_secs),
            Status::UpToDate => format!("same   {label} (up to date)"),
            Status::Excluded { reason } => {
                format!("skip   {label} (excluded: {})", printable(reason))
            }
            Status::Failed { class, message } => {
                format!("FAILED {label} [{class}]: {}", printable(message))
            }
        };
        match &self.multi {
            Some(_) if r.status == Status::UpToDate => {}
            Some(m) => {
                let _ = m.println(line);
            }
            None if r.status == Status::UpToDate => tracing::debug!("{line}"),
            None => tracing::info!("{line}"),
        }
    }
}

impl kmf_fetch::FetchProgress for FarmProgress {
    fn started(&self, file_name: &str, total: Option<u64>) {
        match &self.multi {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new(total.unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template("  ↓ {msg} {bytes}/{total_bytes} {bytes_per_sec}")
                        .expect("valid template"),
                );
                bar.set_message(printable(file_name).into_owned());
                self.downloads
                    .lock()
                    .unwrap()
                    .insert(file_name.to_string(), bar);
            }
            None => tracing::info!("downloading {}", printable(file_name)),
        }
    }

    fn advanced(&self, file_name: &str, bytes: u64) {
        if let Some(bar) = self.downloads.lock().unwrap().get(file_name) {
            bar.inc(bytes);
        }
    }

    fn finished(&self, file_name: &str, ok: bool) {
        if let Some(bar) = self.downloads.lock().unwrap().remove(file_name) {
            bar.finish_and_clear();
        }
        if self.multi.is_none() && !ok {
            tracing::warn!("download of {} failed", printable(file_name));
        }
    }

    fn retrying(&self, file_name: &str, url: &str, attempt: u32, error: &str) {
        tracing::warn!(
            "{}: attempt {attempt} from {} failed ({}); retrying",
            printable(file_name),
            printable(url),
            printable(error)
        );
    }
}

/// The end-of-run table: one line per variant.
pub fn summary_table(results: &[VariantResult]) -> String {
    let mut out = String::new();
    let width = results
        .iter()
        .map(|r| printable(&r.label).len())
        .max()
        .unwrap_or(10);
    out.push_str(&format!(
        "\n{:<width$}  {:<22} {:>8}\n",
        "variant", "result", "seconds"
    ));
    // A nightly sync finds thousands of variants up to date; list them only in small runs.
    let list_up_to_date = results.len() <= 50;
    for r in results {
        if r.status == Status::UpToDate && !list_up_to_date {
            continue;
        }
        let result = match &r.status {
            Status::Success => "ok".to_string(),
            Status::UpToDate => "up to date".to_string(),
            Status::Excluded { .. } => "excluded".to_string(),
            Status::Failed { class, .. } => class.to_string(),
        };
        out.push_str(&format!(
            "{:<width$}  {:<22} {:>8.1}\n",
            printable(&r.label),
            result,
            r.durations.total_secs
        ));
    }
    let count = |f: fn(&Status) -> bool| results.iter().filter(|r| f(&r.status)).count();
    out.push_str(&format!(
        "{} variant(s) built, {} up to date, {} excluded, {} failed\n",
        count(|s| *s == Status::Success),
        count(|s| *s == Status::UpToDate),
        count(|s| matches!(s, Status::Excluded { .. })),
        count(|s| matches!(s, Status::Failed { .. }))
    ));
    out
}
