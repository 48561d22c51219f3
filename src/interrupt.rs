//! Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop a build between chunks, so that every
//! temporary file is removed by ordinary drops before the process exits 128 + the signal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::Error;

static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Installs the handlers once per process. Until it is called, signals keep their default
/// effect (library users keep control of their own process).
pub fn install() -> std::io::Result<()> {
    let flag = FLAG.get_or_init(Default::default);
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let code = 128 + usize::try_from(signal).unwrap_or_default();
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
