//! Accepting connections (plain or TLS) on the server's own runtime, and the clean stop:
//! no new connections, idle ones closed, requests in flight given a moment to finish.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::rustls;

use super::body::Streams;
use super::conn::{Activity, Flushes, Stream, Timeouts, Tracked, Watched};
use super::http::{handle, State};
use super::ServeError;

/// How long a stop waits for responses under way (a blob stream, say) before cutting them.
const GRACE: Duration = Duration::from_secs(3);

/// What bounds the connections: their time limits and how many at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub timeouts: Timeouts,
    pub tls_handshake: Option<Duration>,
    /// Connections at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// Serves `listener` until `stop` says so.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    streams: Arc<Streams>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let connections_allowed = Arc::new(Semaphore::new(limits.max_connections));
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
        // Over the cap, the cheapest refusal: closed at once, before any buffer, task or
        // TLS handshake; the client sees a reset and can retry. Leaving it in the backlog
        // instead would let a flood of idle sockets fill the backlog for everyone.
        let Ok(admitted) = Arc::clone(&connections_allowed).try_acquire_owned() else {
            drop(stream);
            state.metrics.connection_refused();
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let streams = Arc::clone(&streams);
        let tls = tls.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let _admitted = admitted;
            let _open = state.metrics.connection();
            let flushes = Arc::new(Flushes::default());
            let activity = Arc::new(Activity::default());
            let watched = Arc::clone(&flushes);
            let active = Arc::clone(&activity);
            let service = service_fn(move |mut request: hyper::Request<_>| {
                let state = Arc::clone(&state);
                let busy = active.begin();
                request.extensions_mut().insert(Arc::clone(&watched));
                request.extensions_mut().insert(Arc::clone(&active));
                request.extensions_mut().insert(Arc::clone(&streams));
                async move {
                    let response = handle(state, request, peer).await;
                    Ok::<_, Infallible>(response.map(|inner| Tracked { inner, _busy: busy }))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // hyper's header timer starts when a connection is ready for a request: at
            // its start, and on keep-alive once a response is done, so it bounds the
            // idle wait and the headers together. `Watched` times the two apart (the
            // idle wait, then the headers from their first byte); hyper's timer is a
            // backstop over both.
            let t = limits.timeouts;
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(t.header.zip(t.idle).map(|(h, i)| h + i));
            // One path for both: a boxed stream costs a virtual call per read or write,
            // and writes here are chunks of a megabyte.
            let io: Box<dyn Stream> = match tls {
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    let accepted = match limits.tls_handshake {
                        Some(limit) => match tokio::time::timeout(limit, accept).await {
                            Ok(accepted) => accepted,
                            Err(_) => return,
                        },
                        None => accept.await,
                    };
                    match accepted {
                        Ok(stream) => Box::new(stream),
                        Err(_) => return,
                    }
                }
                None => Box::new(stream),
            };
            let stream = Watched::new(io, flushes, activity, limits.timeouts);
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
