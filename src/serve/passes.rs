//! Digest passes on a bounded pool: at most `max` run at once, each on threads of its own
//! (`threads` of them at most, see [`Passes::threads`]), at most `queue` wait, and beyond
//! that a request is refused with a time to come back. Requesters of the same image share
//! one pass; a queued pass whose requesters all left is dropped, and a running one is told
//! to stop (its layers notice between chunks).
//!
//! Threads are started per running pass and end when the queue is empty: an idle server
//! has none, a busy one `max × threads` at most (with compressed layers, as many encoder
//! threads again: see [`Passes::threads`]).
//!
//! The one place a pass is queued, started, dropped or refused is [`Passes::join`] and
//! [`run`]: whoever counts passes hooks there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::catalog::Manifest;
use super::metrics::{GaugeGuard, Metrics};

/// What a pass found: the manifest, or why not (a message for the log, never a client).
pub(crate) type Outcome = Result<Arc<Manifest>, Failed>;

/// Why a pass has no manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Its requesters all left, and it stopped.
    Cancelled,
    /// Generating or hashing failed; the detail is for the log.
    Error(String),
}

/// Set when a pass's requesters have all left: its layers stop at their next chunk.
pub(crate) type Cancel = Arc<AtomicBool>;

type Job = Box<dyn FnOnce(&Cancel) -> Outcome + Send>;

/// The pool, shared by every request.
#[derive(Debug)]
pub(crate) struct Passes {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max: usize,
    queue: usize,
    threads: usize,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Inner {
    running: usize,
    waiting: VecDeque<Arc<Pass>>,
    /// Passes queued or running, by image: a request for one joins it.
    by_key: HashMap<String, Arc<Pass>>,
    /// Estimated CPU seconds of the passes queued or running, for `Retry-After`.
    seconds: f64,
}

struct Pass {
    key: String,
    seconds: f64,
    requesters: Mutex<usize>,
    cancel: Cancel,
    job: Mutex<Option<Job>>,
    done: watch::Sender<Option<Outcome>>,
    /// Counts it in the queue's gauge while it waits.
    queued: Mutex<Option<GaugeGuard>>,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass").field("key", &self.key).finish()
    }
}

/// Refused: pool and queue are full. Come back in `retry_after` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    pub retry_after: u64,
}

/// One requester's place in a pass. Dropping it (the client left, its request future
/// dropped) lets the pass go once nobody else waits for it.
#[derive(Debug)]
pub(crate) struct Ticket {
    pass: Arc<Pass>,
    shared: Arc<Shared>,
    done: watch::Receiver<Option<Outcome>>,
}

