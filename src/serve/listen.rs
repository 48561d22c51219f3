//! Accepting connections (plain or TLS) on the server's own runtime, and the clean stop:
//! no new connections, idle ones closed, requests in flight given a moment to finish.

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::rustls;

use super::http::{handle, State};
use super::ServeError;

/// How long a stop waits for responses under way (a blob stream, say) before cutting them.
const GRACE: Duration = Duration::from_secs(3);

/// Serves `listener` until `stop` says so.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, say: the next accept may work.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let flushes = Arc::new(Flushes::default());
            let watched = Arc::clone(&flushes);
            let service = service_fn(move |mut request: hyper::Request<_>| {
                let state = Arc::clone(&state);
                request.extensions_mut().insert(Arc::clone(&watched));
                async move { Ok::<_, Infallible>(handle(state, request, peer).await) }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            // One path for both: a boxed stream costs a virtual call per read or write,
            // and writes here are chunks of a megabyte.
            let io: Box<dyn Stream> = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => Box::new(stream),
                    Err(_) => return,
                },
                None => Box::new(stream),
            };
            let stream = Watched { io, flushes };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// The flushes of one connection that reached its stream. hyper flushes the stream only
/// once its own write buffer is empty, so a count that moved says every byte hyper was
/// handed before is on its way. A response cut on purpose (`truncate`, `wrong-size`) waits
/// for that before it breaks the connection: hyper drops what it still buffers when a body
/// fails.
#[derive(Debug, Default)]
pub(crate) struct Flushes {
    count: AtomicU64,
    waiter: Mutex<Option<Waker>>,
}

impl Flushes {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Ready once a flush has completed since the count was `seen`.
    pub fn poll_since(&self, seen: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.count() > seen {
            return Poll::Ready(());
        }
        *self.waiter.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.count() > seen {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn flushed(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waiter {
            waker.wake();
        }
    }
}

/// A connection's byte stream: TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A connection's stream, counting its flushes.
struct Watched<S> {
    io: S,
    flushes: Arc<Flushes>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.flushes.flushed();
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A TLS acceptor for the PEM certificate chain and key in these files.
pub(crate) fn tls_acceptor(
    cert: &Path,
    key: &Path,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, detail: String| ServeError::Tls {
        path: path.to_path_buf(),
        detail,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "it holds no PEM certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, e.to_string()))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
