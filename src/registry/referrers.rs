//! Artifacts pushed with their image: each by digest; then, for a registry without the
//! referrers API (`GET /v2/<name>/referrers/<digest>` is 404), the referrers tag schema of
//! the distribution spec: each subject's artifacts in an index tagged `sha256-<hex>`,
//! merged with what that tag held.

use serde_json::{json, Value};

use super::client::Session;
use super::layout::{self, Artifact};
use super::{push_image, push_manifest, retrying};
use crate::{Error, Progress, Pushed, Reference, RegistryOptions};

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

pub(crate) fn push(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    artifacts: &[Artifact],
    target: &Reference,
    pushed: &mut Pushed,
) -> Result<(), Error> {
    for artifact in artifacts {
        push_image(session, options, progress, &artifact.image, None, pushed)?;
        let by_digest = oci_client::Reference::with_digest(
            session.image.registry().to_owned(),
            session.image.repository().to_owned(),
            artifact.image.digest.clone(),
        );
        push_manifest(
            session,
            options,
            progress,
            &artifact.image,
            &by_digest,
            target,
        )?;
    }
    let mut subjects: Vec<&str> = artifacts.iter().map(|a| a.subject.as_str()).collect();
    subjects.dedup();
    for subject in subjects {
        if has_referrers_api(session, options, progress, subject)? {
            progress.stage(format!(
                "referrers of {subject}: the registry lists them itself"
            ));
            continue;
        }
        let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
        let mut listed = existing(session, options, progress, &tag)?;
        for artifact in artifacts.iter().filter(|a| a.subject == subject) {
            if !listed
                .iter()
                .any(|d| d["digest"] == artifact.descriptor["digest"])
            {
                listed.push(artifact.descriptor.clone());
            }
        }
        let bytes = crate::image::canonical_json(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": listed,
        }))?;
        let index = layout::Image {
            digest: crate::digest::Blob::of(&bytes).digest,
            manifest: bytes,
            media_type: INDEX_TYPE.to_owned(),
            blobs: Vec::new(),
            images: Vec::new(),
        };
        let tagged = oci_client::Reference::with_tag(
            session.image.registry().to_owned(),
            session.image.repository().to_owned(),
            tag.clone(),
        );
        push_manifest(session, options, progress, &index, &tagged, target)?;
        progress.stage(format!(
            "referrers of {subject}: no referrers API, tagged {tag} ({} artifacts)",
            listed.len()
        ));
    }
    Ok(())
}

/// Whether the registry answers the referrers API for `subject`.
fn has_referrers_api(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    subject: &str,
) -> Result<bool, Error> {
    let status = get(session, options, progress, &format!("referrers/{subject}"))?.0;
    Ok(status == 200)
}

/// The manifests of the index at `tag`, or none when there is none.
fn existing(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    tag: &str,
) -> Result<Vec<Value>, Error> {
    let (status, body) = get(session, options, progress, &format!("manifests/{tag}"))?;
    if status != 200 {
        return Ok(Vec::new());
    }
    let index: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

/// `GET /v2/<repository>/<path>` with the session's credentials: its status and body.
fn get(
    session: &Session,
    options: &RegistryOptions,
    progress: &mut Progress,
    path: &str,
) -> Result<(u16, Vec<u8>), Error> {
    let url = session
        .base
        .join(&format!("/v2/{}/{path}", session.image.repository()))
        .map_err(|e| super::RegistryError::Client {
            step: "the referrers URL",
            detail: e.to_string(),
        })?;
    retrying(
        session,
        options,
        progress,
        &format!("GET {path}"),
        |s, _| {
            s.runtime.block_on(async {
                let request = s
                    .authorize(&url, s.http.get(url.clone()))
                    .header(reqwest::header::ACCEPT, INDEX_TYPE);
                let response = request.send().await.map_err(|e| {
                    oci_client::errors::OciDistributionError::GenericError(Some(e.to_string()))
                })?;
                let status = response.status().as_u16();
                let body = response.bytes().await.map_err(|e| {
                    oci_client::errors::OciDistributionError::GenericError(Some(e.to_string()))
                })?;
                Ok((status, body.to_vec()))
            })
        },
    )
}
