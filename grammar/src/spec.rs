//! The layer-list grammar shared by the CLI, the library, xtask and the attribute macro.
//!
//! `1GB,512MB:files=1000,3x64MB:tree=5000:compression=gzip` — comma-separated sizes, each with
//! options after colons and an optional `Nx` in front that repeats the layer N times. The
//! options: `files=N` (N files in the layer's directory) or `tree=N` (N files spread over a
//! directory tree); `ratio=R` (file bytes that compress about R:1); `compression=gzip|zstd|none`
//! and `level=N` (how the layer's blob is encoded). Units are
//! powers of 1024 in any letter case (`512MB`, `512mb`, `512M`, `512MiB`); a bare number
//! means MB, as in the original command line. The canonical form spells the layout out and
//! the other options only when they differ from their defaults (so that specs written before
//! those options existed keep their hash); its SHA-256 (in image-maker) keys the cache.

use std::fmt;

/// Units in ascending order; the canonical form uses the largest that divides a size.
const UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KB", 1 << 10),
    ("MB", 1 << 20),
    ("GB", 1 << 30),
    ("TB", 1 << 40),
];

/// More layers than any engine stores (docker stops at 125) and than any test needs.
pub const MAX_LAYERS: usize = 10_000;

/// Where a layer's files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// All files directly in `layerN/`.
    #[default]
    Flat,
    /// Files spread over nested directories, like a real filesystem.
    Tree,
}

impl Layout {
    /// The spec option naming this layout.
    pub fn option(self) -> &'static str {
        match self {
            Self::Flat => "files",
            Self::Tree => "tree",
        }
    }
}

/// How a layer's blob is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar, `application/vnd.oci.image.layer.v1.tar`.
    #[default]
    None,
    /// `…tar+gzip`.
    Gzip,
    /// `…tar+zstd`.
    Zstd,
}

impl Compression {
    /// Every encoding, in the order help texts list them.
    pub const ALL: [Self; 3] = [Self::None, Self::Gzip, Self::Zstd];

    /// The name the grammar and `--compression` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }

    /// `gzip`, `zstd` or `none`, in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(text.trim()))
    }

    /// The levels the encoder takes, as `gzip -N` and `zstd -N` number them; `None` for
    /// a plain tar.
    pub fn levels(self) -> Option<(u32, u32)> {
        match self {
            Self::None => None,
            Self::Gzip => Some((1, 9)),
            Self::Zstd => Some((1, 19)),
        }
    }

    /// The level used when none is given: the command-line tools' defaults.
    pub fn default_level(self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Gzip => Some(6),
            Self::Zstd => Some(3),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How compressible a layer's file bytes are: they shrink about R:1 under `gzip -6` or
/// `zstd -3`. Held in hundredths, so `ratio=2.5` is 250; 100 (1:1) is random data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ratio(u16);

impl Ratio {
    /// Incompressible: uniformly random bytes.
    pub const ONE: Self = Self(100);
    /// The most the grammar takes, 100:1.
    pub const MAX: Self = Self(10_000);

    /// The ratio in hundredths (100 = 1:1).
    pub fn hundredths(self) -> u16 {
        self.0
    }

    /// `1` ≤ R ≤ `100`, with at most two decimals.
    fn parse(text: &str) -> Option<Self> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 2 {
            return None;
        }
        let whole: u32 = whole.parse().ok().filter(|w| *w <= 100)?;
        let fraction: u32 = format!("{fraction:0<2}").parse().ok()?;
        u16::try_from(whole * 100 + fraction)
            .ok()
            .filter(|h| (100..=10_000).contains(h))
            .map(Self)
    }
}

impl Default for Ratio {
    fn default() -> Self {
        Self::ONE
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 100, self.0 % 100);
        match fraction {
            0 => write!(f, "{whole}"),
            _ if fraction % 10 == 0 => write!(f, "{whole}.{}", fraction / 10),
            _ => write!(f, "{whole}.{fraction:02}"),
        }
    }
}

/// How a layer's bytes are laid out as files, and how its blob is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerSpec {
    /// Payload bytes: the sum of the layer's file sizes (tar headers come on top).
    pub size: u64,
    /// Number of files the payload is split into, sizes differing by at most one byte.
    pub files: u64,
    /// Where the files go; flat by default.
    pub layout: Layout,
    /// How compressible the file bytes are; 1:1 (random) by default.
    pub ratio: Ratio,
    /// The blob's encoding as the layer gives it; `None` when it does not say, which
    /// [`Spec::with_defaults`] resolves.
    pub compression: Option<Compression>,
    /// The encoder's level when it is not the encoding's default.
    pub level: Option<u32>,
    /// A tree's files of equal size (`sizes=even`) instead of skewed ones.
    pub even_sizes: bool,
    /// Entries beyond the regular files: symbolic links, hard links to the layer's own
    /// files, whiteouts of what lower layers hold, empty directories.
    pub extra: Extra,
    /// `seed=NAME`: the layer's own identity instead of its place in the image.
    pub seed: Option<Word>,
    /// The `run` entry: not generated files but the image's entrypoint program, and the
    /// list of files it reads. Its size and file count are the planner's to give; here
    /// they are 0.
    pub run: Option<Run>,
}

/// The `run` entry's options: `run:ready=LINE:read=all:order=random`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Run {
    /// What the program writes to stdout once it is ready; `ready` unless `ready=` says.
    pub ready: Word,
    /// The percentage of the image's files it reads first (`read=N`, `read=all` = 100);
    /// 0 reads none.
    pub read: u8,
    /// It reads them in a seeded order (`order=random`) rather than the tars'.
    pub random: bool,
}

impl Default for Run {
    fn default() -> Self {
        Self {
            ready: Word::parse(Run::READY).unwrap_or_else(|| unreachable!("a word")),
            read: 0,
            random: false,
        }
    }
}

impl Run {
    /// The default ready line.
    pub const READY: &'static str = "ready";

    /// `run`, then the options that are not the defaults.
    pub fn canonical(&self) -> String {
        let mut text = "run".to_owned();
        if self.ready.as_str() != Self::READY {
            text.push_str(&format!(":ready={}", self.ready));
        }
        match self.read {
            0 => {}
            100 => text.push_str(":read=all"),
            n => text.push_str(&format!(":read={n}")),
        }
        if self.random {
            text.push_str(":order=random");
        }
        text
    }
}

/// How many entries of each kind besides regular files a layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Extra {
    /// `symlinks=N`: relative, absolute and dangling targets.
    pub symlinks: u64,
    /// `hardlinks=N`: links to regular files earlier in the layer.
    pub hardlinks: u64,
    /// `whiteouts=N`: deletions of lower layers' entries, one an opaque directory when N ≥ 2.
    pub whiteouts: u64,
    /// `dirs=N`: empty directories.
    pub dirs: u64,
}

impl Extra {
    /// The options as the spec spells them, `(name, count)`, in canonical order.
    pub fn options(&self) -> [(&'static str, u64); 4] {
        [
            ("symlinks", self.symlinks),
            ("hardlinks", self.hardlinks),
            ("whiteouts", self.whiteouts),
            ("dirs", self.dirs),
        ]
    }

    /// All of them together.
    pub fn total(&self) -> u64 {
        self.options()
            .iter()
            .fold(0u64, |total, (_, n)| total.saturating_add(*n))
    }

    fn set(&mut self, name: &str, count: u64) {
        match name {
            "symlinks" => self.symlinks = count,
            "hardlinks" => self.hardlinks = count,
            "whiteouts" => self.whiteouts = count,
            _ => self.dirs = count,
        }
    }
}

/// The most bytes a [`Word`] holds.
pub const MAX_WORD: usize = 64;

/// A name an option takes: a `seed=` layer's identity, the runnable program's ready line.
/// Letters, digits and `._-`, starting with a letter or digit, at most [`MAX_WORD`]
/// bytes. Held inline so that a layer stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word {
    len: u8,
    bytes: [u8; MAX_WORD],
}

