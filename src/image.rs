//! Image metadata: config, manifest, index and docker's `manifest.json`, serialized
//! canonically (sorted keys, no whitespace) so their digests depend on the spec alone.

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;

use crate::config::ImageConfig;
use crate::digest::Blob;
use crate::media_types::{MediaTypes, DOCKER_LIST, DOCKER_MANIFEST};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::spec::{Compression, Spec};

/// The label on every image naming the spec it was built from.
pub const SPEC_LABEL: &str = "dev.image-maker.spec";
/// Contents of the `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Annotation `skopeo`, `umoci` and friends look tags up by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and Docker 25+ read the full image name from.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Why `index.json`'s manifests name no one image for a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unchosen {
    /// No descriptor has the tag; the tags there are, as `` `a`, `b` `` or `no tags`.
    NoSuchTag(String),
    /// No tag asked for, and no descriptor.
    Empty,
    /// No tag asked for, and this many descriptors.
    Ambiguous(usize),
}

/// The descriptor of a layout's `index.json` (its `manifests`) tagged `tag`, or without a
/// tag its only image: how skopeo's `oci:DIR[:TAG]` picks one. Artifacts listed beside an
/// image (entries with an `artifactType`) are not images to pick.
pub(crate) fn choose_tagged<'a>(
    manifests: &'a [serde_json::Value],
    tag: Option<&str>,
) -> Result<&'a serde_json::Value, Unchosen> {
    let tag_of = |m: &'a serde_json::Value| m["annotations"][REF_NAME].as_str();
    let images: Vec<&serde_json::Value> = manifests
        .iter()
        .filter(|m| m.get("artifactType").is_none())
        .collect();
    match (tag, images.as_slice()) {
        (Some(tag), _) => manifests
            .iter()
            .find(|m| tag_of(m) == Some(tag))
            .ok_or_else(|| {
                let tags: Vec<String> = manifests
                    .iter()
                    .filter_map(tag_of)
                    .map(|t| format!("`{t}`"))
                    .collect();
                Unchosen::NoSuchTag(if tags.is_empty() {
                    "no tags".into()
                } else {
                    tags.join(", ")
                })
            }),
        (None, [one]) => Ok(*one),
        (None, []) => Err(Unchosen::Empty),
        (None, many) => Err(Unchosen::Ambiguous(many.len())),
    }
}

/// The `index.json` of a layout that held `existing` and takes the images of `new` (the
/// index of a fresh layout): as skopeo and umoci do, a manifest with a tag `new` brings
/// is replaced and every other one stays, before the new ones in their order.
pub(crate) fn merge_layout_index(existing: &[u8], new: &[u8]) -> Result<Vec<u8>, MetadataError> {
    let existing: serde_json::Value = serde_json::from_slice(existing)?;
    let mut merged: serde_json::Value = serde_json::from_slice(new)?;
    let manifests = |index: &serde_json::Value| -> Result<Vec<serde_json::Value>, MetadataError> {
        match &index["manifests"] {
            serde_json::Value::Array(list) => Ok(list.clone()),
            serde_json::Value::Null => Ok(Vec::new()),
            _ => Err(MetadataError(
                "`manifests` of an index is not a list".into(),
            )),
        }
    };
    let added = manifests(&merged)?;
    let tag_of = |m: &serde_json::Value| m["annotations"][REF_NAME].as_str().map(str::to_owned);
    let tags: Vec<String> = added.iter().filter_map(tag_of).collect();
    // An untagged entry (an artifact) that comes again is listed once.
    let digests: Vec<&serde_json::Value> = added.iter().map(|m| &m["digest"]).collect();
    let mut list: Vec<serde_json::Value> = manifests(&existing)?
        .into_iter()
        .filter(|m| tag_of(m).is_none_or(|t| !tags.contains(&t)))
        .filter(|m| !digests.contains(&&m["digest"]))
        .collect();
    list.extend(added);
    merged["manifests"] = serde_json::Value::Array(list);
    canonical_json(&merged)
}

