//! `image-maker expect SPEC`: the root filesystem the spec's image unpacks to.

use std::io::{BufWriter, Write};

use crate::error::UsageError;
use crate::expect::{json, mtree, spdx, Expected};
use crate::{Error, Platform, Spec};

const AFTER_HELP: &str = "\
Nothing is built: the entries come from the plan and each file's bytes are hashed as they
are generated. Whiteouts are applied, a hard link is the file it links to, and `.` (the
root) is left out of the JSON.

mtree (the default) is NetBSD mtree's format (Debian's `mtree-netbsd`):
  image-maker expect 8MB:tree=500,2MB:whiteouts=5 > expected.mtree
  umoci unpack --image img:1 bundle && mtree -f expected.mtree -p bundle/rootfs
mtree reports a missing or extra path on stdout but still exits 0, so read its output too.
Links carry no mode (systems differ), nothing carries a time.

json is one document, one entry a line, sorted by path:
  {\"spec\": \"<canonical spec>\", \"platform\": \"linux/amd64\", \"entries\": [
    {\"path\": \"layer1\", \"type\": \"dir\", \"mode\": \"0755\"},
    {\"path\": \"layer1/a.so\", \"type\": \"file\", \"size\": 3, \"mode\": \"0644\", \"sha256\": \"<hex>\"},
    {\"path\": \"layer1/l\", \"type\": \"symlink\", \"target\": \"../a.so\"}]}
Paths are relative to the root, without a trailing `/`; a field that does not apply to
an entry's type is absent.";

/// Output formats of `expect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An mtree(5) specification, for `mtree -f FILE -p ROOTFS`
    Mtree,
    /// One JSON document (its shape is below)
    Json,
    /// An SPDX 2.3 SBOM (JSON) of the root filesystem: each file with its SHA-1 and SHA-256
    Spdx,
}

/// `image-maker expect SPEC`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ExpectArgs {
    /// The layer list, as `--layer-sizes` takes it, e.g. `8MB:tree=500:symlinks=20,2MB:whiteouts=5`
    #[arg(value_name = "SPEC")]
    pub spec: String,

    /// The image's platform, `os/arch[/variant]`: one (each has bytes of its own)
    #[arg(long, value_name = "P", default_value = "linux/amd64")]
    pub platform: String,

    /// The image was built with `--shared-layers`: every platform holds the linux/amd64 bytes
    #[arg(long)]
    pub shared_layers: bool,

    /// What to print on stdout
    #[arg(long, value_enum, default_value_t = Format::Mtree)]
    pub format: Format,
}

/// One platform of a `--platform` value; a list is a usage error.
pub(crate) fn one_platform(text: &str) -> Result<Platform, Error> {
    let mut list = Platform::parse_list(text)?;
    match list.len() {
        1 => Ok(list.remove(0)),
        _ => Err(UsageError::OnePlatform(text.to_owned()).into()),
    }
}

/// Prints the expected root filesystem on stdout.
pub fn run(args: &ExpectArgs) -> Result<(), Error> {
    let spec = Spec::parse(&args.spec)?;
    let platform = one_platform(&args.platform)?;
    let expected = Expected::new(&spec, &platform, args.shared_layers)?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match args.format {
        Format::Mtree => mtree::write(&expected, &mut out),
        Format::Json => json::write(&expected, &mut out),
        Format::Spdx => spdx::write(
            &expected,
            &crate::image::rfc3339(super::source_date_epoch()?),
            &mut out,
        ),
    }
    .and_then(|()| out.flush())
    .map_err(Error::io("write to", "stdout"))
}