impl Word {
    /// The name, if `text` is one.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= MAX_WORD
            && text.starts_with(|c: char| c.is_ascii_alphanumeric())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        ok.then(|| {
            let mut bytes = [0; MAX_WORD];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Self {
                len: text.len() as u8,
                bytes,
            }
        })
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl LayerSpec {
    /// One file of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            files: 1,
            layout: Layout::Flat,
            ratio: Ratio::ONE,
            compression: None,
            level: None,
            even_sizes: false,
            extra: Extra::default(),
            seed: None,
            run: None,
        }
    }

    /// The `run` entry with `run`'s options.
    pub fn run(run: Run) -> Self {
        Self {
            size: 0,
            files: 0,
            run: Some(run),
            ..Self::new(0)
        }
    }

    /// The encoding the blob gets: a plain tar unless the layer says otherwise.
    pub fn encoding(&self) -> Compression {
        self.compression.unwrap_or_default()
    }

    /// The encoder's level: the one given, else the encoding's default.
    pub fn effective_level(&self) -> Option<u32> {
        self.level.or(self.encoding().default_level())
    }

    /// `512MB:files=1000`, then `ratio=`, `compression=` and `level=` where they are not
    /// the defaults.
    pub fn canonical(&self) -> String {
        if let Some(run) = self.run {
            return run.canonical();
        }
        let mut text = self.content_canonical();
        if let Some(compression) = self.compression {
            text.push_str(&format!(":compression={compression}"));
        }
        if let Some(level) = self.level {
            text.push_str(&format!(":level={level}"));
        }
        text
    }

    /// The canonical form of what the files hold, whatever the encoding: the same
    /// files come out of a gzip, a zstd and a plain layer of one spec.
    pub fn content_canonical(&self) -> String {
        if let Some(run) = self.run {
            return run.canonical();
        }
        let mut text = format!(
            "{}:{}={}",
            format_size(self.size),
            self.layout.option(),
            self.files
        );
        if self.even_sizes {
            text.push_str(":sizes=even");
        }
        for (name, count) in self.extra.options() {
            if count > 0 {
                text.push_str(&format!(":{name}={count}"));
            }
        }
        if self.ratio != Ratio::ONE {
            text.push_str(&format!(":ratio={}", self.ratio));
        }
        if let Some(seed) = self.seed {
            text.push_str(&format!(":seed={seed}"));
        }
        text
    }
}

/// A parsed, validated layer list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    layers: Vec<LayerSpec>,
}

/// What is wrong with a layer list, naming the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The list is empty or only whitespace.
    #[error("the layer list is empty")]
    Empty,
    /// Nothing between two commas, or a comma at either end.
    #[error("layer {position} is empty in `{list}`")]
    EmptyEntry {
        /// 1-based position of the empty entry.
        position: usize,
        /// The whole list as given.
        list: String,
    },
    /// An entry has options but no size, as in `:files=2`.
    #[error("layer size `{0}` has no number")]
    MissingNumber(String),
    /// A size starts with `-`.
    #[error("layer size `{0}` is negative")]
    Negative(String),
    /// A size does not start with a decimal number, or has digits or dots after its unit
    /// (`1e3MB`).
    #[error("layer size `{0}` is not a number")]
    NotANumber(String),
    /// The letters after a number are not a unit the grammar knows.
    #[error("unknown unit `{unit}` in layer size `{token}`")]
    UnknownUnit {
        /// The unit as given.
        unit: String,
        /// The entry as given.
        token: String,
    },
    /// A decimal size does not come to whole bytes, as `1.3B`.
    #[error("layer size `{0}` is not a whole number of bytes")]
    FractionalBytes(String),
    /// A layer's size, with its tar headers, does not fit in 64 bits.
    #[error("layer size `{0}` is too large (the most is 16 EiB)")]
    Overflow(String),
    /// The layers' sizes together, with their tar headers, do not fit in 64 bits.
    #[error("the layers of `{0}` add up to more than 16 EiB")]
    TotalOverflow(String),
    /// A size is zero: a layer needs at least one byte.
    #[error("layer size `{0}` is zero")]
    Zero(String),
    /// An option other than `files`, `tree`, `sizes`, `ratio`, `compression` or `level`.
    #[error("unknown layer option `{option}` in `{token}`")]
    UnknownOption {
        /// The option's name as given.
        option: String,
        /// The entry as given.
        token: String,
    },
    /// Nothing between two colons, after the last one, or before an `=`.
    #[error("empty layer option in `{0}`")]
    EmptyOption(String),
    /// An option without `=VALUE`, or with nothing after the `=`.
    #[error("layer option `{option}` in `{token}` has no value")]
    MissingValue {
        /// The option's name.
        option: String,
        /// The entry as given.
        token: String,
    },
    /// The same option twice in one entry.
    #[error("layer option `{option}` is given twice in `{token}`")]
    DuplicateOption {
        /// The option's name.
        option: String,
        /// The entry as given.
        token: String,
    },
    /// One entry has both `files=` and `tree=`.
    #[error("`files` and `tree` cannot both be given in `{0}`")]
    ConflictingOptions(String),
    /// `sizes=` is neither `even` nor `skewed`.
    #[error("`sizes={value}` in `{token}` is neither `even` nor `skewed`")]
    BadSizes {
        /// The value as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// `whiteouts=` on the first layer: there is nothing below it to delete.
    #[error("`whiteouts` in `{0}`: the first layer has no layer below it to delete from")]
    WhiteoutsOnFirstLayer(String),
    /// More whiteouts than the layers below hold entries to delete.
    #[error("`{token}` asks for {whiteouts} whiteouts, more than the {available} files, links and directories the layers below leave to delete")]
    TooManyWhiteouts {
        /// The entry as given.
        token: String,
        /// The count asked for.
        whiteouts: u64,
        /// Files, links and directories below, less those deleted already.
        available: u64,
    },
    /// Two or more whiteouts, one of them an opaque directory, with no directory below the
    /// lower layers' top directories to make opaque.
    #[error(
        "`{0}` needs a directory in a lower layer to make opaque, and the layers below have none"
    )]
    NoOpaqueDirectory(String),
    /// `sizes=` in an entry without `tree=`: a flat layer's files are always equal.
    #[error("`sizes` applies to `tree=` layers only, in `{0}`")]
    SizesWithoutTree(String),
    /// A `symlinks=`, `hardlinks=`, `whiteouts=` or `dirs=` count is not a whole number
    /// (up to ten million).
    #[error("`{option}={value}` in `{token}` is not a whole number from 0 to 10000000")]
    BadCount {
        /// The option's name.
        option: String,
        /// The count as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// A file count has characters other than digits, or does not fit in 64 bits.
    #[error("`{option}={value}` in `{token}` is not a positive whole number")]
    BadFileCount {
        /// The option's name.
        option: String,
        /// The count as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// A file count is zero.
    #[error("`{option}=0` in `{token}`: a layer needs at least one file")]
    ZeroFiles {
        /// The option's name.
        option: String,
        /// The entry as given.
        token: String,
    },
    /// A layer has more files than bytes: every file holds at least one byte.
    #[error("`{token}` asks for {files} files but holds only {size} bytes")]
    MoreFilesThanBytes {
        /// The entry as given.
        token: String,
        /// The file count asked for.
        files: u64,
        /// The layer's size in bytes.
        size: u64,
    },
    /// `ratio=` is not a number from 1 to 100 with at most two decimals.
    #[error("`ratio={value}` in `{token}` is not a number from 1 to 100")]
    BadRatio {
        /// The ratio as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// `seed=` is not a name of letters, digits and `._-`.
    #[error("`seed={value}` in `{token}` is not a name (letters, digits and `._-`, starting with a letter or digit, at most 64)")]
    BadSeed {
        /// The name as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// `seed=` with `whiteouts=`: what a whiteout deletes is the rest of the image's, so
    /// such a layer cannot stand on its own.
    #[error("`seed=` and `whiteouts=` cannot both be given in `{0}`: whiteouts delete what the image's other layers hold")]
    SeedWithWhiteouts(String),
    /// More than one `run` entry, or a repeated one.
    #[error("`{0}` has more than one `run` entry: an image has one entrypoint")]
    RunTwice(String),
    /// An option of `run` other than `ready`, `read` or `order`.
    #[error("unknown option `{option}` of `run` in `{token}`")]
    UnknownRunOption {
        /// The option's name as given.
        option: String,
        /// The entry as given.
        token: String,
    },
    /// A `run` option's value is not one it takes.
    #[error("`{option}={value}` in `{token}` is not a value `{option}` takes")]
    BadRunOption {
        /// The option's name.
        option: String,
        /// The value as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// `order=` without `read=`: there is nothing to read in an order.
    #[error("`order=` in `{0}` needs `read=`: the program reads no file otherwise")]
    OrderWithoutRead(String),
    /// `compression=` names an encoding other than `gzip`, `zstd` or `none`.
    #[error("unknown compression `{value}` in `{token}`")]
    UnknownCompression {
        /// The encoding as given.
        value: String,
        /// The entry as given.
        token: String,
    },
    /// `level=` is not a level of the layer's encoding.
    #[error("`level={value}` in `{token}` is not a {compression} level ({})", level_range(*.compression))]
    BadLevel {
        /// The level as given.
        value: String,
        /// The layer's encoding.
        compression: Compression,
        /// The entry as given.
        token: String,
    },
    /// `level=` on a layer that is not compressed.
    #[error("`level=` in `{0}` needs `compression=gzip` or `compression=zstd` in the same layer")]
    LevelWithoutCompression(String),
    /// `--compression-level` is not a level of a layer's encoding.
    #[error("--compression-level `{level}` is not a {compression} level ({}), for layer `{token}`", level_range(*.compression))]
    BadDefaultLevel {
        /// The level as given.
        level: u32,
        /// The encoding of the layer it would apply to.
        compression: Compression,
        /// That layer's canonical form.
        token: String,
    },
    /// `--compression-level` with no compressed layer to apply to.
    #[error("--compression-level `{0}` applies to no layer: every layer is uncompressed")]
    UnusedLevel(u32),
    /// `--num-layers 0`, or a spec built from no layers.
    #[error("`0` layers: an image needs at least one layer")]
    ZeroLayers,
    /// The list, once repetitions are counted, or `--num-layers` asks for more than
    /// [`MAX_LAYERS`] layers.
    #[error("{count} layers is more than the {MAX_LAYERS} image-maker builds")]
    TooManyLayers {
        /// The number of layers asked for.
        count: usize,
    },
    /// An entry starts with `x`, as in `x1GB`.
    #[error("`{0}` has no repetition count before the `x`")]
    MissingRepeatCount(String),
    /// Nothing follows the `x` of `Nx`, as in `3x`.
    #[error("`{0}` has no layer size after the `x`")]
    MissingRepeatedSize(String),
    /// A repetition count starts with `-`.
    #[error("repetition count `{count}` in `{token}` is negative")]
    NegativeRepeatCount {
        /// The count as given.
        count: String,
        /// The entry as given.
        token: String,
    },
    /// A repetition count has characters other than digits, as `1.5x1GB`.
    #[error("repetition count `{count}` in `{token}` is not a whole number")]
    BadRepeatCount {
        /// The count as given.
        count: String,
        /// The entry as given.
        token: String,
    },
    /// A repetition count is zero.
    #[error("repetition count `{count}` in `{token}` is zero")]
    ZeroRepeats {
        /// The count as given.
        count: String,
        /// The entry as given.
        token: String,
    },
    /// A single repetition count is more than [`MAX_LAYERS`].
    #[error(
        "repetition count `{count}` in `{token}` is more than the {MAX_LAYERS} layers image-maker builds"
    )]
    TooManyRepeats {
        /// The count as given.
        count: String,
        /// The entry as given.
        token: String,
    },
    /// An entry repeats twice, as `3x3x1MB`.
    #[error("`{0}` has more than one repetition count")]
    NestedRepeat(String),
    /// `--num-layers` differs from the number of sizes in a list of more than one.
    #[error("--num-layers is {num_layers} but the layer list `{list}` has {listed} sizes")]
    CountMismatch {
        /// The `--num-layers` value.
        num_layers: usize,
        /// How many layers the list gives, repetitions counted.
        listed: usize,
        /// The whole list as given.
        list: String,
    },
}

impl SpecError {
    /// A suggestion for the user, when there is a useful one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Empty | Self::EmptyEntry { .. } | Self::MissingNumber(_) => {
                Some("give comma-separated sizes, e.g. `1GB,512MB`")
            }
            Self::UnknownUnit { .. } | Self::NotANumber(_) => Some(
                "units are B, KB, MB, GB, TB (powers of 1024; K..T and KiB..TiB also accepted, in any case); a bare number means MB",
            ),
            Self::FractionalBytes(_) => Some("use a smaller unit, e.g. `1536KB` instead of `1.5MB`"),
            Self::UnknownOption { .. } | Self::EmptyOption(_) | Self::MissingValue { .. } => Some(
                "layer options are `files=N` or `tree=N` (N files, flat or in nested directories), `sizes=even`, `symlinks=N`, `hardlinks=N`, `whiteouts=N`, `dirs=N`, `ratio=R`, `seed=NAME`, `compression=gzip|zstd|none` and `level=N`, e.g. `512MB:tree=1000:symlinks=20:compression=gzip`",
            ),
            Self::WhiteoutsOnFirstLayer(_) | Self::TooManyWhiteouts { .. } => Some(
                "a whiteout deletes a file, link or directory of a lower layer: give `whiteouts=N` to the second layer or a later one, e.g. `8MB:tree=500,1MB:whiteouts=5`",
            ),
            Self::BadCount { .. } => Some(
                "`symlinks=N`, `hardlinks=N`, `whiteouts=N` and `dirs=N` count entries of a kind, e.g. `8MB:tree=500:symlinks=20:dirs=5`",
            ),
            Self::MoreFilesThanBytes { .. } => Some(
                "a layer holds at least one byte per file: give fewer files or a larger size, e.g. `10KB:tree=20`",
            ),
            Self::NoOpaqueDirectory(_) => Some(
                "with `whiteouts=2` or more one whiteout makes a lower directory opaque: give a lower layer `tree=10` or more, or `dirs=N`",
            ),
            Self::BadSizes { .. } | Self::SizesWithoutTree(_) => Some(
                "a tree's file sizes are skewed (most small, a few large) unless `sizes=even`, e.g. `64MB:tree=5000:sizes=even`",
            ),
            Self::BadFileCount { .. } | Self::ConflictingOptions(_) => Some(
                "`files=N` puts N files in the layer's directory, `tree=N` spreads them over nested directories, e.g. `512MB:files=1000`",
            ),
            Self::RunTwice(_)
            | Self::UnknownRunOption { .. }
            | Self::BadRunOption { .. }
            | Self::OrderWithoutRead(_) => Some(
                "`run` adds the entrypoint program: `run:ready=LINE` (letters, digits, `._-`) sets its ready line, `read=N` (percent, or `all`) the share of the image's files it reads first, `order=tar|random` their order, e.g. `64MB:tree=500,run:read=all:order=random`",
            ),
            Self::BadSeed { .. } | Self::SeedWithWhiteouts(_) => Some(
                "`seed=NAME` gives a layer bytes of its own that every image naming it shares, e.g. `256MB:seed=base,16MB`",
            ),
            Self::BadRatio { .. } => Some(
                "`ratio=R` makes file bytes that gzip and zstd shrink about R:1, from 1 (random) to 100, e.g. `ratio=4` or `ratio=2.5`",
            ),
            Self::UnknownCompression { .. } => {
                Some("compression is `gzip`, `zstd` or `none`, e.g. `1GB:compression=zstd`")
            }
            Self::BadLevel { .. } | Self::BadDefaultLevel { .. } => {
                Some("gzip levels are 1–9 (default 6), zstd levels 1–19 (default 3)")
            }
            Self::LevelWithoutCompression(_) => {
                Some("give the encoding and its level together: `1GB:compression=gzip:level=9`")
            }
            Self::UnusedLevel(_) => Some(
                "add `--compression gzip` or `--compression zstd`, or `compression=` to a layer",
            ),
            Self::MissingRepeatCount(_)
            | Self::MissingRepeatedSize(_)
            | Self::NegativeRepeatCount { .. }
            | Self::BadRepeatCount { .. }
            | Self::ZeroRepeats { .. } => Some(
                "`Nx` repeats a layer N times, N a positive whole number: `3x1GB` is three 1 GiB layers",
            ),
            Self::NestedRepeat(_) => Some("give each layer one count: `9x1MB`, not `3x3x1MB`"),
            Self::CountMismatch { .. } => {
                Some("give one size per layer, or a single size to repeat it for every layer")
            }
            _ => None,
        }
    }
}

