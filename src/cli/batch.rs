//! `image-maker batch FILE`: every image an images file names (families included), into a
//! directory of OCI layouts or a registry, several at a time.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::error::CliError;
use super::{print_json, RegistryArgs};
use crate::serve::NamedImage;
use crate::{BuildRequest, Cache, Error, LayerSpec, Output, Progress, Reference, UsageError};

/// `image-maker batch`.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    /// The images file: `serve --images`'s form, with families (`repository`, `tags`,
    /// `base`, `semver`)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Push every image to this registry, `HOST[:PORT]`, as HOST/REPOSITORY:TAG
    #[arg(
        long,
        value_name = "HOST",
        required_unless_present = "out",
        conflicts_with = "out"
    )]
    pub to: Option<String>,

    /// Write one OCI layout per repository, DIR/REPOSITORY, holding all its tags
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Repositories worked on at once (one repository's images go one after another)
    #[arg(short = 'j', long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Only the I-th of N disjoint parts, e.g. `2/4`: N machines given 1/N to N/N build the
    /// whole file between them, with no coordination
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    /// The same as `--shard I+1/N` with I from `--shard-index` (0-based), which a Kubernetes
    /// Indexed Job's pod has in `JOB_COMPLETION_INDEX`
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shards: Option<usize>,

    /// This pod's part of `--shards N`, from 0
    #[arg(long, value_name = "I", env = "JOB_COMPLETION_INDEX")]
    pub shard_index: Option<String>,

    /// How the registry is reached.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print a JSON array of what was written (reference, digest) on stdout
    #[arg(long)]
    pub json: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// One image of a repository, under all its tags (a version and its aliases).
#[derive(Debug)]
struct Work<'a> {
    repository: &'a str,
    tags: Vec<&'a str>,
    image: &'a NamedImage,
    /// The repository it mounts shared blobs from.
    source: Option<&'a str>,
}

/// What `--json` prints per tag.
#[derive(Debug, serde::Serialize)]
struct Written {
    reference: String,
    digest: String,
}

