//! What one request may make the server do: the image a tag names is measured from its
//! spec alone (bytes, layers, entries) and refused before any digest pass starts when it is
//! over a limit the operator set. A pass costs CPU in proportion to its bytes and planning
//! costs memory in proportion to its entries, so these three bound what one request costs.
//!
//! The one place a limit refuses is [`check`]; the one place a 500's detail goes is
//! [`internal`].

use crate::progress::LogLevel;
use crate::spec::{format_size, Compression, LayerSpec, Layout, Spec};

/// `--max-image-size`: 16 GiB. A digest pass over it costs about 16 × 1.1 ≈ 18 CPU seconds
/// plain, 16 × 4.1 ≈ 66 gzip, 16 × 2.9 ≈ 46 zstd (`ratio=3`: 160 gzip, 57 zstd; release
/// build, see docs/serve.md); the largest images teams pull (CUDA, ML stacks) are 10–15 GB.
pub(crate) const MAX_IMAGE_SIZE: u64 = 16 << 30;
/// `--max-layers`: 1000. Docker's overlay driver refuses images of more than 125 layers
/// when it runs them, registries rarely keep more than a few hundred; the limit stops specs
/// like `100000x1B` whose metadata alone (config, manifest) is megabytes.
pub(crate) const MAX_LAYERS: u64 = 1000;
/// `--max-entries`: 200 000. Planning peaks at about 360 bytes an entry while a tree is
/// drawn (`1MB:tree=50000` and `tree=150000`: see docs/serve.md), so one request's planning
/// peaks near 70 MiB; large real images hold 50 000–150 000 files.
pub(crate) const MAX_ENTRIES: u64 = 200_000;

