//! Ctrl-C and SIGTERM stop a build between chunks, so that every temporary file is removed
//! by ordinary drops before the process exits 130 or 143.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::Error;

static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Installs the handlers once per process. Until it is called, signals keep their default
/// effect (library users keep control of their own process).
pub fn install() -> std::io::Result<()> {
    let flag = FLAG.get_or_init(Default::default);
    for (signal, code) in [
        (signal_hook::consts::SIGINT, 130),
        (signal_hook::consts::SIGTERM, 143),
    ] {
        signal_hook::flag::register_usize(signal, Arc::clone(flag), code)?;
    }
    Ok(())
}

/// Err once a signal has arrived.
pub fn check() -> Result<(), Error> {
    match FLAG.get().map(|f| f.load(Ordering::Relaxed)) {
        Some(code) if code != 0 => Err(Error::Interrupted {
            exit_code: i32::try_from(code).unwrap_or(130),
        }),
        _ => Ok(()),
    }
}