impl Spec {
    /// Parses a comma-separated layer list; `3x1GB` stands for `1GB,1GB,1GB`.
    pub fn parse(list: &str) -> Result<Self, SpecError> {
        if list.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let count = list.split(',').count();
        if count > MAX_LAYERS {
            return Err(SpecError::TooManyLayers { count });
        }
        let entries = list
            .split(',')
            .enumerate()
            .map(|(i, token)| {
                let token = token.trim();
                if token.is_empty() {
                    return Err(SpecError::EmptyEntry {
                        position: i + 1,
                        list: list.to_owned(),
                    });
                }
                parse_entry(token).map(|(repeat, layer)| (repeat, layer, token))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Counted before expanding: `5000x1KB,5001x1KB` must not allocate first.
        let count = entries.iter().fold(0usize, |total, (repeat, _, _)| {
            total.saturating_add(*repeat)
        });
        if count > MAX_LAYERS {
            return Err(SpecError::TooManyLayers { count });
        }
        let named: Vec<(LayerSpec, &str)> = entries
            .into_iter()
            .flat_map(|(repeat, layer, token)| std::iter::repeat_n((layer, token), repeat))
            .collect();
        check_whiteouts(&named)?;
        Self::checked(named.into_iter().map(|(layer, _)| layer).collect(), list)
    }

    /// Parses a layer list and checks it against `--num-layers`: a single size repeats.
    pub fn parse_with_count(list: &str, num_layers: Option<usize>) -> Result<Self, SpecError> {
        let spec = Self::parse(list)?;
        match num_layers {
            None => Ok(spec),
            Some(0) => Err(SpecError::ZeroLayers),
            Some(n) if spec.layers.len() == n => Ok(spec),
            Some(count) if count > MAX_LAYERS => Err(SpecError::TooManyLayers { count }),
            Some(n) if spec.layers.len() == 1 => Self::checked(vec![spec.layers[0]; n], list),
            Some(n) => Err(SpecError::CountMismatch {
                num_layers: n,
                listed: spec.layers.len(),
                list: list.to_owned(),
            }),
        }
    }

    /// Builds a spec from layers made in code, with the checks the parser applies.
    pub fn from_layers(layers: Vec<LayerSpec>) -> Result<Self, SpecError> {
        if layers.is_empty() {
            return Err(SpecError::ZeroLayers);
        }
        if layers.len() > MAX_LAYERS {
            return Err(SpecError::TooManyLayers {
                count: layers.len(),
            });
        }
        for layer in &layers {
            check_layer(layer, &layer.canonical())?;
        }
        let canonical: Vec<String> = layers.iter().map(LayerSpec::canonical).collect();
        let named: Vec<(LayerSpec, &str)> = layers
            .iter()
            .copied()
            .zip(canonical.iter().map(String::as_str))
            .collect();
        check_whiteouts(&named)?;
        let list = layers
            .iter()
            .map(LayerSpec::canonical)
            .collect::<Vec<_>>()
            .join(",");
        Self::checked(layers, &list)
    }

    /// The spec with a `run` entry on top, `options` its options (`ready=up:read=all`, or
    /// nothing): what `--runnable` asks for. A list that has one already keeps it when no
    /// options are given; with options, two would be one too many.
    pub fn with_run(&self, options: &str) -> Result<Self, SpecError> {
        let has_run = self.layers.iter().any(|l| l.run.is_some());
        if has_run && options.trim().is_empty() {
            return Ok(self.clone());
        }
        let token = match options.trim() {
            "" => "run".to_owned(),
            options => format!("run:{options}"),
        };
        let (_, run) = parse_entry(&token)?;
        let mut layers = self.layers.clone();
        layers.push(run);
        Self::checked(layers, &format!("{},{token}", self.canonical()))
    }

    /// Whole-image limits: every size must fit in 64 bits with its tar overhead included;
    /// one `run` entry at most.
    fn checked(layers: Vec<LayerSpec>, list: &str) -> Result<Self, SpecError> {
        if layers.len() > MAX_LAYERS {
            return Err(SpecError::TooManyLayers {
                count: layers.len(),
            });
        }
        if layers.iter().filter(|l| l.run.is_some()).count() > 1 {
            return Err(SpecError::RunTwice(list.to_owned()));
        }
        layers
            .iter()
            .try_fold(0u64, |total, l| total.checked_add(max_tar_size(l)?))
            .ok_or_else(|| SpecError::TotalOverflow(list.to_owned()))?;
        Ok(Self { layers })
    }

    /// The layers, bottom first, with repetitions spelled out.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// The spec as builds, caches and serve key it: `compression=none` and default levels
    /// said out loud are the same image as unsaid, so they are dropped.
    pub fn normalized(&self) -> Spec {
        self.with_defaults(None, None)
            .unwrap_or_else(|_| self.clone())
    }

    /// Resolves what the layers leave unsaid: `compression` is the encoding of every layer
    /// without `compression=` (`--compression`), `level` the level of every compressed
    /// layer without `level=` (`--compression-level`). The result says nothing twice:
    /// `compression=none` and the default level disappear from the canonical form.
    pub fn with_defaults(
        &self,
        compression: Option<Compression>,
        level: Option<u32>,
    ) -> Result<Self, SpecError> {
        let mut layers = self.layers.clone();
        // The program's layer is a plain tar: a few KB, and a list that is mostly names.
        for layer in layers.iter_mut().filter(|l| l.run.is_none()) {
            let encoding = layer.compression.or(compression).unwrap_or_default();
            layer.compression = (encoding != Compression::None).then_some(encoding);
            if let (Some(level), None, Some((low, high))) = (level, layer.level, encoding.levels())
            {
                if !(low..=high).contains(&level) {
                    return Err(SpecError::BadDefaultLevel {
                        level,
                        compression: encoding,
                        token: layer.canonical(),
                    });
                }
                layer.level = (Some(level) != encoding.default_level()).then_some(level);
            }
        }
        if let Some(level) = level {
            if layers.iter().all(|l| l.compression.is_none()) {
                return Err(SpecError::UnusedLevel(level));
            }
        }
        Ok(Self { layers })
    }

    /// Whether any layer's blob is compressed.
    pub fn is_compressed(&self) -> bool {
        self.layers
            .iter()
            .any(|l| l.encoding() != Compression::None)
    }

    /// The canonical form of what the files hold, without the encodings: the key of the
    /// content, so that one spec gives the same files gzipped, zstd-compressed or plain.
    /// The `run` entry is left out: adding the program on top of an image changes none of
    /// its other layers' bytes.
    pub fn content_canonical(&self) -> String {
        self.layers
            .iter()
            .filter(|l| l.run.is_none())
            .map(LayerSpec::content_canonical)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Payload bytes over all layers.
    pub fn total_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The layout made explicit, other options only where they are not the defaults,
    /// sizes in the largest unit that divides them: `1GB:files=1,512MB:files=1000:ratio=4`.
    pub fn canonical(&self) -> String {
        self.layers
            .iter()
            .map(LayerSpec::canonical)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An upper bound of the layer's tar size (headers for every file and directory, padding),
/// or `None` when even that overflows.
fn max_tar_size(layer: &LayerSpec) -> Option<u64> {
    // Per file: a header and up to 511 bytes of padding, plus at most one directory header;
    // a tree's long and non-ASCII paths add a PAX header and a block of records to each.
    // Every other entry is headers only: a link's long target takes a PAX block more, and a
    // whiteout may bring its parent directories' headers.
    layer
        .files
        .checked_mul(3 * 512 + 511 + 3 * 512)?
        .checked_add(layer.extra.total().checked_mul(32 * 512)?)?
        .checked_add(layer.size)?
        .checked_add(4096)
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl std::str::FromStr for Ratio {
    type Err = SpecError;
    /// `4`, `2.5`: as `ratio=` takes it.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::parse(s.trim()).ok_or_else(|| SpecError::BadRatio {
            value: s.to_owned(),
            token: format!("ratio={s}"),
        })
    }
}

impl std::str::FromStr for Spec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::parse(s)
    }
}

/// Formats a byte count in the largest unit that divides it exactly (`1536MB`, `300B`).
pub fn format_size(bytes: u64) -> String {
    let (name, unit) = UNITS
        .iter()
        .rev()
        .find(|(_, unit)| bytes.is_multiple_of(*unit) && bytes >= *unit)
        .copied()
        .unwrap_or(UNITS[0]);
    format!("{}{}", bytes / unit, name)
}

/// `1–9`: the levels of an encoding, for messages.
fn level_range(compression: Compression) -> String {
    match compression.levels() {
        Some((low, high)) => format!("{low}–{high}"),
        None => "none".to_owned(),
    }
}

/// One entry of the list, `[Nx]SIZE[:OPTION=N]…`: the layer and how often it repeats.
fn parse_entry(token: &str) -> Result<(usize, LayerSpec), SpecError> {
    let mut parts = token.split(':');
    let head = parts.next().unwrap_or_default().trim();
    let (repeat, size) = match split_repeat(head) {
        None => (1, head),
        Some((count, size)) => {
            let size = size.trim();
            (parse_repeat(count.trim(), size, token)?, size)
        }
    };
    if size.eq_ignore_ascii_case("run") {
        if repeat > 1 {
            return Err(SpecError::RunTwice(token.to_owned()));
        }
        return Ok((1, LayerSpec::run(parse_run(parts, token)?)));
    }
    let size = parse_size(size, token)?;
    let mut layer = LayerSpec::new(size);
    let mut seen: Vec<&str> = Vec::new();
    let mut level = None;
    const KNOWN: &[&str] = &[
        "files",
        "tree",
        "ratio",
        "compression",
        "level",
        "sizes",
        "symlinks",
        "hardlinks",
        "whiteouts",
        "dirs",
        "seed",
    ];
    let unknown = |option: &str| SpecError::UnknownOption {
        option: option.to_owned(),
        token: token.to_owned(),
    };
    for option in options(parts, token, KNOWN, unknown) {
        let (name, value) = option?;
        seen.push(name);
        match name {
            "files" | "tree" => {
                if seen.contains(&"files") && seen.contains(&"tree") {
                    return Err(SpecError::ConflictingOptions(token.to_owned()));
                }
                let layout = if name == "files" {
                    Layout::Flat
                } else {
                    Layout::Tree
                };
                // Digits only: `u64::from_str` would also take `+5`.
                layer.files = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| SpecError::BadFileCount {
                        option: name.to_owned(),
                        value: value.to_owned(),
                        token: token.to_owned(),
                    })?;
                layer.layout = layout;
            }
            "symlinks" | "hardlinks" | "whiteouts" | "dirs" => {
                let count = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<u64>().ok())
                    .flatten()
                    .filter(|n| *n <= MAX_EXTRA)
                    .ok_or_else(|| SpecError::BadCount {
                        option: name.to_owned(),
                        value: value.to_owned(),
                        token: token.to_owned(),
                    })?;
                layer.extra.set(name, count);
            }
            "ratio" => {
                layer.ratio = Ratio::parse(value).ok_or_else(|| SpecError::BadRatio {
                    value: value.to_owned(),
                    token: token.to_owned(),
                })?;
            }
            "compression" => {
                layer.compression = Some(Compression::parse(value).ok_or_else(|| {
                    SpecError::UnknownCompression {
                        value: value.to_owned(),
                        token: token.to_owned(),
                    }
                })?);
            }
            "seed" => {
                layer.seed = Some(Word::parse(value).ok_or_else(|| SpecError::BadSeed {
                    value: value.to_owned(),
                    token: token.to_owned(),
                })?);
            }
            "sizes" => {
                layer.even_sizes = match value.to_ascii_lowercase().as_str() {
                    "even" => true,
                    "skewed" => false,
                    _ => {
                        return Err(SpecError::BadSizes {
                            value: value.to_owned(),
                            token: token.to_owned(),
                        })
                    }
                };
            }
            // Checked once the whole entry is read: `level` may come before `compression`.
            _ => level = Some(value),
        }
    }
    if layer.seed.is_some() && layer.extra.whiteouts > 0 {
        return Err(SpecError::SeedWithWhiteouts(token.to_owned()));
    }
    if seen.contains(&"sizes") && layer.layout != Layout::Tree {
        return Err(SpecError::SizesWithoutTree(token.to_owned()));
    }
    if let Some(value) = level {
        let compression = layer.encoding();
        let Some((low, high)) = compression.levels() else {
            return Err(SpecError::LevelWithoutCompression(token.to_owned()));
        };
        let level = value
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| value.parse::<u32>().ok())
            .flatten()
            .filter(|l| (low..=high).contains(l))
            .ok_or_else(|| SpecError::BadLevel {
                value: value.to_owned(),
                compression,
                token: token.to_owned(),
            })?;
        layer.level = Some(level);
        // The default level is not spelled out, so that `level=6` and no level are one spec.
        if Some(level) == compression.default_level() {
            layer.level = None;
        }
    }
    check_layer(&layer, token)?;
    Ok((repeat, layer))
}