/// `I/N`, 1 ≤ I ≤ N.
fn shard(text: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::Usage(UsageError::Shard(text.to_owned()));
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Runs `image-maker batch`.
pub fn run(args: &BatchArgs) -> Result<(), CliError> {
    let named = crate::serve::read_images(&args.file)?;
    let (part, parts) = match (&args.shard, args.shards) {
        (Some(text), _) => shard(text)?,
        (None, Some(n)) => {
            let index = args.shard_index.as_deref().ok_or(UsageError::ShardIndex)?;
            let bad = || UsageError::BadShardIndex {
                index: index.to_owned(),
                shards: n,
            };
            let i = index.trim().parse::<usize>().map_err(|_| bad())?;
            if i >= n {
                return Err(Error::from(bad()).into());
            }
            (i + 1, n)
        }
        (None, None) => (1, 1),
    };
    let push = args.registry.options(false)?;
    // Every image, its tags together, in a fixed order: repositories, then tags.
    let mut repositories: Vec<&String> = named.keys().collect();
    repositories.sort();
    let mut work: Vec<Work<'_>> = Vec::new();
    for repository in repositories {
        // A version and its aliases are one image: found by what it is, not by comparing
        // every pair of a repository's thousands of tags.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (tag, image) in &named[repository] {
            match seen.entry(format!("{image:?}")) {
                Entry::Occupied(at) => work[*at.get()].tags.push(tag),
                Entry::Vacant(slot) => {
                    slot.insert(work.len());
                    work.push(Work {
                        repository,
                        tags: vec![tag],
                        image,
                        source: None,
                    });
                }
            }
        }
    }
    // An image whose first layer is a `seed=` one (a base's) mounts its blobs from the
    // repository of the image with that first layer and the fewest layers, the base's, when
    // that is another repository: such repositories go up first. Over the whole file, so that
    // a shard mounts from a base another shard pushed (a mount that fails uploads instead).
    let mut bases: HashMap<LayerSpec, (usize, &str)> = HashMap::new();
    for w in &work {
        let Some(first) = w.image.spec.layers().first().filter(|l| l.seed.is_some()) else {
            continue;
        };
        let count = w.image.spec.layers().len();
        let best = bases.entry(*first).or_insert((count, w.repository));
        if count < best.0 {
            *best = (count, w.repository);
        }
    }
    let total = work.len();
    let mine: Vec<Work<'_>> = work
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % parts == part - 1)
        .map(|(_, mut w)| {
            let count = w.image.spec.layers().len();
            w.source = w
                .image
                .spec
                .layers()
                .first()
                .and_then(|first| bases.get(first))
                .filter(|(fewest, repository)| *fewest < count && *repository != w.repository)
                .map(|(_, repository)| *repository);
            w
        })
        .collect();
    let sources: BTreeSet<&str> = mine.iter().filter_map(|w| w.source).collect();
    let mut by_repository: Vec<(bool, Vec<&Work<'_>>)> = Vec::new();
    for w in &mine {
        match by_repository.last_mut() {
            Some((_, group)) if group[0].repository == w.repository => group.push(w),
            _ => by_repository.push((sources.contains(w.repository), vec![w])),
        }
    }
    let cache = Cache::from_env()?;
    let written = Mutex::new(Vec::new());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let progress = super::progress(args.quiet);
    let one = |w: &Work<'_>| -> Result<(), Error> {
        for tag in &w.tags {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let (reference, output) = match (&args.to, &args.out) {
                (Some(host), _) => (
                    Reference::parse(&format!("{host}/{}:{tag}", w.repository))?,
                    Output::Registry,
                ),
                (None, Some(dir)) => (
                    Reference::parse(&format!("{}:{tag}", w.repository))?,
                    Output::OciDir(dir.join(w.repository)),
                ),
                (None, None) => unreachable!("clap requires --to or --out"),
            };
            let mut options = push.clone();
            options.mount_from = w.source.map(str::to_owned);
            let request = BuildRequest::new(w.image.spec.clone(), reference.clone())
                .platforms(w.image.platforms.clone())
                .config(w.image.config.clone())
                .registry_options(options)
                .output(output);
            let built = cache
                .build(&request, &mut Progress::hidden())
                .inspect_err(|_| {
                    // The error says what went wrong; this, which of the file's images.
                    let _ = writeln!(std::io::stderr(), "batch: {reference} failed");
                })?;
            progress.stage(format!("wrote {reference} {}", built.digest));
            lock(&written).push(Written {
                reference: reference.to_string(),
                digest: built.digest,
            });
        }
        Ok(())
    };
    // Sources first, all of them, then the rest: a mount finds its blob.
    for first in [true, false] {
        let groups: Vec<&Vec<&Work<'_>>> = by_repository
            .iter()
            .filter(|(source, _)| *source == first)
            .map(|(_, g)| g)
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..usize::from(args.jobs).min(groups.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(group) = groups.get(i) else { break };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    for w in group.iter() {
                        if let Err(e) = one(w) {
                            stop.store(true, Ordering::Relaxed);
                            lock(&failed).get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = lock(&failed).take() {
            return Err(e.into());
        }
    }
    let mut written = written.into_inner().unwrap_or_else(|e| e.into_inner());
    // In the file's order, whatever order the threads finished in.
    written.sort_by(|a, b| a.reference.cmp(&b.reference));
    progress.stage(format!(
        "{} image{} ({} tag{}) of {total} in {}{}",
        mine.len(),
        if mine.len() == 1 { "" } else { "s" },
        written.len(),
        if written.len() == 1 { "" } else { "s" },
        args.file.display(),
        if parts > 1 {
            format!(", part {part} of {parts}")
        } else {
            String::new()
        }
    ));
    if args.json {
        print_json(&written)?;
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
