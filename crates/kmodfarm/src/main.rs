//! The `kmodfarm` binary: parse arguments, call the library, choose the exit code.

mod cli;
mod commands;
mod reporters;

use std::process::ExitCode;

fn main() -> ExitCode {
    commands::run(cli::parse())
}
