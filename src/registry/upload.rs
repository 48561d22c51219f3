//! One blob to the registry: HEAD it, try a cross-repository mount, else upload it — one
//! streaming PUT, or PATCH chunks of `--chunk-size` — reading the file as the body goes.
//! Failures are sorted here into worth retrying (connection errors, 5xx, 429) or final.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use oci_client::errors::OciDistributionError;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use super::client::Session;
use super::layout::BlobFile;
use super::RegistryError;
use crate::progress::Counter;

/// Read size for request bodies: large enough that per-chunk overhead vanishes, small
/// enough that memory stays flat (the HTTP client pulls the next one only when it can send).
const READ_SIZE: usize = 1 << 20;

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Present,
    Mounted,
    Uploaded,
}

pub(crate) enum Failure {
    /// A connection error, 5xx or 429: the same step may succeed if tried again.
    Retry(String),
    Fatal(RegistryError),
}

pub(crate) async fn exists(
    session: &Session,
    blob: &BlobFile,
) -> Result<bool, OciDistributionError> {
    session
        .client
        .blob_exists(&session.image, &blob.digest)
        .await
}

/// `POST …/blobs/uploads/?mount=DIGEST&from=REPO`: 201 means mounted; a registry that
/// cannot mount answers 202 (an upload session), which `oci-client` reports as a spec
/// violation: then the blob is uploaded as usual.
pub(crate) async fn mount(
    session: &Session,
    from: &oci_client::Reference,
    blob: &BlobFile,
) -> Result<bool, OciDistributionError> {
    match session
        .client
        .mount_blob(&session.image, from, &blob.digest)
        .await
    {
        Ok(()) => Ok(true),
        Err(OciDistributionError::SpecViolationError(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `POST` then one `PUT ?digest=` whose body streams from the file.
pub(crate) async fn put(
    session: &Session,
    blob: &BlobFile,
    counter: Counter,
) -> Result<(), OciDistributionError> {
    let body = file_stream(&blob.path, 0, blob.size, counter)?;
    session
        .client
        .push_blob_stream(&session.image, body, &blob.digest, Some(blob.size))
        .await
        .map(drop)
}

/// `POST`, a `PATCH` per chunk (each streamed from the file), then `PUT ?digest=`.
///
/// Not `oci-client`'s chunked push: its chunk size is fixed at 4 MiB with no setter
/// (0.18), so `--chunk-size` could not be honoured; its auth token is reused here.
pub(crate) async fn chunked(
    session: &Session,
    blob: &BlobFile,
    chunk: u64,
    counter: Counter,
) -> Result<(), OciDistributionError> {
    let start = session
        .uploads_url()
        .map_err(|e| OciDistributionError::UrlParseError(e.to_string()))?;
    let response = session
        .authorize(&start, session.http.post(start.clone()))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await?;
    let mut location = next_location(&start, response, StatusCode::ACCEPTED).await?;
    let mut offset = 0;
    while offset < blob.size {
        let len = chunk.min(blob.size - offset);
        let body = file_stream(&blob.path, offset, len, counter.clone())?;
        let response = session
            .authorize(&location, session.http.patch(location.clone()))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len)
            .header("Content-Range", format!("{offset}-{}", offset + len - 1))
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await?;
        location = next_location(&location, response, StatusCode::ACCEPTED).await?;
        offset += len;
    }
    location
        .query_pairs_mut()
        .append_pair("digest", &blob.digest);
    let response = session
        .authorize(&location, session.http.put(location.clone()))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await?;
    next_location(&location, response, StatusCode::CREATED)
        .await
        .map(drop)
}

/// The `Location` of a response with the expected status, resolved against `url`.
async fn next_location(
    url: &reqwest::Url,
    response: reqwest::Response,
    expected: StatusCode,
) -> Result<reqwest::Url, OciDistributionError> {
    if response.status() != expected {
        let code = response.status().as_u16();
        let url = response.url().to_string();
        let message = response.text().await.unwrap_or_default();
        return Err(OciDistributionError::ServerError { code, url, message });
    }
    let location = response
        .headers()
        .get(LOCATION)
        .ok_or(OciDistributionError::RegistryNoLocationError)?
        .to_str()?;
    url.join(location)
        .map_err(|e| OciDistributionError::UrlParseError(e.to_string()))
}

/// `len` bytes of the file from `offset`, as a request body.
///
/// Read synchronously inside `poll`: a read from a local file (usually in the page cache)
/// is far shorter than a network round trip, and the current-thread runtime has nothing
/// else to run meanwhile; `tokio::fs` would add a thread hop and a copy per chunk.
fn file_stream(
    path: &Path,
    offset: u64,
    len: u64,
    counter: Counter,
) -> Result<
    impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static,
    OciDistributionError,
> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut left = len;
    Ok(futures_util::stream::poll_fn(move |_| {
        if left == 0 {
            return Poll::Ready(None);
        }
        // A signal ends the upload between reads; the caller reports the signal.
        if crate::interrupt::check().is_err() {
            left = 0;
            return Poll::Ready(Some(Err(std::io::Error::other("interrupted").into())));
        }
        let want = usize::try_from(left).map_or(READ_SIZE, |l| l.min(READ_SIZE));
        let mut buf = BytesMut::zeroed(want);
        let result = match file.read(&mut buf) {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob file is shorter than its descriptor",
            )),
            Ok(n) => {
                buf.truncate(n);
                left -= n as u64;
                counter.inc(n as u64);
                Ok(buf.freeze())
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            left = 0;
        }
        Poll::Ready(Some(result.map_err(Into::into)))
    }))
}

/// Sorts an error from step `what` into retry or final.
pub(crate) fn classify(session: &Session, what: &str, error: OciDistributionError) -> Failure {
    let registry = session.registry.clone();
    let repository = session.image.repository().to_owned();
    let status = |code: u16, detail: String| -> Failure {
        match code {
            401 | 403 => Failure::Fatal(RegistryError::Unauthorized {
                registry: registry.clone(),
                repository: repository.clone(),
                status: code,
                detail,
            }),
            404 => Failure::Fatal(RegistryError::RepositoryNotFound {
                registry: registry.clone(),
                repository: repository.clone(),
                detail,
            }),
            429 | 500..=599 => Failure::Retry(format!(
                "{code}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            )),
            _ => Failure::Fatal(RegistryError::Status {
                registry: registry.clone(),
                what: what.to_owned(),
                status: code,
                detail,
            }),
        }
    };
    match error {
        OciDistributionError::ServerError { code, message, .. } => {
            status(code, body_text(&message))
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            Failure::Fatal(RegistryError::Protocol {
                registry,
                what: what.to_owned(),
                detail: envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        }
        OciDistributionError::UnauthorizedError { .. } => status(401, String::new()),
        OciDistributionError::AuthenticationFailure(body) => status(401, body_text(&body)),
        OciDistributionError::RequestError(e) => match e.status() {
            Some(code) => status(code.as_u16(), String::new()),
            None if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                Failure::Retry(chain(&e))
            }
            None => Failure::Fatal(RegistryError::Protocol {
                registry,
                what: what.to_owned(),
                detail: chain(&e),
            }),
        },
        other => Failure::Fatal(RegistryError::Protocol {
            registry,
            what: what.to_owned(),
            detail: chain(&other),
        }),
    }
}

/// An error with its causes, `a: b: c`, as reqwest hides the useful part in its sources.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A registry's error body, `{"errors":[{"code","message","detail"}]}`, as one line.
pub(crate) fn body_text(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let errors = parsed
        .as_ref()
        .and_then(|v| v["errors"].as_array())
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let mut line = format!(
                        "{}: {}",
                        e["code"].as_str().unwrap_or("ERROR"),
                        e["message"].as_str().unwrap_or("")
                    );
                    if !e["detail"].is_null() {
                        line.push_str(&format!(" ({})", e["detail"]));
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("; ")
        });
    let text = errors.unwrap_or_else(|| body.trim().replace('\n', " "));
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_become_one_line() {
        let body = r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"}]}"#;
        assert_eq!(
            body_text(body),
            r#"MANIFEST_BLOB_UNKNOWN: blob unknown to registry ("sha256:ab")"#
        );
        assert_eq!(body_text("plain\ntext\n"), "plain text");
    }
}
