//! Docker's schema 2 form of an image: the same config and layer blobs, in a manifest (and
//! a manifest list) with Docker's media types. Its bytes, so its digests, differ from the
//! OCI form's; the config's digest, and so the image ID, does not.

use serde_json::Value;

use crate::image::MetadataError;

/// Which media types an image's manifests use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum MediaTypes {
    /// OCI image manifests and indexes.
    #[default]
    Oci,
    /// Docker schema 2 manifests and manifest lists, as registries stored images before OCI.
    Docker,
}

impl MediaTypes {
    /// Whether these are OCI's.
    pub fn is_oci(&self) -> bool {
        *self == Self::Oci
    }
}

/// The Docker schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A layer media type: how its blob is encoded, and whether it may be copied (OCI's
/// non-distributable and Docker's foreign layers may not); `None` for a type that is no
/// layer. OCI's and Docker's spellings both.
pub(crate) fn layer_encoding(media_type: &str) -> Option<(crate::spec::Compression, bool)> {
    use crate::spec::Compression;
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => (Compression::None, true),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => (Compression::Gzip, true),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => (Compression::Zstd, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar" => (Compression::None, false),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => (Compression::Gzip, false),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            (Compression::Zstd, false)
        }
        _ => return None,
    })
}

/// Docker's name for an OCI media type this crate writes.
fn docker_type(oci: &str) -> Option<&'static str> {
    Some(match oci {
        "application/vnd.oci.image.manifest.v1+json" => DOCKER_MANIFEST,
        "application/vnd.oci.image.index.v1+json" => DOCKER_LIST,
        "application/vnd.oci.image.config.v1+json" => {
            "application/vnd.docker.container.image.v1+json"
        }
        "application/vnd.oci.image.layer.v1.tar" => "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            "application/vnd.docker.image.rootfs.diff.tar.zstd"
        }
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        }
        _ => return None,
    })
}

/// The Docker form of an OCI manifest or index (`json`): every media type renamed, and for
/// an index each manifest's descriptor replaced by `child` of its digest (the Docker form
/// of that manifest: its digest and size). Manifest annotations, which schema 2 has no
/// place for, are left out.
pub(crate) fn to_docker(
    json: &[u8],
    child: &mut dyn FnMut(&str) -> Option<(String, u64)>,
) -> Result<Vec<u8>, MetadataError> {
    let mut value: Value = serde_json::from_slice(json)?;
    let rename = |v: &mut Value| {
        if let Some(docker) = v["mediaType"].as_str().and_then(docker_type) {
            v["mediaType"] = docker.into();
        }
    };
    rename(&mut value);
    if let Some(object) = value.as_object_mut() {
        object.remove("annotations");
    }
    if let Some(config) = value.get_mut("config") {
        rename(config);
    }
    // `get_mut`, not indexing: `value["layers"]` would add a `null` to an index.
    let layers = value.get_mut("layers").and_then(Value::as_array_mut);
    for layer in layers.into_iter().flatten() {
        rename(layer);
    }
    let manifests = value.get_mut("manifests").and_then(Value::as_array_mut);
    for manifest in manifests.into_iter().flatten() {
        let digest = manifest["digest"].as_str().unwrap_or_default().to_owned();
        let (digest, size) = child(&digest).ok_or_else(|| {
            MetadataError::from(format!(
                "the index names {digest}, which has no Docker form"
            ))
        })?;
        manifest["digest"] = digest.into();
        manifest["size"] = size.into();
        rename(manifest);
    }
    crate::image::canonical_json(&value)
}

/// `json`, an OCI manifest, with its layers non-distributable: their media types OCI's
/// `nondistributable` ones, each with `urls` from `url(digest)`.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn to_foreign(
    json: &[u8],
    url: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, MetadataError> {
    let mut value: Value = serde_json::from_slice(json)?;
    let layers = value.get_mut("layers").and_then(Value::as_array_mut);
    for layer in layers.into_iter().flatten() {
        let media_type = layer["mediaType"].as_str().unwrap_or_default();
        let foreign = media_type.replace(
            "application/vnd.oci.image.layer.v1.",
            "application/vnd.oci.image.layer.nondistributable.v1.",
        );
        let digest = layer["digest"].as_str().unwrap_or_default().to_owned();
        layer["mediaType"] = foreign.into();
        layer["urls"] = serde_json::json!([url(&digest)]);
    }
    crate::image::canonical_json(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_every_media_type_and_follows_the_children() {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l","size":2}],"annotations":{"a":"b"}}"#;
        let docker = to_docker(manifest, &mut |_| None).expect("a manifest");
        let value: Value = serde_json::from_slice(&docker).expect("JSON");
        assert_eq!(value["mediaType"], DOCKER_MANIFEST);
        assert_eq!(
            value["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        assert_eq!(
            value["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        assert!(value.get("annotations").is_none());
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let list = to_docker(index, &mut |d| {
            (d == "sha256:m").then(|| ("sha256:d".into(), 4))
        })
        .expect("an index");
        let value: Value = serde_json::from_slice(&list).expect("JSON");
        assert_eq!(value["mediaType"], DOCKER_LIST);
        assert_eq!(value["manifests"][0]["digest"], "sha256:d");
        assert_eq!(value["manifests"][0]["size"], 4);
        assert_eq!(value["manifests"][0]["mediaType"], DOCKER_MANIFEST);
        assert!(value.get("layers").is_none(), "{value}");
        assert!(to_docker(index, &mut |_| None).is_err());
    }
}