/// One finished layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LayerInfo {
    /// Digest of the blob as stored (`sha256:…`).
    pub digest: String,
    /// Size of the blob as stored: the tar, headers included. 0 when unknown: a dockerfile
    /// build whose only output is the engine never sees the engine's layer tars.
    pub size: u64,
    /// Digest of the uncompressed tar; equal to `digest` for uncompressed layers.
    pub diff_id: String,
    /// Number of regular files in the layer.
    pub files: u64,
    /// Bytes of file data in the layer (the size the spec asked for).
    pub payload: u64,
    /// The blob's media type: `application/vnd.oci.image.layer.v1.tar`, `…+gzip` or
    /// `…+zstd`.
    #[serde(default = "plain_tar")]
    pub media_type: String,
}

/// The media type of an uncompressed layer: what every layer was before encodings.
pub(crate) fn plain_tar() -> String {
    layer_media_type(Compression::None).to_string()
}

/// The OCI media type of a layer blob encoded as `compression` says.
pub fn layer_media_type(compression: Compression) -> MediaType {
    match compression {
        Compression::None => MediaType::ImageLayer,
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
    }
}

impl LayerInfo {
    /// The layer as a stored blob.
    pub fn blob(&self) -> Blob {
        Blob {
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

/// Serialized metadata of an image, ready to be written as blobs.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub config: Vec<u8>,
    pub config_blob: Blob,
    pub manifest: Vec<u8>,
    pub manifest_blob: Blob,
}

/// Errors here would mean a bug in the fixed shapes built below, not bad input.
#[derive(Debug, thiserror::Error)]
#[error("cannot build image metadata: {0}")]
pub struct MetadataError(String);

impl From<oci_spec::OciSpecError> for MetadataError {
    fn from(e: oci_spec::OciSpecError) -> Self {
        Self(e.to_string())
    }
}

impl From<String> for MetadataError {
    fn from(e: String) -> Self {
        Self(e)
    }
}

impl From<serde_json::Error> for MetadataError {
    fn from(e: serde_json::Error) -> Self {
        Self(e.to_string())
    }
}

/// Config and manifest for the given layers: the spec's, then one per `added` (`--add
/// SRC:DEST`, as the history names it).
pub fn metadata(
    spec: &Spec,
    platform: &Platform,
    mtime: u64,
    layers: &[LayerInfo],
    user: &ImageConfig,
    added: &[String],
) -> Result<Metadata, MetadataError> {
    let created = rfc3339(mtime);
    // The layer's canonical spec, as the label spells it: `files=N` or `tree=N`.
    let history = spec
        .layers()
        .iter()
        .map(|layer| layer.canonical())
        .chain(added.iter().map(|add| format!("add {add}")))
        .zip(1..)
        .map(|(what, n)| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("image-maker layer {n}: {what}"))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(platform.architecture.as_str()))
        .os(Os::from(platform.os.as_str()))
        .config(config_object(spec, platform, user)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
                .build()?,
        )
        .history(history);
    if let Some(variant) = &platform.variant {
        builder = builder.variant(variant.clone());
    }
    let config = canonical_json(&builder.build()?)?;
    with_config(config, layers, user.annotations())
}

/// The config's `config` object: what `user` sets, and the spec label, which no user label
/// replaces (the grammar refuses one of its name). Fields not set are left out, so that an
/// empty `user` gives the object images had before it existed.
fn config_object(
    spec: &Spec,
    platform: &Platform,
    user: &ImageConfig,
) -> Result<oci_spec::image::Config, MetadataError> {
    let mut labels: std::collections::HashMap<String, String> = user
        .labels()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SPEC_LABEL.to_owned(), spec.canonical());
    let mut config = ConfigBuilder::default().labels(labels);
    // An entrypoint the user names wins over the `run` layer's program.
    if let Some(args) = user.entrypoint_args() {
        config = config.entrypoint(args.to_vec());
    } else if let Some(argv) = crate::runnable::entrypoint(spec, platform) {
        config = config.entrypoint(argv);
    }
    if let Some(args) = user.cmd_args() {
        config = config.cmd(args.to_vec());
    }
    let env = user.env_entries();
    if !env.is_empty() {
        config = config.env(env);
    }
    if let Some(dir) = user.working_dir() {
        config = config.working_dir(dir.to_owned());
    }
    if let Some(name) = user.user_name() {
        config = config.user(name.to_owned());
    }
    if !user.exposed_ports().is_empty() {
        config = config.exposed_ports(user.exposed_ports().to_vec());
    }
    if let Some(signal) = user.stop_signal_name() {
        config = config.stop_signal(signal.to_owned());
    }
    Ok(config.build()?)
}

