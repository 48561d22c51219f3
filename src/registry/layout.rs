//! Reading what to push from an OCI image layout: one manifest, its config and layers, or
//! an index and each of its manifests, every blob checked against its descriptor before
//! anything goes over the network.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::RegistryError;
use crate::digest::Blob;
use crate::source::{Blobs as _, Descriptor, OciDir};
use crate::Error;

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

/// The image of the layout at `layout` that `tag` names (or its only one), read through the
/// one layout reader, [`OciDir`], every small blob checked against its descriptor.
pub(crate) fn read(layout: &Path, tag: Option<&str>) -> Result<Image, Error> {
    let top = OciDir::open(layout, tag)?.top().clone();
    Ok(
        read_manifest(layout, &top, true).map_err(|detail| RegistryError::BadLayout {
            path: layout.to_path_buf(),
            detail,
        })?,
    )
}

/// The manifest `chosen` describes, with its blobs; an index (when `nested` allows one),
/// with its images.
fn read_manifest(layout: &Path, chosen: &Descriptor, nested: bool) -> Result<Image, String> {
    let manifest_ref = blob_file(layout, chosen);
    let media_type = match chosen.media_type.as_str() {
        "" => "application/vnd.oci.image.manifest.v1+json".to_owned(),
        given => given.to_owned(),
    };
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
            .map(|m| read_manifest(layout, &Descriptor::parse(m)?, false))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Image {
            manifest,
            media_type,
            digest: manifest_ref.digest,
            blobs: Vec::new(),
            images,
        });
    }
    let mut blobs = vec![blob_file(layout, &Descriptor::parse(&parsed["config"])?)];
    for layer in parsed["layers"].as_array().into_iter().flatten() {
        let blob = blob_file(layout, &Descriptor::parse(layer)?);
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

/// An artifact of the layout: its descriptor as the layout's index lists it (with its
/// `artifactType`), the manifest and blobs to push, and the digest of its subject.
#[derive(Debug)]
pub(crate) struct Artifact {
    pub descriptor: Value,
    pub image: Image,
    pub subject: String,
}

/// The artifacts `layout`'s index lists whose subject is one of `subjects`.
pub(crate) fn artifacts(layout: &Path, subjects: &[&str]) -> Result<Vec<Artifact>, Error> {
    let bad = |detail: String| RegistryError::BadLayout {
        path: layout.to_path_buf(),
        detail,
    };
    let index_path = layout.join("index.json");
    let index: Value =
        serde_json::from_slice(&fs::read(&index_path).map_err(Error::io("read", &index_path))?)
            .map_err(|e| bad(format!("index.json: {e}")))?;
    let mut found = Vec::new();
    for entry in index["manifests"].as_array().into_iter().flatten() {
        if entry.get("artifactType").is_none() {
            continue;
        }
        let descriptor = Descriptor::parse(entry).map_err(|e| bad(format!("index.json: {e}")))?;
        let image = read_manifest(layout, &descriptor, false).map_err(bad)?;
        let parsed: Value = serde_json::from_slice(&image.manifest)
            .map_err(|e| bad(format!("manifest {}: {e}", image.digest)))?;
        let Some(subject) = parsed["subject"]["digest"].as_str() else {
            continue;
        };
        if subjects.contains(&subject) {
            found.push(Artifact {
                descriptor: entry.clone(),
                subject: subject.to_owned(),
                image,
            });
        }
    }
    Ok(found)
}

fn blob_file(layout: &Path, descriptor: &Descriptor) -> BlobFile {
    BlobFile {
        digest: descriptor.digest.clone(),
        size: descriptor.size,
        path: layout.join("blobs/sha256").join(descriptor.hex()),
    }
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
