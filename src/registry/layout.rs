//! Reading what to push from an OCI image layout: one manifest, its config and layers, or
//! an index and each of its manifests, every blob checked against its descriptor before
//! anything goes over the network.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::RegistryError;
use crate::digest::Blob;
use crate::image::{choose_tagged, Unchosen};

/// A blob of the image: where it is on disk, and its descriptor's digest and size.
#[derive(Debug, Clone)]
pub(crate) struct BlobFile {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// The image to push: the manifest's exact bytes (their digest is the image's identity)
/// and the blobs it names, config first; or an index's bytes and the images it names.
#[derive(Debug)]
pub(crate) struct Image {
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: String,
    pub blobs: Vec<BlobFile>,
    /// For an index, the images it names, in its order, pushed before it.
    pub images: Vec<Image>,
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("index") || media_type.contains("manifest.list")
}

pub(crate) fn read(layout: &Path, tag: Option<&str>) -> Result<Image, RegistryError> {
    let bad = |detail: String| RegistryError::BadLayout {
        path: layout.to_path_buf(),
        detail,
    };
    let index_path = layout.join("index.json");
    let index: Value = fs::read(&index_path)
        .map_err(|e| bad(format!("cannot read index.json: {e}")))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| bad(format!("index.json: {e}"))))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| bad("index.json has no `manifests`".into()))?;
    let chosen = choose_tagged(manifests, tag).map_err(|why| match why {
        Unchosen::NoSuchTag(available) => RegistryError::NoSuchTag {
            path: layout.to_path_buf(),
            tag: tag.unwrap_or_default().to_owned(),
            available,
        },
        Unchosen::Empty => bad("index.json lists no image".into()),
        Unchosen::Ambiguous(count) => RegistryError::Ambiguous {
            path: layout.to_path_buf(),
            count,
        },
    })?;
    read_manifest(layout, chosen, true).map_err(bad)
}

/// The manifest `chosen` describes, with its blobs; an index (when `nested` allows one),
/// with its images.
fn read_manifest(layout: &Path, chosen: &Value, nested: bool) -> Result<Image, String> {
    let manifest_ref = descriptor(layout, chosen)?;
    let media_type = chosen["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_owned();
    let manifest = read_blob(&manifest_ref)?;
    let parsed: Value = serde_json::from_slice(&manifest)
        .map_err(|e| format!("manifest {}: {e}", manifest_ref.digest))?;
    if is_index(&media_type) {
        if !nested {
            return Err(format!(
                "index {} names another index; push its images one by one",
                manifest_ref.digest
            ));
        }
        let images = parsed["manifests"]
            .as_array()
            .ok_or_else(|| format!("index {} has no `manifests`", manifest_ref.digest))?
            .iter()
            .map(|m| read_manifest(layout, m, false))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Image {
            manifest,
            media_type,
            digest: manifest_ref.digest,
            blobs: Vec::new(),
            images,
        });
    }
    let mut blobs = vec![descriptor(layout, &parsed["config"])?];
    for layer in parsed["layers"].as_array().into_iter().flatten() {
        let blob = descriptor(layout, layer)?;
        let on_disk = fs::metadata(&blob.path)
            .map_err(|e| format!("blob {}: {e}", blob.digest))?
            .len();
        if on_disk != blob.size {
            return Err(format!(
                "blob {} has {on_disk} bytes, its descriptor says {}",
                blob.digest, blob.size
            ));
        }
        blobs.push(blob);
    }
    // The config is small: checking its digest catches a layout edited by hand.
    read_blob(&blobs[0])?;
    Ok(Image {
        manifest,
        media_type,
        digest: manifest_ref.digest,
        blobs,
        images: Vec::new(),
    })
}

fn descriptor(layout: &Path, value: &Value) -> Result<BlobFile, String> {
    let digest = value["digest"]
        .as_str()
        .ok_or_else(|| "a descriptor has no digest".to_owned())?;
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("digest `{digest}` is not sha256"))?;
    let size = value["size"]
        .as_u64()
        .ok_or_else(|| format!("descriptor {digest} has no size"))?;
    Ok(BlobFile {
        digest: digest.to_owned(),
        size,
        path: layout.join("blobs/sha256").join(hex),
    })
}

/// A small blob, read whole and checked against its digest.
fn read_blob(blob: &BlobFile) -> Result<Vec<u8>, String> {
    let bytes = fs::read(&blob.path).map_err(|e| format!("blob {}: {e}", blob.digest))?;
    let actual = Blob::of(&bytes);
    if actual.digest != blob.digest || actual.size != blob.size {
        return Err(format!(
            "blob {} does not match its descriptor ({} bytes, {})",
            blob.digest, actual.size, actual.digest
        ));
    }
    Ok(bytes)
}
