//! `image-maker verify SOURCE` and `image-maker inspect SOURCE [--json]`.

use std::path::PathBuf;

use crate::expect::Expected;
use crate::source::Source;
use crate::units::human_size;
use crate::verify::{self, Report};
use crate::{Error, Platform, Spec};

const VERIFY_HELP: &str = "\
With --rootfs DIR --spec SPEC, no image is read: DIR, an unpacked root filesystem (umoci
unpack's rootfs/, or `docker export` extracted as root), is compared with what SPEC's image
unpacks to (`image-maker expect SPEC`): type, mode bits, size, bytes (streamed, hashed)
and link target of every path, links not followed. Below each top directory the image
holds (layer1, layer2, …) a path the image lacks is an error too: a whiteout the unpacker
did not apply shows that way. Other top-level entries, such as the /etc, /dev, /proc,
/sys and /.dockerenv an engine adds, are ignored. Owners and times are not compared.";

/// `image-maker verify SOURCE` or `image-maker verify --rootfs DIR --spec SPEC`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = VERIFY_HELP)]
pub struct VerifyArgs {
    /// The image: `oci:DIR[:TAG]` (or a bare DIR that holds `oci-layout`),
    /// `oci-archive:FILE[:TAG]`, `docker://REF` or `cache:SPEC`
    #[arg(
        value_name = "SOURCE",
        required_unless_present = "rootfs",
        conflicts_with = "rootfs"
    )]
    pub source: Option<String>,

    /// An unpacked root filesystem to check against `--spec` instead of an image
    #[arg(long, value_name = "DIR", requires = "spec")]
    pub rootfs: Option<PathBuf>,

    /// The layer list DIR was unpacked from (with `--rootfs`)
    #[arg(
        long,
        value_name = "SPEC",
        requires = "rootfs",
        conflicts_with = "source"
    )]
    pub spec: Option<String>,

    /// With `--rootfs`: the image was built with `--shared-layers`
    #[arg(long, requires = "rootfs", conflicts_with = "source")]
    pub shared_layers: bool,

    /// The platform of a `cache:SPEC` image, `os/arch[/variant]`, or a comma-separated list
    /// for an index; with `--rootfs`, the one platform DIR was unpacked from
    #[arg(long, value_name = "P", default_value = "linux/amd64")]
    pub platform: String,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// `image-maker inspect SOURCE`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The image: `oci:DIR[:TAG]` (or a bare DIR that holds `oci-layout`),
    /// `oci-archive:FILE[:TAG]`, `docker://REF` or `cache:SPEC`
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// The platform of a `cache:SPEC` image, `os/arch[/variant]`, or a comma-separated list
    /// for an index
    #[arg(long, value_name = "P", default_value = "linux/amd64")]
    pub platform: String,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Checks every blob; the one-line summary goes to stderr with the other status lines.
pub fn run_verify(args: &VerifyArgs) -> Result<(), Error> {
    let (Some(text), None) = (&args.source, &args.rootfs) else {
        return run_verify_rootfs(args);
    };
    let source = Source::parse(text)?;
    let platforms = Platform::parse_list(&args.platform)?;
    // Per-layer lines only on a terminal: the summary is the answer.
    let mut progress = super::progress(args.quiet);
    let report = verify::verify(&source, &platforms, &mut progress)?;
    if !args.quiet {
        progress.stage(report.summary());
    }
    Ok(())
}

/// `--rootfs DIR --spec SPEC`: the directory against the oracle.
fn run_verify_rootfs(args: &VerifyArgs) -> Result<(), Error> {
    // clap's `requires` makes both present here.
    let (Some(dir), Some(text)) = (&args.rootfs, &args.spec) else {
        return Ok(());
    };
    let spec = Spec::parse(text)?;
    if !dir.is_dir() {
        return Err(crate::error::UsageError::RootfsNotADirectory(dir.clone()).into());
    }
    let platform = super::expect::one_platform(&args.platform)?;
    let progress = super::progress(args.quiet);
    let expected = Expected::new(&spec, &platform, args.shared_layers)?;
    let counts = verify::verify_rootfs(dir, &expected)?;
    if !args.quiet {
        progress.stage(format!(
            "rootfs {} matches {text}: {} entries ({} files, {} dirs, {} links)",
            dir.display(),
            counts.total(),
            counts.files,
            counts.dirs,
            counts.links
        ));
    }
    Ok(())
}

/// Reports the image on stdout, aligned, or as JSON.
pub fn run_inspect(args: &InspectArgs) -> Result<(), Error> {
    let source = Source::parse(&args.source)?;
    let platforms = Platform::parse_list(&args.platform)?;
    let mut progress = super::progress(true);
    let report = verify::inspect(&source, &platforms, &mut progress)?;
    if args.json {
        return super::print_json(&report);
    }
    super::print_stdout(&text(&report))
}

/// The human form: a few `key  value` lines per image, then a table of its layers.
fn text(report: &Report) -> String {
    let mut out = format!("reference  {}\n", report.reference);
    if let Some(index) = &report.index {
        out.push_str(&format!(
            "index      {}  {}\n",
            index.digest,
            human_size(index.size)
        ));
    }
    for image in &report.images {
        out.push('\n');
        out.push_str(&format!("platform   {}\n", image.platform));
        out.push_str(&format!("manifest   {}\n", image.manifest.digest));
        out.push_str(&format!("config     {}\n", image.config.digest));
        out.push_str(&format!(
            "spec       {}\n",
            image.spec.as_deref().unwrap_or("-")
        ));
        let mut rows = vec![[
            "#".to_owned(),
            "media type".to_owned(),
            "size".to_owned(),
            "tar size".to_owned(),
            "files".to_owned(),
            "dirs".to_owned(),
            "links".to_owned(),
            "whiteouts".to_owned(),
        ]];
        for (i, l) in image.layers.iter().enumerate() {
            rows.push([
                (i + 1).to_string(),
                l.media_type.clone(),
                human_size(l.size),
                human_size(l.uncompressed_size),
                l.files.to_string(),
                l.dirs.to_string(),
                l.links.to_string(),
                l.whiteouts.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..8)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                // The text column to the left, numbers to the right.
                .map(|(c, (cell, w))| match c {
                    1 => format!("{cell:<w$}"),
                    _ => format!("{cell:>w$}"),
                })
                .collect();
            out.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
        }
    }
    out
}