/// An entry's `key=value` options, checked in order as they are read: a name among
/// `known` (else `unknown`'s error), a value, and no name twice.
fn options<'a>(
    parts: impl Iterator<Item = &'a str>,
    token: &'a str,
    known: &'static [&'static str],
    unknown: impl Fn(&str) -> SpecError,
) -> impl Iterator<Item = Result<(&'static str, &'a str), SpecError>> {
    let mut seen: Vec<&'static str> = Vec::new();
    parts.map(move |option| {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (option.trim(), ""),
        };
        if key.is_empty() {
            return Err(SpecError::EmptyOption(token.to_owned()));
        }
        let name = *known
            .iter()
            .find(|k| **k == key)
            .ok_or_else(|| unknown(key))?;
        if value.is_empty() {
            return Err(SpecError::MissingValue {
                option: key.to_owned(),
                token: token.to_owned(),
            });
        }
        if seen.contains(&name) {
            return Err(SpecError::DuplicateOption {
                option: key.to_owned(),
                token: token.to_owned(),
            });
        }
        seen.push(name);
        Ok((name, value))
    })
}

/// The options of a `run` entry, after `run`.
fn parse_run<'a>(parts: impl Iterator<Item = &'a str>, token: &'a str) -> Result<Run, SpecError> {
    let mut run = Run::default();
    let mut order = None;
    let unknown = |option: &str| SpecError::UnknownRunOption {
        option: option.to_owned(),
        token: token.to_owned(),
    };
    for option in options(parts, token, &["ready", "read", "order"], unknown) {
        let (name, value) = option?;
        let bad = || SpecError::BadRunOption {
            option: name.to_owned(),
            value: value.to_owned(),
            token: token.to_owned(),
        };
        match name {
            "ready" => run.ready = Word::parse(value).ok_or_else(bad)?,
            "read" => {
                run.read = match value.to_ascii_lowercase().as_str() {
                    "all" => 100,
                    "none" => 0,
                    digits => digits
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| digits.parse::<u8>().ok())
                        .flatten()
                        .filter(|n| *n <= 100)
                        .ok_or_else(bad)?,
                }
            }
            _ => {
                order = Some(match value.to_ascii_lowercase().as_str() {
                    "tar" => false,
                    "random" => true,
                    _ => return Err(bad()),
                })
            }
        }
    }
    if let Some(random) = order {
        if run.read == 0 {
            return Err(SpecError::OrderWithoutRead(token.to_owned()));
        }
        run.random = random;
    }
    Ok(run)
}

