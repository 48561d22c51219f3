//! `image-maker batch FILE`: every image an images file names (families included), into a
//! directory of OCI layouts or a registry, several at a time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::error::CliError;
use super::{print_json, RegistryArgs};
use crate::serve::NamedImage;
use crate::{BuildRequest, Cache, Error, Output, Progress, Reference, UsageError};

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
            let i = index
                .trim()
                .parse::<usize>()
                .map_err(|_| UsageError::Shard(format!("{index}+1/{n}")))?;
            shard(&format!("{}/{n}", i + 1))?
        }
        (None, None) => (1, 1),
    };
    let push = args.registry.options(false)?;
    // Every image, its tags together, in a fixed order: repositories, then tags.
    let mut repositories: Vec<&String> = named.keys().collect();
    repositories.sort();
    let mut work: Vec<Work<'_>> = Vec::new();
    for repository in repositories {
        let mut images: Vec<Work<'_>> = Vec::new();
        for (tag, image) in &named[repository] {
            match images.iter_mut().find(|w| w.image == image) {
                Some(same) => same.tags.push(tag),
                None => images.push(Work {
                    repository,
                    tags: vec![tag],
                    image,
                }),
            }
        }
        work.extend(images);
    }
    let total = work.len();
    let mine: Vec<Work<'_>> = work
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % parts == part - 1)
        .map(|(_, w)| w)
        .collect();
    // An image whose first layer (a `seed=` one: a base's) an image of another repository
    // with fewer layers shares mounts its blobs from there: such repositories, the bases',
    // go up first.
    let first_layer = |w: &Work<'_>| w.image.spec.layers().first().copied();
    let source_of = |w: &Work<'_>| -> Option<String> {
        let layer = first_layer(w)?;
        layer.seed?;
        let count = w.image.spec.layers().len();
        mine.iter()
            .filter(|o| o.repository != w.repository && first_layer(o) == Some(layer))
            .filter(|o| o.image.spec.layers().len() < count)
            .min_by_key(|o| o.image.spec.layers().len())
            .map(|o| o.repository.to_owned())
    };
    let mut by_repository: Vec<(bool, Vec<&Work<'_>>)> = Vec::new();
    for w in &mine {
        match by_repository.last_mut() {
            Some((_, group)) if group[0].repository == w.repository => group.push(w),
            _ => by_repository.push((false, vec![w])),
        }
    }
    for (source, group) in &mut by_repository {
        *source = mine
            .iter()
            .any(|w| source_of(w).as_deref() == Some(group[0].repository));
    }
    let cache = Cache::from_env()?;
    let written = Mutex::new(Vec::new());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let progress = super::progress(args.quiet);
    let one = |w: &Work<'_>| -> Result<(), Error> {
        for tag in &w.tags {
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
            options.mount_from = source_of(w);
            let request = BuildRequest::new(w.image.spec.clone(), reference.clone())
                .platforms(w.image.platforms.clone())
                .config(w.image.config.clone())
                .registry_options(options)
                .output(output);
            let built = cache.build(&request, &mut Progress::hidden())?;
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
    let written = written.into_inner().unwrap_or_else(|e| e.into_inner());
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
