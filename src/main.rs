use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use image_maker::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return refused(&e),
    };
    if let Err(e) = cli::install_signal_handlers() {
        eprintln!("error: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    match cli::main(&cli) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: after SIGHUP stderr may be gone, and a panic here helps nobody.
            let mut stderr = std::io::stderr();
            let _ = writeln!(stderr, "error: {e}");
            if let Some(hint) = e.hint() {
                let _ = writeln!(stderr, "hint: {hint}");
            }
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

/// Exits as clap would for arguments it refuses, unless the first of them is a near miss of
/// a command (`image-maker sevre --addr …`): then clap's complaint about what follows it
/// would mislead, and the typo is named instead.
fn refused(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let first = std::env::args().nth(1).unwrap_or_default();
    let near = cli::near_command(&first);
    match (e.kind(), near) {
        (ErrorKind::DisplayHelp | ErrorKind::DisplayVersion, _) | (_, None) => e.exit(),
        (_, Some(meant)) => {
            let error = image_maker::Error::Usage(image_maker::UsageError::NearCommand {
                given: first,
                meant,
            });
            let mut stderr = std::io::stderr();
            let _ = writeln!(stderr, "error: {error}");
            ExitCode::from(2)
        }
    }
}
