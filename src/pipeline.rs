//! Overlaps producing a layer (generate + SHA-256, on the calling thread) with writing it
//! to the sinks (on a second thread). Writing costs about as much as the other two together,
//! so on two cores this roughly halves a build. Memory stays bounded: `DEPTH` chunks in
//! flight, each `CHUNK` bytes.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};

use crate::layer::CHUNK;
use crate::sink::Sink;
use crate::Error;

const DEPTH: usize = 4;

/// Runs `produce` with a writer whose bytes reach every sink, in order, on another thread.
/// Returns what `produce` returned, or the first sink error.
pub(crate) fn write_layer<T>(
    sinks: &mut [Box<dyn Sink>],
    produce: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> Result<io::Result<T>, Error> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        let writer = scope.spawn(move || -> Result<(), Error> {
            for chunk in full_rx {
                for sink in sinks.iter_mut() {
                    sink.write_layer(&chunk)?;
                }
                // The producer may be gone already; then the buffer is simply dropped.
                let _ = empty_tx.send(chunk);
            }
            Ok(())
        });
        let mut pipe = Pipe {
            current: Vec::with_capacity(CHUNK),
            full: full_tx,
            empty: empty_rx,
        };
        let produced = produce(&mut pipe).and_then(|value| pipe.flush().map(|()| value));
        // Closing the channel ends the writer's loop.
        drop(pipe);
        match writer.join() {
            Ok(Ok(())) => Ok(produced),
            Ok(Err(sink_error)) => Err(sink_error),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

struct Pipe {
    current: Vec<u8>,
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
}

impl Pipe {
    fn send(&mut self) -> io::Result<()> {
        let fresh = match self.empty.try_recv() {
            Ok(mut recycled) => {
                recycled.clear();
                recycled
            }
            Err(_) => Vec::with_capacity(CHUNK),
        };
        let chunk = std::mem::replace(&mut self.current, fresh);
        self.full
            .send(chunk)
            .map_err(|_| io::Error::other("the output stopped"))
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.current.len();
        let n = room.min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.current.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}
