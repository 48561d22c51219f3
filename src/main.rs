use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use image_maker::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = image_maker::testing::install_signal_handlers() {
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
