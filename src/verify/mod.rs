//! `verify` and `inspect`: read an image from any [`Source`], every blob once, in order.
//!
//! Verify checks each blob against its descriptor (digest, size, media type), each layer's
//! decoded tar against the config's `diff_id`, and — for images image-maker made, which
//! carry their spec in a label — every entry and every byte against what the spec
//! generates. It stops at the first difference and names the blob, the place and both
//! values. Inspect reads the same way and reports what it finds. [`rootfs`] checks an
//! unpacked directory rather than an image.

mod error;
mod layer;
pub mod rootfs;

use std::io::Read;

use serde::Serialize;
use serde_json::Value;

pub use error::ImageError;
pub use layer::LayerReport;
pub use rootfs::{verify_rootfs, RootfsMismatch};

use crate::content::seed;
use crate::image::SPEC_LABEL;
use crate::source::{Blobs, Descriptor, OpenError, Source};
use crate::units::human_size;
use crate::{plan, Error, Platform, Progress, Spec};

/// Manifests, indexes and configs are read whole; none of image-maker's comes near this.
const SMALL_BLOB_LIMIT: u64 = 16 << 20;

/// What was read: the image, or the index and its images.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The source as given.
    pub reference: String,
    /// The image index the reference names, if it names one.
    pub index: Option<BlobReport>,
    /// The images: one, or one per manifest of the index.
    pub images: Vec<ImageReport>,
}

/// A blob as its descriptor gives it.
#[derive(Debug, Clone, Serialize)]
pub struct BlobReport {
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// One image: its manifest, config and layers.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// `os/arch[/variant]`, from the config.
    pub platform: String,
    /// The manifest.
    pub manifest: BlobReport,
    /// The config.
    pub config: BlobReport,
    /// The spec in the `dev.image-maker.spec` label, if the image has one.
    pub spec: Option<String>,
    /// Whether the files hold the linux/amd64 bytes (`--shared-layers`) rather than the
    /// platform's own; `None` when there is no spec to tell.
    pub shared_layers: Option<bool>,
    /// The layers, in order.
    pub layers: Vec<LayerReport>,
}

impl Report {
    /// The layers of every image.
    pub fn layers(&self) -> impl Iterator<Item = &LayerReport> {
        self.images.iter().flat_map(|i| i.layers.iter())
    }

    /// `verified SOURCE: N layers, M files, SIZE`.
    pub fn summary(&self) -> String {
        let layers = self.layers().count();
        let files: u64 = self.layers().map(|l| l.files).sum();
        let bytes: u64 = self.layers().map(|l| l.size).sum::<u64>()
            + self
                .images
                .iter()
                .map(|i| i.manifest.size + i.config.size)
                .sum::<u64>()
            + self.index.as_ref().map_or(0, |i| i.size);
        let images = match self.images.len() {
            1 => String::new(),
            n => format!(
                "{n} images ({}), ",
                self.images
                    .iter()
                    .map(|i| i.platform.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "verified {}: {images}{layers} layer{}, {files} file{}, {}",
            self.reference,
            if layers == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" },
            human_size(bytes)
        )
    }
}

/// Reads every blob of the image at `source` and checks it; the first difference is the
/// error. `platforms` is the platform list of a `cache:` source.
///
/// ```no_run
/// use image_maker::{verify, Progress, Source};
///
/// let source = Source::parse("oci:target/mock-small:1")?;
/// let report = verify(&source, &[], &mut Progress::hidden())?;
/// println!("{}", report.summary()); // verified oci:target/mock-small:1: 2 layers, …
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(
    source: &Source,
    platforms: &[Platform],
    progress: &mut Progress,
) -> Result<Report, Error> {
    read(source, platforms, true, progress)
}

/// Reads every blob of the image at `source` and reports what it holds, checking only
/// what it must to read on.
///
/// ```no_run
/// use image_maker::{inspect, Progress, Source};
///
/// let report = inspect(&Source::parse("oci-archive:image.tar")?, &[], &mut Progress::hidden())?;
/// for layer in report.layers() {
///     println!("{layer:?}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn inspect(
    source: &Source,
    platforms: &[Platform],
    progress: &mut Progress,
) -> Result<Report, Error> {
    read(source, platforms, false, progress)
}

fn read(
    source: &Source,
    platforms: &[Platform],
    strict: bool,
    progress: &mut Progress,
) -> Result<Report, Error> {
    let mut blobs = source.open(platforms, progress)?;
    let mut reader = Reader {
        blobs: blobs.as_mut(),
        strict,
    };
    let top = reader.blobs.top().clone();
    let bytes = reader.small(&top)?;
    let json = reader.json(&top, &bytes)?;
    let media_type = match top.media_type.as_str() {
        "" => json["mediaType"].as_str().unwrap_or_default().to_owned(),
        m => m.to_owned(),
    };
    let mut report = Report {
        reference: source.to_string(),
        index: None,
        images: Vec::new(),
    };
    if is_index(&media_type) {
        report.index = Some(blob_report(&top, &media_type));
        let manifests = json["manifests"]
            .as_array()
            .ok_or_else(|| reader.malformed(&top, "an index without `manifests`"))?;
        for value in manifests {
            let descriptor = Descriptor::parse(value).map_err(|e| reader.malformed(&top, &e))?;
            crate::interrupt::check()?;
            let image = reader.image(&descriptor)?;
            if strict {
                if let Some(named) = &descriptor.platform {
                    if *named != image.platform {
                        return Err(mismatch(
                            &image.config.digest,
                            "platform (the index's, for this manifest)",
                            named.clone(),
                            image.platform.clone(),
                        ));
                    }
                }
            }
            report.images.push(image);
        }
    } else {
        let mut top = top;
        top.media_type = media_type;
        let image = reader.image(&top)?;
        report.images.push(image);
    }
    Ok(report)
}

fn is_index(media_type: &str) -> bool {
    media_type.contains("index") || media_type.contains("manifest.list")
}

fn blob_report(d: &Descriptor, media_type: &str) -> BlobReport {
    BlobReport {
        digest: d.digest.clone(),
        size: d.size,
        media_type: media_type.to_owned(),
    }
}

fn mismatch(blob: &str, what: &str, expected: String, found: String) -> Error {
    ImageError::Mismatch {
        blob: blob.to_owned(),
        place: None,
        what: what.to_owned(),
        expected,
        found,
    }
    .into()
}

struct Reader<'a> {
    blobs: &'a mut dyn Blobs,
    strict: bool,
}

