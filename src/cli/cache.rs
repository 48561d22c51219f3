//! `image-maker cache ls | gc | clear | rehash | path`.

use std::time::{Duration, SystemTime};

use super::{print_stderr, print_stdout, CacheCommand, CliError};
use crate::cache::{self, Cache, GcOptions, GcReport};
use crate::error::UsageError;
use crate::image::rfc3339;
use crate::spec::parse_byte_size;
use crate::units::human_size;
use crate::{BuildRequest, Error, Platform, Progress, Reference, Spec};

pub(crate) fn run(command: &CacheCommand) -> Result<(), CliError> {
    let cache = Cache::from_env()?;
    let done: Result<(), Error> = match command {
        CacheCommand::Path => print_stdout(&format!("{}\n", cache.root().display())),
        CacheCommand::Ls { json: false } => print_stdout(&table(&cache)?),
        CacheCommand::Ls { json: true } => super::print_json(&listing(&cache)?),
        CacheCommand::Clear => report(&cache.clear()?),
        CacheCommand::Gc { max_size, max_age } => {
            let options = GcOptions {
                max_size: max_size.as_deref().map(parse_max_size).transpose()?,
                max_age: max_age.as_deref().map(parse_duration).transpose()?,
            };
            report(&cache.gc(options)?)
        }
        CacheCommand::Rehash { spec, platform } => {
            return rehash(&cache, spec.as_deref(), platform)
        }
    };
    Ok(done?)
}

/// `cache rehash [SPEC]`: one line per sound image on stdout, one per damaged image on
/// stderr; damage found is an error.
fn rehash(cache: &Cache, spec: Option<&str>, platform: &str) -> Result<(), CliError> {
    let key = match spec {
        Some(spec) => {
            let request = BuildRequest::new(
                Spec::parse(spec)?,
                Reference::parse("image-maker/mock:verify")?,
            )
            .platforms(Platform::parse_list(platform)?)
            .mtime(super::source_date_epoch()?);
            Some(cache::key(&request))
        }
        None => None,
    };
    let verified = cache.verify(key.as_deref(), &Progress::stderr())?;
    let (mut out, mut damaged) = (String::new(), String::new());
    for item in &verified {
        let line = match (&item.damage, item.removed) {
            (None, _) => {
                out += &format!("ok       {}  {}\n", short(&item.key), item.spec);
                continue;
            }
            (Some(why), true) => format!(
                "damaged  {}  {}: {why}; removed\n",
                short(&item.key),
                item.spec
            ),
            (Some(why), false) => format!(
                "damaged  {}  {}: {why}; in use, marked for the next build to replace\n",
                short(&item.key),
                item.spec
            ),
        };
        damaged += &line;
    }
    print_stderr(&damaged)?;
    match (&key, verified.is_empty()) {
        (Some(key), true) => out += &format!("{} is not cached\n", short(key)),
        _ => {
            out += &format!(
                "{} image{} verified\n",
                verified.len(),
                if verified.len() == 1 { "" } else { "s" }
            )
        }
    }
    print_stdout(&out)?;
    match verified.iter().filter(|v| v.damage.is_some()).count() {
        0 => Ok(()),
        count => Err(CliError::CacheDamaged { count }),
    }
}

/// One image of `cache ls --json`. The field names are a contract, as the table's columns.
#[derive(Debug, serde::Serialize)]
struct ListedJson {
    key: String,
    spec: String,
    digest: String,
    platforms: Vec<String>,
    size: u64,
    last_used: String,
    created: String,
}

fn listing(cache: &Cache) -> Result<Vec<ListedJson>, Error> {
    Ok(cache
        .list()?
        .into_iter()
        .map(|item| ListedJson {
            platforms: item.platform.split(',').map(str::to_owned).collect(),
            size: item.size,
            last_used: rfc3339(seconds(item.last_used)),
            created: rfc3339(item.created),
            key: item.key,
            spec: item.spec,
            digest: item.digest,
        })
        .collect())
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn table(cache: &Cache) -> Result<String, Error> {
    let listed = cache.list()?;
    let mut out = format!(
        "{:<12}  {:>10}  {:<20}  {:<12}  SPEC\n",
        "KEY", "SIZE", "LAST USED", "PLATFORM"
    );
    for item in &listed {
        let used = seconds(item.last_used);
        out += &format!(
            "{:<12}  {:>10}  {:<20}  {:<12}  {}\n",
            item.key.get(..12).unwrap_or(&item.key),
            human_size(item.size),
            rfc3339(used),
            item.platform,
            item.spec
        );
    }
    out += &format!(
        "{} image{}, {} on disk in {}\n",
        listed.len(),
        if listed.len() == 1 { "" } else { "s" },
        human_size(cache.disk_usage()),
        cache.root().display()
    );
    Ok(out)
}

fn report(report: &GcReport) -> Result<(), Error> {
    let mut damaged = String::new();
    for (key, why) in &report.damaged {
        damaged += &format!("removed damaged {}: {why}\n", short(key));
    }
    print_stderr(&damaged)?;
    let mut out = String::new();
    for item in &report.evicted {
        out += &format!("evicted {}  {}\n", short(&item.key), item.spec);
    }
    for item in &report.in_use {
        out += &format!("in use, kept {}  {}\n", short(&item.key), item.spec);
    }
    if report.memos > 0 {
        out += &format!(
            "removed {} digest memo{} of `serve`\n",
            report.memos,
            if report.memos == 1 { "" } else { "s" }
        );
    }
    out += &format!(
        "freed {}, {} left\n",
        human_size(report.freed),
        human_size(report.remaining)
    );
    print_stdout(&out)
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

/// `--max-size`: a size in the grammar's units, with an error that speaks of the flag.
fn parse_max_size(text: &str) -> Result<u64, Error> {
    parse_byte_size(text).map_err(|e| {
        Error::Usage(UsageError::Size {
            flag: "--max-size",
            value: text.to_owned(),
            reason: super::size_reason(text, &e),
        })
    })
}

/// `30d`, `12h`, `90m`, `3600s`, `2w`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, Error> {
    crate::units::parse_duration(text)
        .ok_or_else(|| Error::Usage(UsageError::Duration(text.to_owned())))
}
