//! The `kmodfarm` binary: parse arguments, call the library, choose the exit code.

mod cli;
mod commands;
mod reporters;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::parse() {
        Ok(cli) => commands::run(cli),
        // Help and version go to stdout as clap writes them.
        Err(e) if !e.use_stderr() => e.exit(),
        // A usage error quotes the command line, which may carry names from a script's untrusted input:
        // spelled out like every other error.
        Err(e) => {
            let ansi = reporters::colour();
            let text = match ansi {
                true => e.render().ansi().to_string(),
                false => e.render().to_string(),
            };
            eprint!("{}", reporters::terminal_text(&text, ansi));
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
    }
}