impl Reader<'_> {
    fn open(&mut self, d: &Descriptor) -> Result<Box<dyn Read + '_>, Error> {
        self.blobs.open(d).map_err(|e| match e {
            OpenError::Missing(detail) => ImageError::Missing {
                blob: d.digest.clone(),
                detail,
            }
            .into(),
            OpenError::Other(e) => e,
        })
    }

    fn malformed(&self, d: &Descriptor, detail: &str) -> Error {
        ImageError::Malformed {
            blob: d.digest.clone(),
            place: None,
            detail: detail.to_owned(),
        }
        .into()
    }

    /// A manifest, index or config, read whole and (verify) checked against `d`.
    fn small(&mut self, d: &Descriptor) -> Result<Vec<u8>, Error> {
        let strict = self.strict;
        let mut bytes = Vec::new();
        let read = self
            .open(d)?
            .take(SMALL_BLOB_LIMIT.max(d.size) + 1)
            .read_to_end(&mut bytes);
        read.map_err(|e| self.malformed(d, &e.to_string()))?;
        if strict {
            let actual = crate::digest::Blob::of(&bytes);
            if actual.size != d.size {
                return Err(mismatch(
                    &d.digest,
                    "size",
                    format!("{} bytes", d.size),
                    format!("{} bytes", actual.size),
                ));
            }
            if actual.digest != d.digest {
                return Err(mismatch(
                    &d.digest,
                    "digest",
                    d.digest.clone(),
                    actual.digest,
                ));
            }
        }
        Ok(bytes)
    }

    fn json(&self, d: &Descriptor, bytes: &[u8]) -> Result<Value, Error> {
        serde_json::from_slice(bytes).map_err(|e| self.malformed(d, &format!("not JSON: {e}")))
    }

    /// One image: its manifest at `d`, its config, then each layer.
    fn image(&mut self, d: &Descriptor) -> Result<ImageReport, Error> {
        let bytes = self.small(d)?;
        let manifest = self.json(d, &bytes)?;
        let media_type = match d.media_type.as_str() {
            "" => manifest["mediaType"].as_str().unwrap_or_default(),
            m => m,
        }
        .to_owned();
        const MANIFEST_TYPES: [&str; 2] = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ];
        if self.strict && !MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(mismatch(
                &d.digest,
                "media type",
                "an image manifest".into(),
                format!("`{media_type}`"),
            ));
        }
        let config_d = Descriptor::parse(&manifest["config"])
            .map_err(|e| self.malformed(d, &format!("config: {e}")))?;
        const CONFIG_TYPES: [&str; 2] = [
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.container.image.v1+json",
        ];
        if self.strict && !CONFIG_TYPES.contains(&config_d.media_type.as_str()) {
            return Err(mismatch(
                &d.digest,
                "config media type",
                format!("`{}`", CONFIG_TYPES[0]),
                format!("`{}`", config_d.media_type),
            ));
        }
        let config_bytes = self.small(&config_d)?;
        let config = self.json(&config_d, &config_bytes)?;
        let layers = manifest["layers"]
            .as_array()
            .ok_or_else(|| self.malformed(d, "a manifest without `layers`"))?
            .iter()
            .map(|l| Descriptor::parse(l).map_err(|e| self.malformed(d, &e)))
            .collect::<Result<Vec<_>, _>>()?;
        let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if self.strict && diff_ids.len() != layers.len() {
            return Err(mismatch(
                &config_d.digest,
                "rootfs.diff_ids",
                format!("one per layer ({})", layers.len()),
                diff_ids.len().to_string(),
            ));
        }
        let platform_text = match (config["os"].as_str(), config["architecture"].as_str()) {
            (Some(os), Some(arch)) => match config["variant"].as_str() {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            },
            _ => String::new(),
        };
        let label = config["config"]["Labels"][SPEC_LABEL]
            .as_str()
            .map(str::to_owned);
        // Only a spec this build understands can be compared with; inspect shows any.
        let spec = match &label {
            Some(text) if self.strict => Some(
                Spec::parse(text)
                    .map_err(|e| self.malformed(&config_d, &format!("label {SPEC_LABEL}: {e}")))?,
            ),
            _ => None,
        };
        let plans = spec.as_ref().map(plan::layers);
        // A base's layers, below the spec's: checked as added layers are.
        let base = config["config"]["Labels"][crate::base::BASE_LAYERS_LABEL]
            .as_str()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        // Layers `--add` put above the spec's, as the history names them (the base's
        // history, first, is the base's own): checked against their digests and diff_ids,
        // which is all there is to know of host files.
        let added = config["history"].as_array().map_or(0, |history| {
            history
                .iter()
                .filter(|h| h["empty_layer"].as_bool() != Some(true))
                .skip(base)
                .filter_map(|h| h["created_by"].as_str())
                .filter(|c| c.starts_with("image-maker layer ") && c.contains(": add /"))
                .count()
        });
        if let Some(plans) = &plans {
            if base + plans.len() + added != layers.len() {
                return Err(mismatch(
                    &d.digest,
                    "layers",
                    format!(
                        "{} ({}the spec `{}`{})",
                        base + plans.len() + added,
                        match base {
                            0 => String::new(),
                            n => format!("{n} of the base, "),
                        },
                        label.as_deref().unwrap_or(""),
                        match added {
                            0 => String::new(),
                            n => format!(" and {n} added"),
                        }
                    ),
                    layers.len().to_string(),
                ));
            }
        }
        let mut seeds = match &spec {
            Some(spec) => {
                let platform = Platform::parse(&platform_text).map_err(|e| {
                    self.malformed(&config_d, &format!("platform `{platform_text}`: {e}"))
                })?;
                let own = seed(spec, &platform, false);
                let shared = seed(spec, &platform, true);
                if own == shared {
                    vec![own]
                } else {
                    vec![own, shared]
                }
            }
            None => Vec::new(),
        };
        let candidates = seeds.clone();
        let mut reports = Vec::new();
        let strict = self.strict;
        for (i, layer) in layers.iter().enumerate() {
            crate::interrupt::check()?;
            let expected = plans
                .as_ref()
                .and_then(|plans| plans.get(i.checked_sub(base)?))
                .map(|plan| layer::Expected {
                    plan,
                    seeds: &mut seeds,
                });
            let mut raw = self.open(layer)?;
            let report = layer::read(
                &mut raw,
                i + 1,
                &layer.digest,
                &layer.media_type,
                layer.size,
                diff_ids.get(i).copied(),
                expected,
                strict,
            )?;
            reports.push(report);
        }
        let shared_layers =
            (candidates.len() > 1 && seeds.len() == 1).then(|| seeds[0] != candidates[0]);
        let shared_layers = shared_layers.or(spec.as_ref().map(|_| false));
        Ok(ImageReport {
            platform: platform_text,
            manifest: blob_report(d, &media_type),
            config: blob_report(&config_d, &config_d.media_type),
            spec: label,
            shared_layers,
            layers: reports,
        })
    }
}
