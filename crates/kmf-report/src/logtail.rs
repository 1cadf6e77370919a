//! The last lines of a build log, for failure reports.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::escape::{strip_ansi, truncate_chars};

/// How many lines of the build log failure reports quote.
pub const LOG_TAIL_LINES: usize = 50;

/// At most this much of the end of a log is read, however long its lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// Longer lines are cut (a minified command line or a binary blob should not fill the report).
const MAX_LINE_CHARS: usize = 1000;

/// The last `lines` lines of the log at `path` (relative paths are relative to the current directory), as
/// plain text: invalid UTF-8 replaced, terminal escapes removed, carriage-return overwrites resolved (the text
/// after the last `\r` of a line is what a terminal showed), trailing blank lines dropped.
pub(crate) fn log_tail(path: &Path, lines: usize) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let mut text = &bytes[..];
    if start > 0 {
        // Started in the middle of a line: drop that partial line.
        if let Some(nl) = text.iter().position(|&b| b == b'\n') {
            text = &text[nl + 1..];
        }
    }
    let text = strip_ansi(&String::from_utf8_lossy(text));
    let mut all: Vec<String> = text
        .split('\n')
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let shown = line.rsplit('\r').next().unwrap_or(line);
            truncate_chars(shown, MAX_LINE_CHARS)
        })
        .collect();
    while all.last().is_some_and(|l| l.trim().is_empty()) {
        all.pop();
    }
    let from = all.len().saturating_sub(lines);
    Ok(all[from..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.log");
        let text: String = (1..=200).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text + "\n\n").unwrap();
        let tail = log_tail(&path, 3).unwrap();
        assert_eq!(tail, "line 198\nline 199\nline 200");
        assert_eq!(log_tail(&path, 1000).unwrap().lines().count(), 200);
    }

    #[test]
    fn reads_only_the_end_of_huge_logs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.log");
        let mut text = "x".repeat(200_000);
        text.push_str("\nCC [M] hello.o\r\n  progress 10%\r  progress 100%\n\u{1b}[01;31merror:\u{1b}[m boom\n");
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path, 50).unwrap();
        assert_eq!(tail, "CC [M] hello.o\n  progress 100%\nerror: boom");
    }

    #[test]
    fn missing_logs_are_an_error() {
        assert!(log_tail(Path::new("/nonexistent/build.log"), 5).is_err());
    }
}
