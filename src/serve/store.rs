//! The blob store of `faults/redirect/`: a second listener of the server, as object storage
//! is to a registry that redirects blob GETs to it. Its URLs are signed and expire; it
//! refuses a request that carries `Authorization` (as S3 does a presigned URL with one),
//! an expired URL and an altered one.

use super::auth::{now, TokenSecret};

/// How long a redirect's URL is good for.
pub(crate) const URL_LIFETIME: u64 = 300;

/// Where the store listens, and the key of its URLs.
#[derive(Debug)]
pub(crate) struct Store {
    /// `http://IP:PORT` (or `https://`).
    pub origin: String,
    key: TokenSecret,
}

/// Why the store refuses a request, as S3 says it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 400 `InvalidArgument`: a signed URL and an `Authorization` header.
    TwoAuths,
    /// 403 `AccessDenied`: past its expiry.
    Expired,
    /// 403 `SignatureDoesNotMatch`: missing, altered, or for another blob.
    BadSignature,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::TwoAuths => 400,
            Self::Expired | Self::BadSignature => 403,
        }
    }

    /// S3's error document.
    pub fn body(&self) -> &'static str {
        match self {
            Self::TwoAuths => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>\n",
            Self::Expired => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>\n",
            Self::BadSignature => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error>\n",
        }
    }
}

const DOMAIN: &str = "image-maker store v1";
const FOREIGN_DOMAIN: &str = "image-maker foreign layer v1";

impl Store {
    pub fn new(origin: String, key: TokenSecret) -> Self {
        Self { origin, key }
    }

    /// The URL a GET of `digest` in `repository` is redirected to, good for
    /// [`URL_LIFETIME`] seconds from now.
    pub fn url(&self, repository: &str, digest: &str) -> String {
        let expires = now() + URL_LIFETIME;
        let signature = self
            .key
            .signature(DOMAIN, &signed(repository, digest, expires));
        format!(
            "{}/store/{repository}/blobs/{digest}?expires={expires}&signature={signature}",
            self.origin
        )
    }

    /// Where a `faults/foreign/` layer is: a URL without expiry, as a manifest names it,
    /// signed so that it fetches that layer and no other blob (the store does not ask for
    /// the registry's credentials).
    pub fn foreign_url(&self, digest: &str) -> String {
        let signature = self.key.signature(FOREIGN_DOMAIN, digest);
        format!("{}/foreign/{digest}?signature={signature}", self.origin)
    }

    /// Whether `query` carries the signature of [`foreign_url`](Self::foreign_url) for
    /// `digest`.
    pub fn admit_foreign(&self, digest: &str, query: Option<&str>) -> Result<(), Refusal> {
        let signature = query
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("signature="));
        match signature {
            Some(signature) if self.key.signed(FOREIGN_DOMAIN, digest, signature) => Ok(()),
            _ => Err(Refusal::BadSignature),
        }
    }

    /// Whether a request for `digest` in `repository` with `query` may have the blob.
    pub fn admit(
        &self,
        repository: &str,
        digest: &str,
        query: Option<&str>,
        authorization: bool,
    ) -> Result<(), Refusal> {
        if authorization {
            return Err(Refusal::TwoAuths);
        }
        let mut expires = None;
        let mut signature = None;
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse::<u64>().ok(),
                Some(("signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(Refusal::BadSignature);
        };
        // The signature first: an altered expiry is an altered URL, not an expired one.
        if !self
            .key
            .signed(DOMAIN, &signed(repository, digest, expires), signature)
        {
            return Err(Refusal::BadSignature);
        }
        if now() > expires {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

fn signed(repository: &str, digest: &str, expires: u64) -> String {
    format!("{repository}\n{digest}\n{expires}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_good_for_their_blob_until_they_expire() {
        let store = Store::new(
            "http://127.0.0.1:1".into(),
            TokenSecret::random().expect("entropy"),
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let url = store.url("faults/redirect/mock", &digest);
        let query = url.split_once('?').map(|(_, q)| q);
        assert_eq!(
            store.admit("faults/redirect/mock", &digest, query, false),
            Ok(())
        );
        assert_eq!(
            store.admit("faults/redirect/mock", &digest, query, true),
            Err(Refusal::TwoAuths)
        );
        assert_eq!(
            store.admit("faults/redirect/other", &digest, query, false),
            Err(Refusal::BadSignature)
        );
        let altered = query.map(|q| q.replace("expires=", "expires=9"));
        assert_eq!(
            store.admit("faults/redirect/mock", &digest, altered.as_deref(), false),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            store.admit("faults/redirect/mock", &digest, None, false),
            Err(Refusal::BadSignature)
        );
        let past = 1_000;
        let signature = store.key.signature(DOMAIN, &signed("r", &digest, past));
        let old = format!("expires={past}&signature={signature}");
        assert_eq!(
            store.admit("r", &digest, Some(&old), false),
            Err(Refusal::Expired)
        );
    }
}