/// A manifest for `config` (kept byte for byte, e.g. as an engine wrote it) and `layers`,
/// with `annotations` when there are any.
pub fn with_config(
    config: Vec<u8>,
    layers: &[LayerInfo],
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Metadata, MetadataError> {
    let config_blob = Blob::of(&config);
    let layer_descriptors = layers
        .iter()
        .map(|l| descriptor(&l.blob(), MediaType::from(l.media_type.as_str())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(&config_blob, MediaType::ImageConfig)?)
        .layers(layer_descriptors)
        .build()?;
    if !annotations.is_empty() {
        manifest.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    let manifest = canonical_json(&manifest)?;
    Ok(Metadata {
        manifest_blob: Blob::of(&manifest),
        manifest,
        config_blob,
        config,
    })
}

/// The OCI descriptor of `blob`.
fn descriptor(blob: &Blob, media_type: MediaType) -> Result<Descriptor, MetadataError> {
    let digest = blob.digest.parse::<oci_spec::image::Digest>()?;
    Ok(Descriptor::new(media_type, blob.size, digest))
}

/// `index.json` naming the manifest by tag, as `skopeo oci:DIR:TAG` and `umoci` look it up.
pub fn index(
    manifest: &Blob,
    reference: &Reference,
    platform: &Platform,
    media: MediaTypes,
) -> Result<Vec<u8>, MetadataError> {
    let mut descriptor = descriptor(manifest, MediaType::ImageManifest)?;
    descriptor.set_platform(Some(oci_platform(platform)?));
    if media == MediaTypes::Docker {
        descriptor.set_media_type(MediaType::Other(DOCKER_MANIFEST.into()));
    }
    layout_index(descriptor, reference)
}

/// `index.json` naming an image index by tag: a multi-platform image in a layout.
pub fn index_of_index(
    index: &Blob,
    reference: &Reference,
    media: MediaTypes,
) -> Result<Vec<u8>, MetadataError> {
    let mut descriptor = descriptor(index, MediaType::ImageIndex)?;
    if media == MediaTypes::Docker {
        descriptor.set_media_type(MediaType::Other(DOCKER_LIST.into()));
    }
    layout_index(descriptor, reference)
}

fn layout_index(
    mut descriptor: Descriptor,
    reference: &Reference,
) -> Result<Vec<u8>, MetadataError> {
    descriptor.set_annotations(Some(
        [
            (REF_NAME.to_owned(), reference.tag().to_owned()),
            (CONTAINERD_NAME.to_owned(), reference.normalized()),
        ]
        .into_iter()
        .collect(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()?;
    canonical_json(&index)
}

fn oci_platform(platform: &Platform) -> Result<oci_spec::image::Platform, MetadataError> {
    let mut oci_platform = PlatformBuilder::default()
        .architecture(Arch::from(platform.architecture.as_str()))
        .os(Os::from(platform.os.as_str()));
    if let Some(variant) = &platform.variant {
        oci_platform = oci_platform.variant(variant.clone());
    }
    Ok(oci_platform.build()?)
}

/// An image index naming each manifest with its platform, in the order given.
pub fn image_index(manifests: &[(&Blob, &Platform)]) -> Result<Vec<u8>, MetadataError> {
    let descriptors = manifests
        .iter()
        .map(|(manifest, platform)| {
            let mut d = descriptor(manifest, MediaType::ImageManifest)?;
            d.set_platform(Some(oci_platform(platform)?));
            Ok(d)
        })
        .collect::<Result<Vec<_>, MetadataError>>()?;
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors)
        .build()?;
    canonical_json(&index)
}

/// One platform's image of a build.
#[derive(Debug, Clone)]
pub struct PlatformMetadata {
    /// Its platform.
    pub platform: Platform,
    /// Its config and manifest.
    pub metadata: Metadata,
    /// Which of the build's layer sets it uses (0-based): its own, or with shared layers
    /// the first one.
    pub set: usize,
}

/// Every image a build makes: one, or one per platform and the index naming them.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// The images, in the index's order.
    pub images: Vec<PlatformMetadata>,
    /// The image index, for more than one image: its bytes and blob.
    pub index: Option<(Vec<u8>, Blob)>,
    /// The media types of the manifests and the index.
    pub media: MediaTypes,
    /// Artifacts whose subjects are the images' manifests (`--artifacts`), listed in the
    /// layout's index beside the image.
    pub artifacts: Vec<crate::artifacts::Artifact>,
}

impl ImageSet {
    /// The set of OCI `images`, with an index when there are several.
    #[cfg_attr(not(feature = "engine"), allow(dead_code))]
    pub fn new(images: Vec<PlatformMetadata>) -> Result<Self, MetadataError> {
        Self::with_media(images, MediaTypes::Oci)
    }

    /// The set of `images` whose manifests have the `media` types, with an index (a
    /// manifest list, for Docker's) when there are several.
    pub fn with_media(
        images: Vec<PlatformMetadata>,
        media: MediaTypes,
    ) -> Result<Self, MetadataError> {
        let index = match images.as_slice() {
            [_] => None,
            many => {
                let manifests: Vec<(&Blob, &Platform)> = many
                    .iter()
                    .map(|image| (&image.metadata.manifest_blob, &image.platform))
                    .collect();
                let mut bytes = image_index(&manifests)?;
                if media == MediaTypes::Docker {
                    // The manifests named are the Docker forms already.
                    let sizes: Vec<(String, u64)> = manifests
                        .iter()
                        .map(|(blob, _)| (blob.digest.clone(), blob.size))
                        .collect();
                    bytes = crate::media_types::to_docker(&bytes, &mut |digest| {
                        sizes.iter().find(|(d, _)| d == digest).cloned()
                    })?;
                }
                let blob = Blob::of(&bytes);
                Some((bytes, blob))
            }
        };
        Ok(Self {
            images,
            index,
            media,
            artifacts: Vec::new(),
        })
    }

    /// What a reference resolves to: the index, or the only manifest.
    pub fn top(&self) -> Blob {
        match (&self.index, self.images.first()) {
            (Some((_, blob)), _) => blob.clone(),
            (None, Some(image)) => image.metadata.manifest_blob.clone(),
            (None, None) => Blob::of(b""),
        }
    }

    /// The layout's `index.json`, naming the top blob by `reference`'s tag, and the
    /// artifacts, untagged, after it.
    pub fn layout_index(&self, reference: &Reference) -> Result<Vec<u8>, MetadataError> {
        let index = self.top_index(reference)?;
        if self.artifacts.is_empty() {
            return Ok(index);
        }
        let mut value: serde_json::Value = serde_json::from_slice(&index)?;
        if let Some(list) = value["manifests"].as_array_mut() {
            list.extend(
                self.artifacts
                    .iter()
                    .map(crate::artifacts::Artifact::descriptor),
            );
        }
        canonical_json(&value)
    }

    fn top_index(&self, reference: &Reference) -> Result<Vec<u8>, MetadataError> {
        match (&self.index, self.images.first()) {
            (Some((_, blob)), _) => index_of_index(blob, reference, self.media),
            (None, Some(image)) => index(
                &image.metadata.manifest_blob,
                reference,
                &image.platform,
                self.media,
            ),
            (None, None) => Err(MetadataError("an image set with no image".into())),
        }
    }

    /// Every metadata blob: each config and manifest, then the index; with their bytes.
    pub fn blobs(&self) -> Vec<(&Blob, &[u8])> {
        let mut blobs = Vec::new();
        for image in &self.images {
            let meta = &image.metadata;
            blobs.push((&meta.config_blob, meta.config.as_slice()));
            blobs.push((&meta.manifest_blob, meta.manifest.as_slice()));
        }
        if let Some((bytes, blob)) = &self.index {
            blobs.push((blob, bytes.as_slice()));
        }
        for artifact in &self.artifacts {
            blobs.push((&artifact.payload_blob, artifact.payload.as_slice()));
            blobs.push((&artifact.manifest_blob, artifact.manifest.as_slice()));
        }
        if let Some(first) = self.artifacts.first() {
            blobs.push((&first.config_blob, crate::artifacts::EMPTY_CONFIG));
        }
        blobs
    }
}

/// Docker's own archive index, which Docker before 25 requires to `docker load`.
pub fn docker_manifest(
    config_path: &str,
    reference: &Reference,
    layer_paths: &[String],
) -> Result<Vec<u8>, MetadataError> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry<'a> {
        config: &'a str,
        repo_tags: [String; 1],
        layers: &'a [String],
    }
    canonical_json(&[Entry {
        config: config_path,
        repo_tags: [reference.to_string()],
        layers: layer_paths,
    }])
}

/// Sorted keys, no whitespace: oci-spec holds maps as `HashMap`, whose order varies.
pub(crate) fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, MetadataError> {
    Ok(serde_json::to_vec(&sorted(serde_json::to_value(value)?))?)
}

/// Rebuilds every object with its keys in order. serde_json's map is already sorted unless
/// some crate in the build enables its `preserve_order` feature; this holds either way.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days >= 0.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_index_replaces_only_the_same_tag() {
        let tagged =
            |t: &str, d: &str| serde_json::json!({ "annotations": { REF_NAME: t }, "digest": d });
        let index = |m: Vec<serde_json::Value>| {
            serde_json::to_vec(&serde_json::json!({ "schemaVersion": 2, "manifests": m }))
                .expect("json")
        };
        let existing = index(vec![
            tagged("1", "a"),
            serde_json::json!({"digest": "u"}),
            tagged("2", "b"),
        ]);
        let merged = merge_layout_index(&existing, &index(vec![tagged("2", "c")])).expect("merged");
        let merged: serde_json::Value = serde_json::from_slice(&merged).expect("json");
        let digests: Vec<&str> = merged["manifests"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|m| m["digest"].as_str())
            .collect();
        assert_eq!(digests, ["a", "u", "c"]);
        assert!(merge_layout_index(b"{", &index(vec![])).is_err());
    }

    #[test]
    fn a_tag_or_the_only_image_is_chosen() {
        let tagged = |t: &str| serde_json::json!({ "annotations": { REF_NAME: t } });
        let two = [tagged("1"), tagged("2")];
        assert_eq!(choose_tagged(&two, Some("2")), Ok(&two[1]));
        assert_eq!(
            choose_tagged(&two, Some("3")),
            Err(Unchosen::NoSuchTag("`1`, `2`".into()))
        );
        assert_eq!(choose_tagged(&two, None), Err(Unchosen::Ambiguous(2)));
        assert_eq!(choose_tagged(&two[..1], None), Ok(&two[0]));
        assert_eq!(choose_tagged(&[], None), Err(Unchosen::Empty));
        let untagged = [serde_json::json!({})];
        assert_eq!(
            choose_tagged(&untagged, Some("x")),
            Err(Unchosen::NoSuchTag("no tags".into()))
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn index_keys_are_sorted_at_every_level() {
        let blob = Blob::of(b"manifest");
        let index = index(
            &blob,
            &Reference::parse("a/b:c").expect("valid"),
            &Platform::default(),
            MediaTypes::Oci,
        )
        .expect("index");
        let text = String::from_utf8(index).expect("utf8");
        let containerd = text.find(CONTAINERD_NAME).expect("containerd name");
        let ref_name = text.find(REF_NAME).expect("ref name");
        assert!(containerd < ref_name, "{text}");
        assert!(
            text.starts_with(r#"{"manifests":[{"annotations":"#),
            "{text}"
        );
    }

    /// A plain 1 KiB layer of one file, digest and diff_id all `a`s.
    fn one_kb_layer() -> LayerInfo {
        LayerInfo {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 2560,
            diff_id: format!("sha256:{}", "a".repeat(64)),
            files: 1,
            payload: 1024,
            media_type: plain_tar(),
        }
    }

    #[test]
    fn json_is_canonical() {
        let spec = Spec::parse("1KB").expect("valid");
        let layer = one_kb_layer();
        let meta = metadata(
            &spec,
            &Platform::default(),
            0,
            &[layer],
            &ImageConfig::new(),
            &[],
        )
        .expect("metadata");
        let config = String::from_utf8(meta.config).expect("utf8");
        assert!(config.starts_with(r#"{"architecture":"amd64","config":{"Labels":{"dev.image-maker.spec":"1KB:files=1"}},"created":"1970-01-01T00:00:00Z""#), "{config}");
        // A fixed point of parse-and-serialize: nothing left to canonicalize.
        let reparsed: serde_json::Value = serde_json::from_str(&config).expect("json");
        assert_eq!(canonical_json(&reparsed).expect("json"), config.as_bytes());
        assert!(
            !config.contains('\n') && !config.contains("\": "),
            "{config}"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&meta.manifest).expect("json");
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
    }

    #[test]
    fn a_config_stays_canonical_and_annotates_the_manifest() {
        let spec = Spec::parse("1KB").expect("valid");
        let layer = one_kb_layer();
        let user = ImageConfig::new()
            .expose("80")
            .and_then(|c| c.expose("53/udp"))
            .and_then(|c| c.label("z=1"))
            .and_then(|c| c.annotation("b=2"))
            .and_then(|c| c.annotation("a=1"))
            .expect("valid");
        let meta =
            metadata(&spec, &Platform::default(), 0, &[layer], &user, &[]).expect("metadata");
        let config: serde_json::Value = serde_json::from_slice(&meta.config).expect("json");
        assert_eq!(canonical_json(&config).expect("json"), meta.config);
        assert_eq!(
            config["config"]["ExposedPorts"],
            serde_json::json!({ "53/udp": {}, "80/tcp": {} })
        );
        assert_eq!(config["config"]["Labels"][SPEC_LABEL], "1KB:files=1");
        let manifest = String::from_utf8(meta.manifest).expect("utf8");
        assert!(
            manifest.starts_with(r#"{"annotations":{"a":"1","b":"2"},"config":"#),
            "{manifest}"
        );
    }

    #[test]
    fn history_names_each_layers_layout_as_the_label_does() {
        let spec = Spec::parse("2KB:tree=5,1KB:files=2").expect("valid");
        let layer = |d: char| LayerInfo {
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            size: 4096,
            diff_id: format!("sha256:{}", d.to_string().repeat(64)),
            files: 2,
            payload: 1024,
            media_type: plain_tar(),
        };
        let meta = metadata(
            &spec,
            &Platform::default(),
            0,
            &[layer('a'), layer('b')],
            &ImageConfig::new(),
            &[],
        )
        .expect("metadata");
        let config: serde_json::Value = serde_json::from_slice(&meta.config).expect("json");
        assert_eq!(
            config["config"]["Labels"][SPEC_LABEL],
            "2KB:tree=5,1KB:files=2"
        );
        let history: Vec<&str> = config["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["created_by"].as_str().expect("created_by"))
            .collect();
        assert_eq!(
            history,
            [
                "image-maker layer 1: 2KB:tree=5",
                "image-maker layer 2: 1KB:files=2"
            ]
        );
    }
}