/// `--plan-cache`: 64 MiB of plans kept when no stream uses them, a little over one plan
/// at `--max-entries` (about 48 MiB) or thousands of small ones.
pub(crate) const PLAN_CACHE: u64 = 64 << 20;

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--max-digest-passes`: a quarter of the cores, at least 2, so that one large image does
/// not hold every other tag back, and passes leave most cores to streams.
pub(crate) fn max_digest_passes() -> usize {
    (cores() / 4).max(2)
}

/// `--digest-queue`: 4 waiting per pass.
pub(crate) fn digest_queue(passes: usize) -> usize {
    4 * passes
}

/// The threads of one pass: the cores shared out among the passes, at least 1. With the
/// defaults, all passes together keep at most every core busy.
pub(crate) fn pass_threads(passes: usize) -> usize {
    (cores() / passes.max(1)).max(1)
}

/// The limits on one image a tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub image_size: u64,
    pub layers: u64,
    pub entries: u64,
}

/// Which limit refused, for the message and for whoever counts refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    ImageSize,
    Layers,
    Entries,
}

impl Limit {
    pub fn flag(self) -> &'static str {
        match self {
            Self::ImageSize => "--max-image-size",
            Self::Layers => "--max-layers",
            Self::Entries => "--max-entries",
        }
    }

    /// The flag without its dashes: the label of its refusals in `/metrics`.
    pub fn name(self) -> &'static str {
        &self.flag()[2..]
    }

    pub const ALL: [Self; 3] = [Self::ImageSize, Self::Layers, Self::Entries];
}

/// A refusal: the limit and a message that names it, the value and the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Over {
    pub limit: Limit,
    pub message: String,
}

/// Whether `spec`'s image for `platforms` platforms is within `limits`. The bytes are the
/// layers' payloads (the spec's sizes: what the files hold, tar headers and compression
/// aside), once per platform, since each platform's image is hashed on its own; tar
/// headers are bounded through the entries.
pub(crate) fn check(limits: &Limits, spec: &Spec, platforms: usize) -> Result<(), Over> {
    let layers = spec.layers();
    let count = layers.len() as u64;
    let described = describe(layers);
    if count > limits.layers {
        return Err(Over {
            limit: Limit::Layers,
            message: format!(
                "image of {count} layers is over {} {}",
                Limit::Layers.flag(),
                limits.layers
            ),
        });
    }
    let payload = spec.total_size();
    let copies = platforms.max(1) as u64;
    let bytes = payload.saturating_mul(copies);
    if bytes > limits.image_size {
        let value = match copies {
            1 => human(payload),
            n => format!("{} × {n} platforms = {}", human(payload), human(bytes)),
        };
        return Err(Over {
            limit: Limit::ImageSize,
            message: format!(
                "{described}: {value} is over {} {}",
                Limit::ImageSize.flag(),
                human(limits.image_size)
            ),
        });
    }
    let entries = entries(spec);
    if entries > limits.entries {
        return Err(Over {
            limit: Limit::Entries,
            message: format!(
                "{described}: {entries} entries (files, directories, links, whiteouts) is over {} {}",
                Limit::Entries.flag(),
                limits.entries
            ),
        });
    }
    Ok(())
}

/// `image of 1000 layers of 1TB each`, or `image of 3 layers, 6GB in all`.
fn describe(layers: &[LayerSpec]) -> String {
    let noun = if layers.len() == 1 { "layer" } else { "layers" };
    match layers {
        [one] => format!("image of 1 layer of {}", human(one.size)),
        [first, rest @ ..] if rest.iter().all(|l| l.size == first.size) => {
            format!(
                "image of {} {noun} of {} each",
                layers.len(),
                human(first.size)
            )
        }
        _ => format!(
            "image of {} {noun}, {} in all",
            layers.len(),
            human(layers.iter().map(|l| l.size).fold(0, u64::saturating_add))
        ),
    }
}

/// `1000TB` when a unit divides it, else `16.1GB` (the units are the specs', powers of 1024).
fn human(bytes: u64) -> String {
    let exact = format_size(bytes);
    if exact.len() <= 8 {
        return exact;
    }
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// Every tar entry of `spec`'s image, from the spec alone: the sum of [`layer_entries`].
pub(crate) fn entries(spec: &Spec) -> u64 {
    spec.layers()
        .iter()
        .map(layer_entries)
        .fold(0, u64::saturating_add)
}

/// A layer's tar entries as the planner makes them (`LayerPlan::entry_count`), counted
/// without planning: the files; the directories (`layerN/` for a flat layer; a tree's,
/// one per 10 files, and at least the top and the 4 long-named ones of a tree of 10 files
/// or more, as `tree::directories` draws them); and the symlinks, hard links, whiteouts
/// and empty directories the spec asks for. Left out: the directories a whiteout layer
/// declares above its whiteouts, which are the lower layers' own (so counted there, and
/// at most one per whiteout per level).
pub(crate) fn layer_entries(layer: &LayerSpec) -> u64 {
    let dirs = match layer.layout {
        Layout::Flat => 1,
        Layout::Tree => {
            let per_dir = layer.files.div_ceil(10).max(1);
            let chain = if layer.files >= 10 { 5 } else { 1 };
            per_dir.max(chain)
        }
    };
    dirs.saturating_add(layer.files)
        .saturating_add(layer.extra.total())
}

/// Roughly how many CPU seconds a digest pass over `spec`'s image takes, for `Retry-After`:
/// the measured costs per GiB (release build, one core; docs/serve.md).
pub(crate) fn pass_seconds(spec: &Spec, platforms: usize) -> f64 {
    let per_gib = |layer: &LayerSpec| match layer.encoding() {
        Compression::None => 1.1,
        Compression::Gzip => 4.1,
        Compression::Zstd => 2.9,
    };
    let one: f64 = spec
        .layers()
        .iter()
        .map(|l| l.size as f64 / f64::from(1u32 << 30) * per_gib(l))
        .sum();
    one * platforms.max(1) as f64
}

/// The message of a 500: generic, so that no internal detail (a path, a panic's text)
/// reaches a client. The detail goes to the server's log, with what was asked.
pub(crate) fn internal(request: &str, detail: &str) -> &'static str {
    crate::progress::log(
        LogLevel::Warning,
        &format!("internal error answering {request}: {detail}"),
    );
    "internal error; the server's log has the detail"
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        image_size: 10 << 20,
        layers: 3,
        entries: 100,
    };

    fn check_list(list: &str, platforms: usize) -> Result<(), Over> {
        check(&SMALL, &Spec::parse(list).expect("valid"), platforms)
    }

    #[test]
    fn the_petabyte_tag_is_refused_naming_the_limit_the_value_and_the_flag() {
        let spec = Spec::parse("1000x1TB").expect("valid");
        let limits = Limits {
            image_size: 64 << 30,
            ..SMALL
        };
        let limits = Limits {
            layers: 1000,
            ..limits
        };
        let over = check(&limits, &spec, 1).expect_err("refused");
        assert_eq!(over.limit, Limit::ImageSize);
        assert_eq!(
            over.message,
            "image of 1000 layers of 1TB each: 1000TB is over --max-image-size 64GB"
        );
    }

    #[test]
    fn just_under_each_limit_passes_and_just_over_is_refused() {
        assert_eq!(check_list("5MB,5MB", 1), Ok(()));
        let over = check_list("5MB,5MB,1B", 1).expect_err("over");
        assert_eq!(over.limit, Limit::ImageSize);
        assert!(
            over.message
                .contains("10.0MB is over --max-image-size 10MB"),
            "{}",
            over.message
        );
        // An index hashes each platform's image: twice the bytes.
        let over = check_list("4MB,4MB", 2).expect_err("over");
        assert!(
            over.message.contains("8MB × 2 platforms = 16MB"),
            "{}",
            over.message
        );
        assert_eq!(check_list("1KB,1KB,1KB", 1), Ok(()));
        let over = check_list("4x1KB", 1).expect_err("over");
        assert_eq!(over.message, "image of 4 layers is over --max-layers 3");
        // 1 + 98 files; 1 + 99 files and a symlink.
        assert_eq!(check_list("1MB:files=98", 1), Ok(()));
        assert_eq!(check_list("1MB:files=99", 1), Ok(()));
        let over = check_list("1MB:files=99:symlinks=1", 1).expect_err("over");
        assert_eq!(over.limit, Limit::Entries);
        assert!(
            over.message.ends_with(
                "101 entries (files, directories, links, whiteouts) is over --max-entries 100"
            ),
            "{}",
            over.message
        );
    }

    /// The count from the spec is the planner's, but for the directories a whiteout layer
    /// declares, which it may leave out.
    #[test]
    fn entries_from_the_spec_are_the_planners() {
        for list in [
            "1KB",
            "1MB:files=70",
            "3B:tree=1",
            "40B:tree=9",
            "40B:tree=10",
            "40B:tree=33",
            "1MB:tree=5000",
            "9000B:tree=4097",
            "1MB:tree=3000:symlinks=40:hardlinks=30:dirs=20,64KB:whiteouts=9:symlinks=5",
            "64KB:files=50:symlinks=5:hardlinks=5:dirs=3,1KB:whiteouts=3:dirs=1",
            "64KB:tree=40,1KB:whiteouts=3,1KB:whiteouts=30",
        ] {
            let spec = Spec::parse(list).expect("valid");
            for (plan, layer) in crate::plan::layers(&spec).iter().zip(spec.layers()) {
                let counted = layer_entries(layer);
                let planned = plan.entry_count();
                if layer.extra.whiteouts == 0 {
                    assert_eq!(counted, planned, "{list}, layer {}", plan.number);
                } else {
                    assert!(counted <= planned, "{list}, layer {}", plan.number);
                    assert!(
                        planned - counted <= 9 * layer.extra.whiteouts,
                        "{list}, layer {}",
                        plan.number
                    );
                }
            }
        }
    }

    #[test]
    fn a_500_says_nothing_of_its_cause() {
        let message = internal("GET /v2/x/manifests/y", "panicked at src/secret.rs:1: boom");
        assert!(!message.contains("boom") && !message.contains("src/"));
        assert_eq!(message, "internal error; the server's log has the detail");
    }
}