impl Passes {
    /// `max` passes at once (at least 1), `queue` waiting, each pass on `threads` threads;
    /// counted in `metrics`.
    pub fn new(max: usize, queue: usize, threads: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            shared: Arc::new(Shared {
                max: max.max(1),
                queue,
                threads: threads.max(1),
                inner: Mutex::default(),
                metrics,
            }),
        }
    }

    /// The threads one pass hashes its layers on: as many layers at once, each layer's
    /// encoder on `threads / layers at once` more (gzip and zstd compress on threads of
    /// their own, the tar and its diff_id are made on the layer's). So a pass keeps about
    /// `threads` cores busy and has at most `2 × threads` threads.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Joins the pass of `key` if one is queued or running, else queues `job` as a new
    /// one (`seconds`: its estimated CPU time), or refuses when the queue is full.
    pub fn join(
        &self,
        key: String,
        seconds: f64,
        job: impl FnOnce(&Cancel) -> Outcome + Send + 'static,
    ) -> Result<Ticket, Busy> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if let Some(pass) = inner.by_key.get(&key) {
            *pass.requesters.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            return Ok(Ticket {
                done: pass.done.subscribe(),
                pass: Arc::clone(pass),
                shared: Arc::clone(shared),
            });
        }
        let start = inner.running < shared.max;
        if !start && inner.waiting.len() >= shared.queue {
            // What is queued and running, spread over the pool, as whole seconds.
            let wait = inner.seconds / shared.max as f64;
            let retry_after = wait.ceil().clamp(1.0, 300.0) as u64;
            return Err(Busy { retry_after });
        }
        let (done, receiver) = watch::channel(None);
        let pass = Arc::new(Pass {
            key: key.clone(),
            seconds,
            requesters: Mutex::new(1),
            cancel: Cancel::default(),
            job: Mutex::new(Some(Box::new(job))),
            done,
            queued: Mutex::new((!start).then(|| shared.metrics.pass_queued())),
        });
        inner.by_key.insert(key, Arc::clone(&pass));
        inner.seconds += seconds;
        let ticket = Ticket {
            pass: Arc::clone(&pass),
            shared: Arc::clone(shared),
            done: receiver,
        };
        if start {
            inner.running += 1;
            drop(inner);
            let worker = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name("image-maker-digest".into())
                .spawn(move || run(&worker, pass));
            if let Err(e) = spawned {
                // No thread to run it: the pass fails, and its slot is free again.
                let mut inner = shared.lock();
                inner.running -= 1;
                let _ = ticket.pass.done.send(Some(Err(Failed::Error(format!(
                    "cannot start a digest thread: {e}"
                )))));
                inner.finish(&ticket.pass);
            }
        } else {
            inner.waiting.push_back(pass);
        }
        Ok(ticket)
    }
}

impl Drop for Passes {
    fn drop(&mut self) {
        // A stopped server's passes: nobody will ask for them.
        let mut inner = self.shared.lock();
        for pass in inner.by_key.values() {
            pass.cancel.store(true, Ordering::Relaxed);
        }
        inner.waiting.clear();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// `pass` is over: forgotten, if it is still the one of its key.
    fn finish(&mut self, pass: &Arc<Pass>) {
        pass.queued.lock().unwrap_or_else(|e| e.into_inner()).take();
        if self
            .by_key
            .get(&pass.key)
            .is_some_and(|p| Arc::ptr_eq(p, pass))
        {
            self.by_key.remove(&pass.key);
        }
        self.seconds = (self.seconds - pass.seconds).max(0.0);
    }
}

/// A worker: runs `pass`, then whatever waits, until nothing does.
fn run(shared: &Arc<Shared>, mut pass: Arc<Pass>) {
    loop {
        let job = pass.job.lock().unwrap_or_else(|e| e.into_inner()).take();
        pass.queued.lock().unwrap_or_else(|e| e.into_inner()).take();
        let running = shared.metrics.pass_running();
        let outcome = match job {
            Some(job) if !pass.cancel.load(Ordering::Relaxed) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&pass.cancel)))
                    .unwrap_or_else(|panic| Err(Failed::Error(panic_text(&panic))))
            }
            _ => Err(Failed::Cancelled),
        };
        drop(running);
        let _ = pass.done.send(Some(outcome));
        let mut inner = shared.lock();
        inner.finish(&pass);
        // The next one whose requesters are still there.
        let next = loop {
            match inner.waiting.pop_front() {
                Some(p) if p.cancel.load(Ordering::Relaxed) => inner.finish(&p),
                other => break other,
            }
        };
        match next {
            Some(next) => pass = next,
            None => {
                inner.running -= 1;
                return;
            }
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    format!("the digest pass panicked: {text}")
}