/// The most entries of one extra kind a layer may ask for.
const MAX_EXTRA: u64 = 10_000_000;

/// Whiteouts need something below them: not on the first layer, no more than the lower
/// layers hold (less what earlier whiteouts delete), and with two or more, a directory
/// below a lower layer's top to make opaque. `token` names each layer as given.
fn check_whiteouts(layers: &[(LayerSpec, &str)]) -> Result<(), SpecError> {
    let (mut available, mut subdirs) = (0u64, false);
    for (i, (layer, token)) in layers.iter().enumerate() {
        let whiteouts = layer.extra.whiteouts;
        if whiteouts > 0 {
            if i == 0 {
                return Err(SpecError::WhiteoutsOnFirstLayer((*token).to_owned()));
            }
            if whiteouts > available {
                return Err(SpecError::TooManyWhiteouts {
                    token: (*token).to_owned(),
                    whiteouts,
                    available,
                });
            }
            if whiteouts >= 2 && !subdirs {
                return Err(SpecError::NoOpaqueDirectory((*token).to_owned()));
            }
        }
        // What this layer leaves for the next ones to delete: its files, links and empty
        // directories. An opaque directory or a deleted directory may take more with it,
        // which the planner makes room for.
        available = available
            .saturating_add(layer.files)
            .saturating_add(layer.extra.symlinks)
            .saturating_add(layer.extra.hardlinks)
            .saturating_add(layer.extra.dirs)
            .saturating_sub(whiteouts);
        subdirs |= layer.extra.dirs > 0 || (layer.layout == Layout::Tree && layer.files >= 10);
    }
    Ok(())
}

/// Splits `3x1GB` into `3` and `1GB`. A lowercase `x` always separates; an uppercase `X`
/// only before a number (`3X1GB`), so that `1XB` stays a size with an unknown unit.
fn split_repeat(head: &str) -> Option<(&str, &str)> {
    let (i, _) = head.char_indices().find(|&(i, c)| {
        c == 'x'
            || (c == 'X'
                && head[i + 1..]
                    .trim_start()
                    .starts_with(|c: char| c.is_ascii_digit() || c == '.'))
    })?;
    // `x` is one byte: `i + 1` is where the size starts.
    Some((&head[..i], &head[i + 1..]))
}

/// The `N` of `Nx`: a whole number from 1 to [`MAX_LAYERS`], checked before the size that
/// follows it so that errors read left to right.
fn parse_repeat(count: &str, size: &str, token: &str) -> Result<usize, SpecError> {
    let named = || (count.to_owned(), token.to_owned());
    if count.is_empty() {
        return Err(SpecError::MissingRepeatCount(token.to_owned()));
    }
    if count.starts_with('-') {
        let (count, token) = named();
        return Err(SpecError::NegativeRepeatCount { count, token });
    }
    // Digits only: `usize::from_str` would also take `+3`.
    if !count.bytes().all(|b| b.is_ascii_digit()) {
        let (count, token) = named();
        return Err(SpecError::BadRepeatCount { count, token });
    }
    let digits = count.trim_start_matches('0');
    if digits.is_empty() {
        let (count, token) = named();
        return Err(SpecError::ZeroRepeats { count, token });
    }
    let repeat = digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_LAYERS)
        .ok_or_else(|| {
            let (count, token) = named();
            SpecError::TooManyRepeats { count, token }
        })?;
    if size.is_empty() {
        return Err(SpecError::MissingRepeatedSize(token.to_owned()));
    }
    if split_repeat(size).is_some() {
        return Err(SpecError::NestedRepeat(token.to_owned()));
    }
    Ok(repeat)
}

fn check_layer(layer: &LayerSpec, token: &str) -> Result<(), SpecError> {
    if layer.run.is_some() {
        return Ok(());
    }
    if layer.size == 0 {
        return Err(SpecError::Zero(token.to_owned()));
    }
    if layer.files == 0 {
        return Err(SpecError::ZeroFiles {
            option: layer.layout.option().to_owned(),
            token: token.to_owned(),
        });
    }
    if layer.files > layer.size {
        return Err(SpecError::MoreFilesThanBytes {
            token: token.to_owned(),
            files: layer.files,
            size: layer.size,
        });
    }
    if max_tar_size(layer).is_none() {
        return Err(SpecError::Overflow(token.to_owned()));
    }
    Ok(())
}

