//! Artifacts attached to an image, as OCI 1.1 manifests whose `subject` is the image's
//! manifest: a signature (cosign's simple-signing payload), an SBOM (SPDX 2.3, from the
//! oracle: every file with its checksums) and an attestation (an in-toto statement of
//! SLSA provenance). Every byte follows from the subject and its spec, so the same image
//! has the same artifacts, and so the same referrers, everywhere.
//!
//! The signature is not one anybody can verify: no key signs it. It has the shape, media
//! types and annotations signature tooling looks for, which is what a registry, cache or
//! replicator under test handles.

use serde_json::{json, Value};

use crate::digest::Blob;
use crate::image::MetadataError;

/// OCI's empty config (`{}`), which artifact manifests name.
pub(crate) const EMPTY_CONFIG: &[u8] = b"{}";
pub(crate) const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The artifact types attached, in the order the referrers list gives them.
pub(crate) const SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub(crate) const SBOM_TYPE: &str = "application/spdx+json";
pub(crate) const ATTESTATION_TYPE: &str = "application/vnd.in-toto+json";

/// One artifact: its manifest and its one payload blob.
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    pub artifact_type: &'static str,
    pub manifest: Vec<u8>,
    pub manifest_blob: Blob,
    pub payload: Vec<u8>,
    pub payload_blob: Blob,
    /// The empty config's blob, which every artifact names.
    pub config_blob: Blob,
}

impl Artifact {
    /// Its descriptor in a referrers index: with its `artifactType` and annotations.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": self.artifact_type,
            "digest": self.manifest_blob.digest,
            "size": self.manifest_blob.size,
            "annotations": {"org.opencontainers.image.created": CREATED},
        })
    }
}

/// Every artifact is dated the epoch: its bytes depend on nothing else.
const CREATED: &str = "1970-01-01T00:00:00Z";

/// The subject an artifact is attached to.
#[derive(Debug, Clone)]
pub(crate) struct Subject<'a> {
    pub manifest: &'a Blob,
    pub media_type: &'a str,
    /// The repository, as signatures and statements name it.
    pub repository: &'a str,
}

/// The three artifacts of `subject`; `sbom` is its SPDX document.
pub(crate) fn attach(subject: &Subject<'_>, sbom: Vec<u8>) -> Result<Vec<Artifact>, MetadataError> {
    let hex = subject.manifest.digest.trim_start_matches("sha256:");
    let signature = json!({
        "critical": {
            "identity": {"docker-reference": subject.repository},
            "image": {"docker-manifest-digest": subject.manifest.digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject.repository, "digest": {"sha256": hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://image-maker.invalid/build/v1",
                "externalParameters": {"subject": subject.manifest.digest},
            },
            "runDetails": {"builder": {"id": format!("image-maker {}", env!("CARGO_PKG_VERSION"))}},
        },
    });
    let payloads = [
        (
            SIGNATURE_TYPE,
            "application/vnd.dev.cosign.simplesigning.v1+json",
            crate::image::canonical_json(&signature)?,
        ),
        (SBOM_TYPE, SBOM_TYPE, sbom),
        (
            ATTESTATION_TYPE,
            "application/vnd.in-toto+json",
            crate::image::canonical_json(&statement)?,
        ),
    ];
    payloads
        .into_iter()
        .map(|(artifact_type, layer_type, payload)| {
            let payload_blob = Blob::of(&payload);
            let mut layer = json!({
                "mediaType": layer_type,
                "digest": payload_blob.digest,
                "size": payload_blob.size,
            });
            if artifact_type == SIGNATURE_TYPE {
                // Where cosign keeps the signature of the payload: here a digest of it, so
                // that the annotation is there and deterministic, not a signature by a key.
                layer["annotations"] = json!({
                    "dev.cosignproject.cosign/signature": payload_blob.digest,
                });
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": artifact_type,
                "config": {
                    "mediaType": EMPTY_TYPE,
                    "digest": Blob::of(EMPTY_CONFIG).digest,
                    "size": EMPTY_CONFIG.len(),
                },
                "layers": [layer],
                "subject": {
                    "mediaType": subject.media_type,
                    "digest": subject.manifest.digest,
                    "size": subject.manifest.size,
                },
                "annotations": {"org.opencontainers.image.created": CREATED},
            });
            let manifest = crate::image::canonical_json(&manifest)?;
            Ok(Artifact {
                artifact_type,
                manifest_blob: Blob::of(&manifest),
                manifest,
                payload,
                payload_blob,
                config_blob: Blob::of(EMPTY_CONFIG),
            })
        })
        .collect()
}

/// The artifacts of the manifest `manifest` (of `media_type`) of `spec`'s image on
/// `platform`: its SBOM from the oracle, dated `mtime`.
pub(crate) fn for_manifest(
    manifest: &Blob,
    media_type: &str,
    repository: &str,
    spec: &crate::Spec,
    platform: &crate::Platform,
    shared: bool,
    mtime: u64,
) -> Result<Vec<Artifact>, crate::Error> {
    let expected = crate::expect::Expected::new(spec, platform, shared)?;
    let mut sbom = Vec::new();
    crate::expect::spdx::write(&expected, &crate::image::rfc3339(mtime), &mut sbom).map_err(
        |e| crate::Error::Generate {
            spec: spec.canonical(),
            detail: e.to_string(),
        },
    )?;
    let subject = Subject {
        manifest,
        media_type,
        repository,
    };
    Ok(attach(&subject, sbom)?)
}

/// The referrers index of `artifacts`, those of `artifact_type` only when given.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn referrers_index(
    artifacts: &[Artifact],
    artifact_type: Option<&str>,
) -> Result<Vec<u8>, MetadataError> {
    let manifests: Vec<Value> = artifacts
        .iter()
        .filter(|a| artifact_type.is_none_or(|t| t == a.artifact_type))
        .map(Artifact::descriptor)
        .collect();
    crate::image::canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_artifacts_name_their_subject_and_filter_by_type() {
        let manifest = Blob::of(b"a manifest");
        let subject = Subject {
            manifest: &manifest,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            repository: "mock",
        };
        let artifacts = attach(&subject, b"{}".to_vec()).expect("made");
        assert_eq!(artifacts.len(), 3);
        for a in &artifacts {
            let value: Value = serde_json::from_slice(&a.manifest).expect("JSON");
            assert_eq!(value["subject"]["digest"], manifest.digest);
            assert_eq!(value["artifactType"], a.artifact_type);
            assert_eq!(value["layers"][0]["digest"], a.payload_blob.digest);
        }
        let again = attach(&subject, b"{}".to_vec()).expect("made");
        assert_eq!(again[0].manifest_blob, artifacts[0].manifest_blob);
        let index: Value =
            serde_json::from_slice(&referrers_index(&artifacts, Some(SBOM_TYPE)).expect("index"))
                .expect("JSON");
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
        assert_eq!(index["manifests"][0]["artifactType"], SBOM_TYPE);
    }
}