impl Ticket {
    /// The pass's outcome, once it is done.
    pub async fn wait(mut self) -> Outcome {
        loop {
            if let Some(outcome) = self.done.borrow_and_update().clone() {
                return outcome;
            }
            if self.done.changed().await.is_err() {
                return Err(Failed::Error("the digest pass went away".into()));
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut requesters = self
            .pass
            .requesters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *requesters -= 1;
        if *requesters > 0 || self.pass.done.borrow().is_some() {
            return;
        }
        drop(requesters);
        // The last requester left before the end: stop it, and let a new request for the
        // same image start afresh rather than join a pass that is stopping.
        self.pass.cancel.store(true, Ordering::Relaxed);
        let mut inner = self.shared.lock();
        if let Some(at) = inner
            .waiting
            .iter()
            .position(|p| Arc::ptr_eq(p, &self.pass))
        {
            // Queued: dropped there and then.
            inner.waiting.remove(at);
            let pass = Arc::clone(&self.pass);
            inner.finish(&pass);
        } else if inner
            .by_key
            .get(&self.pass.key)
            .is_some_and(|p| Arc::ptr_eq(p, &self.pass))
        {
            inner.by_key.remove(&self.pass.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(super::super::MetricsAccess::Open))
    }

    fn manifest() -> Arc<Manifest> {
        Arc::new(Manifest {
            bytes: bytes::Bytes::from_static(b"{}"),
            digest: "sha256:0".into(),
            media_type: super::super::catalog::MANIFEST_TYPE,
        })
    }

    /// A job that runs until cancelled, counting how many ran.
    fn spinning(ran: &Arc<AtomicUsize>) -> impl FnOnce(&Cancel) -> Outcome + Send + 'static {
        let ran = Arc::clone(ran);
        move |cancel: &Cancel| {
            ran.fetch_add(1, Ordering::SeqCst);
            while !cancel.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(Failed::Cancelled)
        }
    }

    fn until(what: impl Fn() -> bool) {
        let start = Instant::now();
        while !what() {
            assert!(start.elapsed() < Duration::from_secs(10), "not within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn beyond_the_pool_and_its_queue_requests_are_refused_and_left_passes_go() {
        let passes = Passes::new(1, 1, 1, metrics());
        let ran = Arc::new(AtomicUsize::new(0));
        let running = passes.join("a".into(), 10.0, spinning(&ran)).expect("runs");
        until(|| ran.load(Ordering::SeqCst) == 1);
        let queued = passes
            .join("b".into(), 10.0, spinning(&ran))
            .expect("queued");
        let busy = passes
            .join("c".into(), 10.0, spinning(&ran))
            .expect_err("full");
        // 20 s of work queued and running, on one pass at once.
        assert_eq!(busy, Busy { retry_after: 20 });
        // Another requester of a queued image shares its pass, refused or not.
        let shared = passes
            .join("b".into(), 10.0, spinning(&ran))
            .expect("joins");
        drop(queued);
        drop(shared);
        // The queued pass is gone, unrun: room for another.
        let other = passes
            .join("d".into(), 1.0, |_: &Cancel| Ok(manifest()))
            .expect("queued");
        drop(running);
        let outcome = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(other.wait());
        assert!(outcome.is_ok());
        assert_eq!(ran.load(Ordering::SeqCst), 1, "`b` never ran");
        until(|| passes.shared.lock().running == 0);
        assert!(passes.shared.lock().by_key.is_empty());
    }

    #[test]
    fn a_pass_is_shared_and_its_panic_is_an_error() {
        let passes = Passes::new(2, 0, 1, metrics());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let first = passes
            .join("a".into(), 1.0, move |_: &Cancel| {
                let _ = wait.lock().expect("lock").recv();
                Ok(manifest())
            })
            .expect("runs");
        let second = passes
            .join("a".into(), 1.0, |_: &Cancel| panic!("not run"))
            .expect("joins");
        go.send(()).expect("sent");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert!(runtime.block_on(first.wait()).is_ok());
        assert!(runtime.block_on(second.wait()).is_ok());
        let panicking = passes
            .join("b".into(), 1.0, |_: &Cancel| panic!("secret detail"))
            .expect("runs");
        assert_eq!(
            runtime.block_on(panicking.wait()).err(),
            Some(Failed::Error(
                "the digest pass panicked: secret detail".into()
            ))
        );
    }
}