/// A size given on its own, e.g. `--max-size 10GB`: the units and rules of the layer list.
pub fn parse_byte_size(text: &str) -> Result<u64, SpecError> {
    parse_size(text.trim(), text)
}

/// Parses `1GB`, `1.5GiB`, `512m`, `300B`, `100` (MB) into bytes; `token` is what errors name.
fn parse_size(text: &str, token: &str) -> Result<u64, SpecError> {
    if text.starts_with('-') {
        return Err(SpecError::Negative(token.to_owned()));
    }
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit = unit.trim();
    // `1e3MB`, `1 . 5GB`: number-shaped junk is not a unit.
    if number.is_empty() || unit.contains(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(if text.is_empty() {
            SpecError::MissingNumber(token.to_owned())
        } else {
            SpecError::NotANumber(token.to_owned())
        });
    }
    let multiplier = unit_multiplier(unit).ok_or_else(|| SpecError::UnknownUnit {
        unit: unit.to_owned(),
        token: token.to_owned(),
    })?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(SpecError::NotANumber(token.to_owned()));
    }
    let overflow = || SpecError::Overflow(token.to_owned());
    // Leading zeros of the whole part and trailing zeros of the fraction change nothing.
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    if whole.len() > 20 {
        return Err(overflow());
    }
    let digits = |s: &str| -> u128 { s.parse::<u128>().unwrap_or(0) };
    let multiplier = u128::from(multiplier);
    let whole_bytes = digits(whole).checked_mul(multiplier).ok_or_else(overflow)?;
    // Exact or rejected: `1.5GB` is fine, `1.3B` is not.
    let fraction_bytes = if fraction.is_empty() {
        0
    } else {
        // bytes = F * 2^k / 10^len. Cancelling the common powers of two first keeps the
        // product within u128 for fractions of up to 38 digits.
        let inexact = || SpecError::FractionalBytes(token.to_owned());
        let len = u32::try_from(fraction.len()).map_err(|_| inexact())?;
        if len > 38 {
            return Err(inexact());
        }
        let twos = len.min(multiplier.trailing_zeros());
        let numerator = digits(fraction)
            .checked_mul(multiplier >> twos)
            .ok_or_else(inexact)?;
        let denominator = 10u128.pow(len) >> twos;
        if numerator % denominator != 0 {
            return Err(inexact());
        }
        numerator / denominator
    };
    let bytes = whole_bytes
        .checked_add(fraction_bytes)
        .ok_or_else(overflow)?;
    u64::try_from(bytes).map_err(|_| overflow())
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    let upper = unit.to_ascii_uppercase();
    let name = match upper.as_str() {
        "" => "MB",
        "K" | "KIB" => "KB",
        "M" | "MIB" => "MB",
        "G" | "GIB" => "GB",
        "T" | "TIB" => "TB",
        other => other,
    };
    UNITS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(list: &str) -> Vec<u64> {
        Spec::parse(list)
            .expect("valid spec")
            .layers()
            .iter()
            .map(|l| l.size)
            .collect()
    }

    fn err(list: &str) -> SpecError {
        Spec::parse(list).expect_err("invalid spec")
    }

    #[test]
    fn units_are_powers_of_1024() {
        assert_eq!(
            sizes("1B,1KB,1MB,1GB,1TB"),
            [1, 1024, 1 << 20, 1 << 30, 1 << 40]
        );
        assert_eq!(
            sizes("1KiB,1MiB,1GiB,1TiB"),
            [1024, 1 << 20, 1 << 30, 1 << 40]
        );
        assert_eq!(sizes("2kb, 3 MB ,4gib"), [2048, 3 << 20, 4 << 30]);
    }

    #[test]
    fn bare_number_means_megabytes() {
        assert_eq!(sizes("100"), [100 << 20]);
    }

    #[test]
    fn exact_decimals_are_accepted() {
        assert_eq!(sizes("1.5GB,0.5KB,2.0MB"), [3 << 29, 512, 2 << 20]);
        assert_eq!(sizes(".5KB"), [512]);
    }

    #[test]
    fn files_option() {
        let spec = Spec::parse("512MB:files=1000,1KB").expect("valid");
        assert_eq!(spec.layers()[0].files, 1000);
        assert_eq!(spec.layers()[1].files, 1);
    }

    #[test]
    fn every_error_names_the_token() {
        assert_eq!(err(""), SpecError::Empty);
        assert_eq!(err(":files=2"), SpecError::MissingNumber(":files=2".into()));
        assert_eq!(
            err(&vec!["1B"; MAX_LAYERS + 1].join(",")),
            SpecError::TooManyLayers {
                count: MAX_LAYERS + 1
            }
        );
        assert_eq!(err("   "), SpecError::Empty);
        assert!(matches!(
            err("1GB,,2MB"),
            SpecError::EmptyEntry { position: 2, .. }
        ));
        assert!(matches!(
            err("1GB,"),
            SpecError::EmptyEntry { position: 2, .. }
        ));
        assert_eq!(err("-1MB"), SpecError::Negative("-1MB".into()));
        assert_eq!(
            err("1XB"),
            SpecError::UnknownUnit {
                unit: "XB".into(),
                token: "1XB".into()
            }
        );
        assert_eq!(err("GB"), SpecError::NotANumber("GB".into()));
        assert_eq!(err("1.2.3MB"), SpecError::NotANumber("1.2.3MB".into()));
        assert_eq!(err("."), SpecError::NotANumber(".".into()));
        assert_eq!(err("1.3B"), SpecError::FractionalBytes("1.3B".into()));
        assert_eq!(
            err("16384PB").to_string(),
            "unknown unit `PB` in layer size `16384PB`"
        );
        assert_eq!(err("16777216TB"), SpecError::Overflow("16777216TB".into()));
        assert_eq!(
            err("99999999999999999999999999999999999"),
            SpecError::Overflow("99999999999999999999999999999999999".into())
        );
        assert_eq!(err("0MB"), SpecError::Zero("0MB".into()));
        assert_eq!(
            err("1MB:files=0"),
            SpecError::ZeroFiles {
                option: "files".into(),
                token: "1MB:files=0".into()
            }
        );
        assert!(matches!(err("1MB:files=x"), SpecError::BadFileCount { .. }));
        assert!(matches!(
            err("1MB:files=-3"),
            SpecError::BadFileCount { .. }
        ));
        assert!(matches!(err("1MB:files="), SpecError::MissingValue { .. }));
        assert!(matches!(
            err("1MB:files=1:files=2"),
            SpecError::DuplicateOption { .. }
        ));
        assert!(matches!(
            err("1MB:depth=3"),
            SpecError::UnknownOption { .. }
        ));
        assert_eq!(
            err("10B:files=11"),
            SpecError::MoreFilesThanBytes {
                token: "10B:files=11".into(),
                files: 11,
                size: 10
            }
        );
    }

    #[test]
    fn number_shaped_junk_is_not_a_unit() {
        assert_eq!(err("1e3MB"), SpecError::NotANumber("1e3MB".into()));
        assert_eq!(err("1 . 5GB"), SpecError::NotANumber("1 . 5GB".into()));
        assert!(matches!(err("+1MB"), SpecError::NotANumber(_)));
        assert!(matches!(
            err("1MB:files=+5"),
            SpecError::BadFileCount { .. }
        ));
        assert_eq!(err("1MB:"), SpecError::EmptyOption("1MB:".into()));
        // Leading zeros are not digits that count towards "too large".
        assert_eq!(sizes(&format!("{}1KB", "0".repeat(40))), [1024]);
        assert_eq!(
            sizes("0.50000000000000000000000000000000000000000KB"),
            [512]
        );
    }

    #[test]
    fn even_sizes_are_a_tree_option() {
        let spec = Spec::parse("64MB:tree=5000:sizes=even").expect("valid");
        assert!(spec.layers()[0].even_sizes);
        assert_eq!(spec.canonical(), "64MB:tree=5000:sizes=even");
        assert_eq!(
            Spec::parse("64MB:sizes=skewed:tree=5")
                .expect("valid")
                .canonical(),
            "64MB:tree=5"
        );
        assert_eq!(
            err("1MB:files=3:sizes=even"),
            SpecError::SizesWithoutTree("1MB:files=3:sizes=even".into())
        );
        assert_eq!(
            err("1MB:tree=3:sizes=odd"),
            SpecError::BadSizes {
                value: "odd".into(),
                token: "1MB:tree=3:sizes=odd".into()
            }
        );
    }

    #[test]
    fn tree_layout() {
        let spec = Spec::parse("64MB:tree=5000").expect("valid");
        assert_eq!(spec.layers()[0].layout, Layout::Tree);
        assert_eq!(spec.canonical(), "64MB:tree=5000");
        assert_ne!(
            spec.canonical(),
            Spec::parse("64MB:files=5000").expect("valid").canonical()
        );
        assert_eq!(
            err("1MB:tree=2:files=2"),
            SpecError::ConflictingOptions("1MB:tree=2:files=2".into())
        );
        assert!(matches!(err("1MB:tree=0"), SpecError::ZeroFiles { .. }));
        assert!(matches!(
            err("1MB:tree=1:tree=1"),
            SpecError::DuplicateOption { .. }
        ));
    }

    #[test]
    fn sizes_that_cannot_be_stored_are_rejected() {
        assert_eq!(
            err("18446744073709551615B"),
            SpecError::Overflow("18446744073709551615B".into())
        );
        assert_eq!(
            err("16777215TB,16777215TB"),
            SpecError::TotalOverflow("16777215TB,16777215TB".into())
        );
        assert_eq!(
            Spec::parse_with_count("1MB", Some(MAX_LAYERS + 1)),
            Err(SpecError::TooManyLayers {
                count: MAX_LAYERS + 1
            })
        );
        assert_eq!(
            Spec::parse_with_count("1MB", Some(usize::MAX)),
            Err(SpecError::TooManyLayers { count: usize::MAX })
        );
        assert!(Spec::parse_with_count("1MB", Some(MAX_LAYERS)).is_ok());
        assert!(matches!(
            Spec::parse_with_count("8TB", Some(3_000_000)),
            Err(SpecError::TooManyLayers { .. })
        ));
        assert!(matches!(
            Spec::parse_with_count("8000TB", Some(5000)),
            Err(SpecError::TotalOverflow(_))
        ));
    }

    #[test]
    fn from_layers_applies_the_same_checks() {
        assert!(Spec::from_layers(vec![LayerSpec::new(5)]).is_ok());
        assert_eq!(Spec::from_layers(vec![]), Err(SpecError::ZeroLayers));
        assert_eq!(
            Spec::from_layers(vec![LayerSpec::new(0)]),
            Err(SpecError::Zero("0B:files=1".into()))
        );
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(err("1XB").hint().map(|h| h.contains("KiB")), Some(true));
        assert_eq!(
            err("10B:files=11").to_string(),
            "`10B:files=11` asks for 11 files but holds only 10 bytes"
        );
    }

    #[test]
    fn num_layers_must_agree() {
        let repeated = Spec::parse_with_count("1MB", Some(3)).expect("repeats");
        assert_eq!(repeated.layers().len(), 3);
        assert_eq!(
            Spec::parse_with_count("1MB,2MB", Some(2))
                .expect("agrees")
                .layers()
                .len(),
            2
        );
        assert_eq!(
            Spec::parse_with_count("1MB", Some(0)),
            Err(SpecError::ZeroLayers)
        );
        let mismatch = Spec::parse_with_count("1GB,512MB", Some(3)).expect_err("mismatch");
        assert_eq!(
            mismatch.to_string(),
            "--num-layers is 3 but the layer list `1GB,512MB` has 2 sizes"
        );
    }

    #[test]
    fn canonical_form_spells_out_defaults() {
        let spec = Spec::parse("1.5GB, 512MiB:files=1000,300B,1024").expect("valid");
        assert_eq!(
            spec.canonical(),
            "1536MB:files=1,512MB:files=1000,300B:files=1,1GB:files=1"
        );
        // Same canonical form, same spec.
        assert_eq!(Spec::parse(&spec.canonical()), Ok(spec));
    }

    #[test]
    fn a_run_entry_is_the_program_and_leaves_the_content_key_alone() {
        let spec = Spec::parse("1MB, RUN:read=all:order=random").expect("valid");
        assert_eq!(spec.canonical(), "1MB:files=1,run:read=all:order=random");
        assert_eq!(spec.content_canonical(), "1MB:files=1");
        let run = spec.layers()[1].run.expect("run");
        assert_eq!(
            (run.ready.as_str(), run.read, run.random),
            ("ready", 100, true)
        );
        assert_eq!(
            Spec::parse("run:ready=up:read=25:order=tar")
                .expect("valid")
                .canonical(),
            "run:ready=up:read=25"
        );
        // Encodings never reach it.
        let gzip = Spec::parse("1MB,run")
            .expect("valid")
            .with_defaults(Some(Compression::Gzip), None)
            .expect("valid");
        assert_eq!(gzip.canonical(), "1MB:files=1:compression=gzip,run");
        let plain = Spec::parse("1MB").expect("valid");
        assert_eq!(
            plain.with_run("ready=up").expect("valid").canonical(),
            "1MB:files=1,run:ready=up"
        );
        assert_eq!(spec.with_run(" ").expect("valid"), spec);
        assert!(matches!(
            spec.with_run("read=1"),
            Err(SpecError::RunTwice(_))
        ));
        // The entry counts as a layer: one over the most is refused.
        let full = Spec::parse(&format!("{MAX_LAYERS}x1KB")).expect("valid");
        assert!(matches!(
            full.with_run(""),
            Err(SpecError::TooManyLayers { count }) if count == MAX_LAYERS + 1
        ));
        assert!(matches!(
            plain.with_run("files=2"),
            Err(SpecError::UnknownRunOption { .. })
        ));
        for (bad, want) in [
            ("1MB,run,run", "more than one `run`"),
            ("2xrun", "more than one `run`"),
            ("run:files=2", "unknown option `files` of `run`"),
            ("run:read=101", "`read=101`"),
            ("run:ready=a b", "`ready=a b`"),
            (
                "run:order=random",
                "`order=` in `run:order=random` needs `read=`",
            ),
            ("run:order=up:read=1", "`order=up`"),
        ] {
            let e = Spec::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(want), "{bad}: {e}");
            assert!(e.hint().is_some(), "{bad}");
        }
    }

    #[test]
    fn a_seed_name_is_part_of_the_layers_canonical_and_content_form() {
        let spec = Spec::parse("1GB:seed=base:compression=gzip,64MB").expect("valid");
        assert_eq!(
            spec.canonical(),
            "1GB:files=1:seed=base:compression=gzip,64MB:files=1"
        );
        assert_eq!(
            spec.content_canonical(),
            "1GB:files=1:seed=base,64MB:files=1"
        );
        assert_eq!(
            spec.layers()[0].seed.map(|s| s.to_string()).as_deref(),
            Some("base")
        );
        assert_eq!(
            Spec::parse("2x1MB:tree=5:seed=a.b-C_9")
                .expect("valid")
                .canonical(),
            "1MB:tree=5:seed=a.b-C_9,1MB:tree=5:seed=a.b-C_9"
        );
        let long = "n".repeat(MAX_WORD);
        assert!(Spec::parse(&format!("1MB:seed={long}")).is_ok());
        for bad in [
            format!("1MB:seed={long}n"),
            "1MB:seed=-a".into(),
            "1MB:seed=a/b".into(),
            "1MB:seed=é".into(),
        ] {
            assert!(
                matches!(Spec::parse(&bad), Err(SpecError::BadSeed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Spec::parse("1MB:tree=5,1MB:whiteouts=1:seed=x"),
            Err(SpecError::SeedWithWhiteouts(_))
        ));
        assert!(matches!(
            Spec::parse("1MB:seed=x:seed=y"),
            Err(SpecError::DuplicateOption { .. })
        ));
    }

    #[test]
    fn encoding_and_ratio_options() {
        let spec = Spec::parse("1GB:compression=zstd,64MB:tree=5:ratio=2.50:compression=GZIP:level=9,1KB:level=6:compression=gzip").expect("valid");
        assert_eq!(
            spec.canonical(),
            "1GB:files=1:compression=zstd,64MB:tree=5:ratio=2.5:compression=gzip:level=9,1KB:files=1:compression=gzip"
        );
        assert_eq!(spec.layers()[0].effective_level(), Some(3));
        assert_eq!(spec.layers()[1].effective_level(), Some(9));
        assert_eq!(
            spec.layers()[2].level,
            None,
            "the default level is not kept"
        );
        assert_eq!(
            spec.content_canonical(),
            "1GB:files=1,64MB:tree=5:ratio=2.5,1KB:files=1"
        );
        // Without encodings or ratios the canonical form is what it always was.
        assert_eq!(
            canonical("1GB:compression=none"),
            "1GB:files=1:compression=none"
        );
        assert_eq!(canonical("1MB:ratio=1.00"), "1MB:files=1");
        assert_eq!(canonical("1MB:ratio=100"), "1MB:files=1:ratio=100");
        assert_eq!(canonical("1MB:ratio=1.05"), "1MB:files=1:ratio=1.05");
        for (list, bad) in [
            ("1MB:ratio=0", "ratio"),
            ("1MB:ratio=0.99", "ratio"),
            ("1MB:ratio=100.01", "ratio"),
            ("1MB:ratio=1.001", "ratio"),
            ("1MB:ratio=x", "ratio"),
            ("1MB:ratio=-2", "ratio"),
            ("1MB:compression=lz4", "compression"),
            ("1MB:compression=gzip:level=10", "level"),
            ("1MB:compression=zstd:level=20", "level"),
            ("1MB:compression=zstd:level=+3", "level"),
            ("1MB:level=3", "level"),
            ("1MB:compression=none:level=3", "level"),
        ] {
            let e = err(list);
            assert!(
                e.to_string().contains(list) || e.to_string().contains(&format!("`{list}`")),
                "{list}: {e}"
            );
            assert!(
                e.hint().is_some_and(|h| h.contains(bad)),
                "{list}: {:?}",
                e.hint()
            );
        }
        assert!(matches!(
            err("1MB:ratio=2:ratio=3"),
            SpecError::DuplicateOption { .. }
        ));
    }

    #[test]
    fn defaults_fill_what_layers_leave_unsaid() {
        let spec = Spec::parse(
            "1MB,2MB:compression=none,3MB:compression=zstd,4MB:compression=gzip:level=2",
        )
        .expect("valid");
        let resolved = spec
            .with_defaults(Some(Compression::Gzip), Some(9))
            .expect("valid");
        assert_eq!(
            resolved.canonical(),
            "1MB:files=1:compression=gzip:level=9,2MB:files=1,3MB:files=1:compression=zstd:level=9,4MB:files=1:compression=gzip:level=2"
        );
        assert_eq!(
            spec.with_defaults(Some(Compression::Gzip), Some(15)),
            Err(SpecError::BadDefaultLevel {
                level: 15,
                compression: Compression::Gzip,
                token: "1MB:files=1:compression=gzip".into()
            })
        );
        assert_eq!(
            Spec::parse("1MB")
                .expect("valid")
                .with_defaults(None, Some(3)),
            Err(SpecError::UnusedLevel(3))
        );
        // Resolving twice changes nothing.
        assert_eq!(resolved.with_defaults(None, None).as_ref(), Ok(&resolved));
    }

    #[test]
    fn sizes_format_in_the_largest_unit_that_divides() {
        assert_eq!(format_size(1536 << 20), "1536MB");
        assert_eq!(format_size(1), "1B");
        assert_eq!(format_size(1 << 40), "1TB");
        assert_eq!(format_size((1 << 40) + 1024), "1073741825KB");
    }

    fn canonical(list: &str) -> String {
        Spec::parse(list)
            .unwrap_or_else(|e| panic!("{list}: {e}"))
            .canonical()
    }

    #[test]
    fn single_letter_units_in_any_case() {
        assert_eq!(
            sizes("1K,1k,2M,2m,3G,3g,1T,1t"),
            [
                1 << 10,
                1 << 10,
                2 << 20,
                2 << 20,
                3 << 30,
                3 << 30,
                1 << 40,
                1 << 40
            ]
        );
        assert_eq!(
            sizes("512mb,1Gb,1gB,7b,1Kib, 2 m"),
            [512 << 20, 1 << 30, 1 << 30, 7, 1024, 2 << 20]
        );
        assert_eq!(parse_byte_size("10g"), Ok(10 << 30));
        // What people type has the canonical form, so the hash and cache key, of the
        // spelled-out spec.
        for (typed, spelled) in [
            ("512M", "512MB"),
            ("1g", "1GB"),
            ("100k", "100KB"),
            ("1.5G", "1536MB"),
            ("1Gb,512mb", "1GB,512MB"),
            ("2x1KB:files=2", "1KB:files=2,1KB:files=2"),
            ("2x1K:files=2", "1KB:files=2,1KB:files=2"),
        ] {
            assert_eq!(canonical(typed), canonical(spelled), "{typed}");
        }
        assert_eq!(canonical("512M"), "512MB:files=1");
        assert_eq!(canonical("1g"), "1GB:files=1");
    }

    #[test]
    fn nx_repeats_a_layer() {
        let spec = Spec::parse("3x1GB,100x4KB:files=2").expect("valid");
        assert_eq!(spec.layers().len(), 103);
        assert!(spec.layers()[..3]
            .iter()
            .all(|l| *l == LayerSpec::new(1 << 30)));
        assert!(spec.layers()[3..].iter().all(|l| *l
            == LayerSpec {
                files: 2,
                ..LayerSpec::new(4096)
            }));
        assert_eq!(canonical("1x1MB"), canonical("1MB"));
        assert_eq!(canonical("3X1GB"), canonical("3x1GB"));
        assert_eq!(canonical("03x1GB"), canonical("3x1GB"));
        assert_eq!(canonical("2x64MB:tree=5"), "64MB:tree=5,64MB:tree=5");
        assert_eq!(
            canonical(" 2 x 1MB , 1KB"),
            "1MB:files=1,1MB:files=1,1KB:files=1"
        );
        assert_eq!(canonical("2x.5K"), "512B:files=1,512B:files=1");
        assert_eq!(
            Spec::parse(&format!("{MAX_LAYERS}x1B"))
                .expect("at the limit")
                .layers()
                .len(),
            MAX_LAYERS
        );
        // `-n` counts layers after expansion; a single layer still repeats.
        assert_eq!(
            Spec::parse_with_count("3x1MB", Some(3)).map(|s| s.layers().len()),
            Ok(3)
        );
        assert_eq!(
            Spec::parse_with_count("1x1MB", Some(4)).map(|s| s.layers().len()),
            Ok(4)
        );
        assert!(matches!(
            Spec::parse_with_count("2x1MB", Some(3)),
            Err(SpecError::CountMismatch {
                num_layers: 3,
                listed: 2,
                ..
            })
        ));
    }

    #[test]
    fn bad_repetitions_name_the_token() {
        for (list, message) in [
            ("0x1MB", "repetition count `0` in `0x1MB` is zero"),
            ("00x1MB", "repetition count `00` in `00x1MB` is zero"),
            ("x1MB", "`x1MB` has no repetition count before the `x`"),
            ("X1MB", "`X1MB` has no repetition count before the `x`"),
            ("3x", "`3x` has no layer size after the `x`"),
            ("3x:files=2", "`3x:files=2` has no layer size after the `x`"),
            (
                "1.5x1MB",
                "repetition count `1.5` in `1.5x1MB` is not a whole number",
            ),
            ("-1x", "repetition count `-1` in `-1x` is negative"),
            ("-1x1MB", "repetition count `-1` in `-1x1MB` is negative"),
            ("+3x1MB", "repetition count `+3` in `+3x1MB` is not a whole number"),
            ("1GBx3", "repetition count `1GB` in `1GBx3` is not a whole number"),
            ("3x3x1MB", "`3x3x1MB` has more than one repetition count"),
            ("3xx1MB", "`3xx1MB` has more than one repetition count"),
            (
                "999999999x1KB",
                "repetition count `999999999` in `999999999x1KB` is more than the 10000 layers image-maker builds",
            ),
            (
                "99999999999999999999999999999x1KB",
                "repetition count `99999999999999999999999999999` in `99999999999999999999999999999x1KB` is more than the 10000 layers image-maker builds",
            ),
            (
                "10001x1B",
                "repetition count `10001` in `10001x1B` is more than the 10000 layers image-maker builds",
            ),
            (
                "5000x1KB,5001x1KB",
                "10001 layers is more than the 10000 image-maker builds",
            ),
            ("3x0MB", "layer size `3x0MB` is zero"),
            ("3x1XB", "unknown unit `XB` in layer size `3x1XB`"),
            ("2x1MB:files=0", "`files=0` in `2x1MB:files=0`: a layer needs at least one file"),
            ("2x16777215TB", "the layers of `2x16777215TB` add up to more than 16 EiB"),
        ] {
            assert_eq!(err(list).to_string(), message, "{list}");
        }
        // An uppercase `X` before a letter is a unit, as before repetitions existed.
        assert!(matches!(err("1XB"), SpecError::UnknownUnit { .. }));
        assert!(matches!(err("3X"), SpecError::UnknownUnit { .. }));
    }

    #[test]
    fn repetition_errors_explain_nx() {
        for list in ["0x1MB", "x1MB", "3x", "1.5x1MB", "-1x"] {
            let hint = err(list).hint().unwrap_or_default();
            assert!(
                hint.contains("`Nx` repeats a layer N times"),
                "{list}: {hint}"
            );
        }
        assert_eq!(
            err("3x3x1MB").hint(),
            Some("give each layer one count: `9x1MB`, not `3x3x1MB`")
        );
        assert!(err("1q").hint().is_some_and(|h| h.contains("K..T")));
    }

    #[test]
    fn normalized_drops_what_says_the_default() {
        let plain = Spec::parse("1MB,2MB:compression=gzip").expect("valid");
        for said in [
            "1MB:compression=none,2MB:compression=gzip:level=6",
            "1MB,2MB:compression=gzip",
        ] {
            let spec = Spec::parse(said).expect("valid");
            assert_eq!(spec.normalized(), plain, "{said}");
            assert_eq!(spec.normalized().canonical(), plain.canonical(), "{said}");
        }
    }
}
