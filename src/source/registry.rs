//! `docker://REF`: an image read over the OCI distribution API with the push's HTTP stack.
//! Blobs stream from the response body chunk by chunk; nothing is stored.

use std::io::{self, Read};

use oci_client::RegistryOperation;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::{Blobs, Descriptor, OpenError, SourceError};
use crate::digest::Blob;
use crate::registry::client::Session;
use crate::registry::RegistryOptions;
use crate::{Error, Reference};

/// What a manifest request accepts: every manifest and index type `verify` knows.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug)]
pub(crate) struct Remote {
    session: Session,
    name: String,
    top: Descriptor,
    /// The top manifest's bytes, fetched to learn its digest and type.
    top_bytes: Vec<u8>,
}

impl Remote {
    pub fn open(reference: &Reference) -> Result<Self, Error> {
        let name = format!("docker://{reference}");
        let unreadable = |detail: String| SourceError::Unreadable {
            name: name.clone(),
            detail,
        };
        let mut session = Session::new(reference, &RegistryOptions::default())?;
        session.authorization = session
            .runtime
            .block_on(async { session.authenticate_for(RegistryOperation::Pull).await })
            .map_err(|e| unreadable(e.to_string()))?;
        let wanted = session
            .image
            .digest()
            .or(session.image.tag())
            .unwrap_or("latest")
            .to_owned();
        let response = get(&session, "manifests", &wanted).map_err(&unreadable)?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = session
            .runtime
            .block_on(async { response.bytes().await })
            .map_err(|e| unreadable(e.to_string()))?
            .to_vec();
        // By tag, the manifest's identity is the digest of the bytes served.
        let digest = match session.image.digest() {
            Some(digest) => digest.to_owned(),
            None => Blob::of(&bytes).digest,
        };
        let top = Descriptor {
            media_type,
            digest,
            size: bytes.len() as u64,
            platform: None,
        };
        Ok(Self {
            session,
            name,
            top,
            top_bytes: bytes,
        })
    }
}

/// `GET /v2/<repo>/<kind>/<what>`, with its status checked.
fn get(session: &Session, kind: &str, what: &str) -> Result<reqwest::Response, String> {
    let url = session
        .base
        .join(&format!("/v2/{}/{kind}/{what}", session.image.repository()))
        .map_err(|e| e.to_string())?;
    let request = session
        .authorize(&url, session.http.get(url.clone()))
        .header(ACCEPT, MANIFEST_TYPES);
    let response = session
        .runtime
        .block_on(async { request.send().await })
        .map_err(|e| format!("GET {url}: {e}"))?;
    match response.status() {
        s if s.is_success() => Ok(response),
        s => Err(format!("GET {url}: {s}")),
    }
}

impl Blobs for Remote {
    fn top(&self) -> &Descriptor {
        &self.top
    }

    fn open(&mut self, descriptor: &Descriptor) -> Result<Box<dyn Read + '_>, OpenError> {
        if *descriptor == self.top {
            return Ok(Box::new(io::Cursor::new(self.top_bytes.clone())));
        }
        let manifest =
            descriptor.media_type.contains("manifest") || descriptor.media_type.contains("index");
        let kind = if manifest { "manifests" } else { "blobs" };
        match get(&self.session, kind, &descriptor.digest) {
            Ok(response) => Ok(Box::new(Body {
                runtime: &self.session.runtime,
                response,
                chunk: bytes::Bytes::new(),
            })),
            Err(e) if e.ends_with("404 Not Found") => Err(OpenError::Missing(e)),
            Err(detail) => Err(OpenError::Other(
                SourceError::Unreadable {
                    name: self.name.clone(),
                    detail,
                }
                .into(),
            )),
        }
    }
}

/// A response body as a blocking reader. Each future is made inside `block_on`: reqwest's
/// timers need the runtime's context when they are created.
struct Body<'a> {
    runtime: &'a tokio::runtime::Runtime,
    response: reqwest::Response,
    chunk: bytes::Bytes,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self
                .runtime
                .block_on(async { self.response.chunk().await })
                .map_err(io::Error::other)?
            {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
