//! Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop a build between chunks, so that every
//! temporary file is removed by ordinary drops before the process exits 128 + the signal.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::Error;

static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Installs the handlers; call it once per process. Until it is called, signals keep their
/// default effect (library users keep control of their own process).
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::flag;
    let code = FLAG.get_or_init(Default::default);
    let seen = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let status = 128 + signal;
        // A second signal ends the process at once: the way out when the first is stuck
        // behind a blocked write to an engine that no longer reads.
        flag::register_conditional_shutdown(signal, status, Arc::clone(&seen))?;
        flag::register_usize(
            signal,
            Arc::clone(code),
            usize::try_from(status).unwrap_or(130),
        )?;
        flag::register(signal, Arc::clone(&seen))?;
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
