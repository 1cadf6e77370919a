//! Progress and summaries. Bars on a terminal; plain log lines in CI or when stderr is not a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kmf_farm::{FarmReporter, Stage, Status, VariantResult};
use kmf_types::names::{printable, printable_lines};
use tracing_subscriber::fmt::MakeWriter;
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
    let ansi = colour();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Escaped { ansi })
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Whether stderr gets colours.
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` (lines of kmodfarm's own, possibly quoting untrusted names and messages) as it may reach the
/// terminal: control, bidirectional and invisible characters spelled out (`\u{202e}`), line feeds kept,
/// and the escape character kept only when `ansi` (the colours are kmodfarm's own then; text from outside
/// has had its escapes spelled out where it was quoted).
pub fn terminal_text(text: &str, ansi: bool) -> std::borrow::Cow<'_, str> {
    if !ansi {
        return printable_lines(text);
    }
    let parts: Vec<_> = text.split('\u{1b}').map(printable_lines).collect();
    match parts
        .iter()
        .all(|p| matches!(p, std::borrow::Cow::Borrowed(_)))
    {
        true => std::borrow::Cow::Borrowed(text),
        false => std::borrow::Cow::Owned(parts.join("\u{1b}")),
    }
}

/// The log's writer: stderr, every event through [`terminal_text`], so that a name or message some code
/// path logs without [`printable`] still cannot reverse, hide or recolour the line.
struct Escaped {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for Escaped {
    type Writer = EscapedWriter;

    fn make_writer(&'a self) -> EscapedWriter {
        EscapedWriter { ansi: self.ansi }
    }
}

struct EscapedWriter {
    ansi: bool,
}

impl std::io::Write for EscapedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes each event whole, so an event is valid UTF-8 unless it quotes bytes that are
        // not (written as they are: there is nothing to spell out without guessing).
        let mut err = std::io::stderr().lock();
        match std::str::from_utf8(buf) {
            Ok(text) => err.write_all(terminal_text(text, self.ansi).as_bytes())?,
            Err(_) => err.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
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
            Status::UpToDate if r.booted_now() => format!(
                "booted {label} (up to date, booted: {:.1}s)",
                r.durations.total_secs
            ),
            Status::UpToDate => format!("same   {label} (up to date)"),
            Status::Excluded { reason } => {
                format!("skip   {label} (excluded: {})", printable(reason))
            }
            Status::Failed { class, message } => match &r.first_error {
                Some(first) => format!(
                    "FAILED {label} [{class}]: {}\n       first error: {}",
                    printable(message),
                    printable(first)
                ),
                None => format!("FAILED {label} [{class}]: {}", printable(message)),
            },
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
        if r.status == Status::UpToDate && !r.booted_now() && !list_up_to_date {
            continue;
        }
        let result = match &r.status {
            Status::Success => "ok".to_string(),
            Status::UpToDate if r.booted_now() => "up to date, booted".to_string(),
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
        // Why it failed, in the build's own words, and where to read the rest.
        if let Some(first) = &r.first_error {
            out.push_str(&format!("    {}\n", printable(first)));
            if let Some(log) = &r.log {
                out.push_str(&format!(
                    "    log: {}\n",
                    printable(&log.display().to_string())
                ));
            }
        }
    }
    let count = |f: fn(&Status) -> bool| results.iter().filter(|r| f(&r.status)).count();
    out.push_str(&format!(
        "{} variant(s) built, {} up to date, {} excluded, {} failed\n",
        count(|s| *s == Status::Success),
        count(|s| *s == Status::UpToDate),
        count(|s| matches!(s, Status::Excluded { .. })),
        count(|s| matches!(s, Status::Failed { .. }))
    ));
    let unproven: Vec<&VariantResult> = results
        .iter()
        .filter(|r| r.is_success() && !r.input_warnings.is_empty())
        .collect();
    if !unproven.is_empty() {
        out.push_str(&format!(
            "warning: {} variant(s) built from inputs not fully proven (see results.json input_warnings):\n",
            unproven.len()
        ));
        for r in unproven {
            for w in &r.input_warnings {
                out.push_str(&format!("  {}: {}\n", printable(&r.label), printable(w)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_spells_out_what_would_disguise_a_line() {
        assert_eq!(
            terminal_text("error: kernel `6.1\u{202e}46-dma`\n\u{1b}]0;x\u{7}", false),
            "error: kernel `6.1\\u{202e}46-dma`\n\\u{1b}]0;x\\u{7}"
        );
        // With colours, the escape character stays (kmodfarm's colours), everything else is spelled out.
        assert_eq!(
            terminal_text("\u{1b}[31mERROR\u{1b}[0m a\u{200b}b\r", true),
            "\u{1b}[31mERROR\u{1b}[0m a\\u{200b}b\\r"
        );
        assert!(matches!(
            terminal_text("\u{1b}[1mplain\u{1b}[0m\n", true),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
