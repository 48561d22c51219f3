//! `image-maker … --dry-run`: the plan the library works out, for people or as JSON. The
//! plan is the command's data, so it goes to stdout; a build that would not fit ends with
//! the error on stderr and exit code 1, after the plan.

use std::fmt::Write as _;

use super::{print_json, print_stdout, Args, CliError};
use crate::estimate::{self, BlobSize, DryRun, LayerEstimate, Options};
use crate::units::human_size;

/// Checks and plans the build `args` describe; writes nothing.
pub fn run(args: &Args) -> Result<(), CliError> {
    let request = args.on_base(args.request()?, &mut crate::Progress::hidden())?;
    let options = Options {
        // `-v` lists every entry; otherwise a few show what the paths look like.
        entries: if args.verbose { usize::MAX } else { 5 },
        use_cache: !args.no_cache,
    };
    let plan = estimate::plan(&request, &options)?;
    if args.json {
        print_json(&plan)?;
    } else {
        print_stdout(&text(&plan))?;
    }
    match plan.shortfall() {
        None => Ok(()),
        Some(space) => Err(CliError::DoesNotFit {
            path: space.path.clone(),
            uses: space.uses.clone(),
            needed: space.needed,
            free: space.free.unwrap_or(0),
        }),
    }
}

/// `1073742848 B (1.00 GiB)`: exact bytes for scripts and eyes alike.
fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        format!("{n} B ({})", human_size(n))
    }
}

fn blob(size: &BlobSize, encoding: &str) -> String {
    match (size.exact, size.expected) {
        (Some(exact), _) => format!("blob {}", bytes(exact)),
        (None, Some(expected)) => format!(
            "blob about {} expected (content ratio), at most {}: {encoding} size is known only once encoded",
            bytes(expected),
            bytes(size.at_most)
        ),
        (None, None) => format!(
            "blob at most {}: {encoding} size is known only once encoded (random data barely shrinks)",
            bytes(size.at_most)
        ),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn layer(out: &mut String, layer: &LayerEstimate) {
    let mut kinds = String::new();
    for (count, one, many) in [
        (layer.symlinks, "symlink", "symlinks"),
        (layer.hardlinks, "hard link", "hard links"),
        (layer.whiteouts, "whiteout", "whiteouts"),
    ] {
        if count > 0 {
            kinds.push_str(&format!(", {}", plural(count, one, many)));
        }
    }
    let _ = writeln!(
        out,
        "  layer {}: {} in {}, {}, {}{kinds}, {}",
        layer.number,
        human_size(layer.payload),
        plural(layer.files, "file", "files"),
        layer.layout,
        plural(layer.dirs, "directory", "directories"),
        match layer.encoding {
            "none" => "uncompressed",
            other => other,
        }
    );
    let _ = writeln!(
        out,
        "    tar {}, {}",
        bytes(layer.tar_size),
        blob(&layer.blob, layer.encoding)
    );
    for entry in &layer.entries {
        let _ = writeln!(out, "    {entry}");
    }
    let more = layer.entry_count.saturating_sub(layer.entries.len() as u64);
    if more > 0 {
        let _ = writeln!(out, "    … {more} more (-v lists them all)");
    }
}

fn text(plan: &DryRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run: {} for {}; nothing is written",
        plan.reference,
        plan.platforms.join(",")
    );
    let _ = writeln!(out, "spec: {}", plan.spec);
    if let Some(base) = &plan.base {
        let _ = writeln!(
            out,
            "base: {} ({}), {} layer blob{}, {}, copied as they are",
            base.source,
            base.digest,
            base.layers,
            if base.layers == 1 { "" } else { "s" },
            bytes(base.bytes)
        );
    }
    for set in &plan.layer_sets {
        let _ = writeln!(out, "layers of {}:", set.platforms.join(", "));
        for l in &set.layers {
            layer(&mut out, l);
        }
    }
    let _ = writeln!(
        out,
        "metadata (configs, manifests, index): {}",
        bytes(plan.metadata)
    );
    if !plan.outputs.is_empty() {
        let _ = writeln!(out, "outputs:");
    }
    for need in &plan.outputs {
        let what = match need.output.as_str() {
            "engine" => "stored, uncompressed",
            "registry" => "uploaded",
            "cache" => "new cache entry",
            "staging" => "layout staged for the push",
            "build context" => "layer files and Dockerfile",
            _ => "written",
        };
        let _ = writeln!(
            out,
            "  {}: {} {} {what}{}",
            need.output,
            match (need.exact, need.output.as_str()) {
                (true, _) => "exactly",
                (false, "engine") => "about",
                (false, _) => "at most",
            },
            bytes(need.bytes),
            need.path
                .as_ref()
                .map(|p| format!(" in {}", p.display()))
                .unwrap_or_default()
        );
    }
    if !plan.space.is_empty() {
        let _ = writeln!(out, "space:");
    }
    for space in &plan.space {
        let free = match space.free {
            Some(free) => bytes(free),
            None => "unknown".into(),
        };
        let verdict = match (space.fits, space.free) {
            (true, Some(_)) => "fits".to_owned(),
            (true, None) => "not checked".to_owned(),
            (false, free) => format!(
                "DOES NOT FIT, {} short",
                human_size(space.needed.saturating_sub(free.unwrap_or(0)))
            ),
        };
        let _ = writeln!(
            out,
            "  {} ({}): needs {}, free {free}: {verdict}",
            space.path.display(),
            space.uses,
            bytes(space.needed)
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if plan.fits {
            "the build fits"
        } else {
            "the build does not fit"
        }
    );
    out
}
