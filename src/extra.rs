//! The entries of a layer beyond its regular files: empty directories, symbolic links,
//! hard links and whiteouts, drawn into the layer's listing before it is sorted into tar
//! order. Like the tree, they follow from the spec alone.

use std::collections::HashSet;

use rand_chacha::ChaCha8Rng;

use crate::entry::Entry;
use crate::rootfs::{OPAQUE, WHITEOUT};
use crate::spec::Extra;
use crate::tree::{self, below, EXTENSIONS, FILE_STEMS};

/// Names of empty directories, as package managers and base images leave them.
const EMPTY_NAMES: &[&str] = &[
    "tmp", "run", "mnt", "srv", "partial", "lock", "spool", "backups", "empty", "media",
];

/// Adds `extra`'s entries to `entries`, the listing of the layer whose top directory is
/// `top`. `lower` holds what the layers below leave (tar-form paths, sorted bytewise, their
/// top directories left out): what symlinks may point into and whiteouts may delete.
pub(crate) fn add(entries: &mut Vec<Entry>, top: &str, key: &str, extra: &Extra, lower: &[String]) {
    if extra.total() == 0 {
        return;
    }
    let mut rng = tree::rng("image-maker extra v1", key);
    let mut taken: HashSet<String> = entries
        .iter()
        .map(|e| e.path().trim_end_matches('/').to_owned())
        .collect();
    let dirs: Vec<String> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Dir(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    let (files, modes): (Vec<String>, Vec<u32>) = entries
        .iter()
        .filter_map(|e| match e {
            Entry::File(f) => Some((f.path.clone(), f.mode)),
            _ => None,
        })
        .unzip();

    for _ in 0..extra.dirs {
        let parent = &dirs[below(&mut rng, dirs.len())];
        let name = EMPTY_NAMES[below(&mut rng, EMPTY_NAMES.len())];
        let path = unique(&mut taken, &format!("{parent}{name}"));
        entries.push(Entry::Dir(format!("{path}/")));
    }

    let longest = files.iter().max_by_key(|f| f.len()).cloned();
    for k in 0..extra.symlinks {
        let dir = &dirs[below(&mut rng, dirs.len())];
        let stem = FILE_STEMS[below(&mut rng, FILE_STEMS.len())];
        let ext = EXTENSIONS[below(&mut rng, EXTENSIONS.len())];
        let own = &files[below(&mut rng, files.len())];
        let target = match k % 4 {
            // The first points at the layer's longest path, which may pass ustar's 100
            // bytes of link name.
            0 if k == 0 => format!("/{}", longest.as_deref().unwrap_or(own)),
            0 => relative(dir, own),
            // Into a lower layer, absolute; the first layer's point at their own files.
            1 => match lower.iter().filter(|p| !p.ends_with('/')).count() {
                0 => format!("/{own}"),
                n => {
                    let pick = below(&mut rng, n);
                    let path = lower.iter().filter(|p| !p.ends_with('/')).nth(pick);
                    format!("/{}", path.map_or(own.as_str(), String::as_str))
                }
            },
            // Dangling: no generator makes a `missing` directory.
            2 => format!("../missing/{stem}{ext}"),
            // A directory of the layer, relative.
            _ => {
                let to = &dirs[below(&mut rng, dirs.len())];
                relative(dir, to.trim_end_matches('/'))
            }
        };
        let path = unique(&mut taken, &format!("{dir}{stem}{ext}"));
        entries.push(Entry::Symlink { path, target });
    }

    for k in 0..extra.hardlinks {
        let at = below(&mut rng, files.len());
        let target = files[at].clone();
        let path = unique(&mut taken, &format!("{target}.link{}", k + 1));
        entries.push(Entry::Hardlink {
            path,
            target,
            mode: modes[at],
        });
    }

    if extra.whiteouts > 0 {
        whiteouts(entries, top, &mut rng, extra.whiteouts, lower);
    }
}

/// `base`, or `base2`, `base3`… whichever is free; taken on return.
fn unique(taken: &mut HashSet<String>, base: &str) -> String {
    let mut path = base.to_owned();
    let mut n = 2;
    while !taken.insert(path.clone()) {
        path = format!("{base}{n}");
        n += 1;
    }
    path
}

/// The relative path from directory `from` (ending in `/`) to `to`.
fn relative(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.trim_end_matches('/').split('/').collect();
    let to_parts: Vec<&str> = to.split('/').collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend(&to_parts[common..]);
    if parts.is_empty() {
        return ".".to_owned();
    }
    parts.join("/")
}

/// Draws `count` whiteouts of `lower`'s entries, the first an opaque directory when there
/// are two or more, and adds them with the directories that hold them. No target lies
/// below another, or below the opaque directory, or above either: each entry is deleted
/// once, and no directory this layer declares is one it deletes.
fn whiteouts(
    entries: &mut Vec<Entry>,
    top: &str,
    rng: &mut ChaCha8Rng,
    count: u64,
    lower: &[String],
) {
    let n = lower.len();
    // Where each entry's subtree ends: for a directory, the first path after it that does
    // not start with it (the list is sorted, so its subtree is contiguous).
    let mut end = vec![0; n];
    let mut open: Vec<usize> = Vec::new();
    for i in 0..=n {
        while let Some(&d) = open.last() {
            if i < n && lower[i].starts_with(lower[d].as_str()) {
                break;
            }
            end[d] = i;
            open.pop();
        }
        if i < n {
            end[i] = i + 1;
            if lower[i].ends_with('/') {
                open.push(i);
            }
        }
    }
    let mut removed = vec![false; n];
    let mut left = n;
    let ancestors = |i: usize| -> Vec<usize> {
        let path = lower[i].trim_end_matches('/');
        path.match_indices('/')
            .filter_map(|(at, _)| lower.binary_search(&path[..=at].to_owned()).ok())
            .collect()
    };
    // Takes entry `i`, its subtree and its ancestors out of the draw.
    let take = |i: usize, removed: &mut Vec<bool>, left: &mut usize| {
        for j in (i..end[i]).chain(ancestors(i)) {
            if !removed[j] {
                removed[j] = true;
                *left -= 1;
            }
        }
    };
    let cost = |i: usize, removed: &[bool]| -> usize {
        (i..end[i])
            .chain(ancestors(i))
            .filter(|&j| !removed[j])
            .count()
    };

    let mut chosen: Vec<(usize, bool)> = Vec::new();
    let mut wanted = usize::try_from(count).unwrap_or(usize::MAX);
    if wanted >= 2 {
        // The opaque directory: one with something in it, that leaves enough for the rest.
        let dirs: Vec<usize> = (0..n).filter(|&i| lower[i].ends_with('/')).collect();
        let fits: Vec<usize> = dirs
            .iter()
            .copied()
            .filter(|&i| end[i] > i + 1 && n - cost(i, &removed) >= wanted - 1)
            .collect();
        let pick = if fits.is_empty() {
            dirs.iter().copied().min_by_key(|&i| cost(i, &removed))
        } else {
            Some(fits[below(rng, fits.len())])
        };
        if let Some(i) = pick {
            take(i, &mut removed, &mut left);
            chosen.push((i, true));
            wanted -= 1;
        }
    }
    let all_dirs: Vec<usize> = (0..n).filter(|&i| lower[i].ends_with('/')).collect();
    // With three or more, one deletes a whole directory, if one fits.
    if wanted >= 2 && !all_dirs.is_empty() {
        let pick = (0..64)
            .map(|_| all_dirs[below(rng, all_dirs.len())])
            .find(|&i| !removed[i] && left - cost(i, &removed) >= wanted - 1);
        if let Some(i) = pick {
            take(i, &mut removed, &mut left);
            chosen.push((i, false));
            wanted -= 1;
        }
    }
    while wanted > 0 && left > 0 {
        // A few random draws, then a scan from a random start: whatever is left and
        // leaves enough for the whiteouts still to come.
        let acceptable =
            |i: usize, removed: &[bool]| !removed[i] && left - cost(i, removed) >= wanted - 1;
        let start = below(rng, n);
        let pick = (0..32)
            .map(|_| below(rng, n))
            .find(|&i| acceptable(i, &removed))
            .or_else(|| {
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| acceptable(i, &removed))
            })
            .or_else(|| (0..n).find(|&i| !removed[i]));
        let Some(i) = pick else { break };
        take(i, &mut removed, &mut left);
        chosen.push((i, false));
        wanted -= 1;
    }

    let mut declared: HashSet<String> = HashSet::new();
    for (i, opaque) in chosen {
        let path = lower[i].trim_end_matches('/');
        let entry = if opaque {
            format!("{path}/{OPAQUE}")
        } else {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            format!("{dir}/{WHITEOUT}{name}")
        };
        // The directories that hold it, as a layer's tar declares them before their
        // entries; they are the lower layers' own, mode and all.
        for (at, _) in entry.match_indices('/') {
            let dir = &entry[..=at];
            if declared.insert(dir.to_owned()) {
                entries.push(Entry::Dir(dir.to_owned()));
            }
        }
        entries.push(Entry::Whiteout(entry));
    }
    debug_assert!(!top.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_directory() {
        assert_eq!(relative("a/b/c/", "a/x/y"), "../../x/y");
        assert_eq!(relative("a/", "a/b"), "b");
        assert_eq!(relative("a/b/", "a/b"), ".");
        assert_eq!(relative("a/b/", "a"), "..");
    }

    #[test]
    fn whiteouts_are_disjoint_and_the_first_is_opaque() {
        let lower: Vec<String> = [
            "layer1/a/",
            "layer1/a/f1",
            "layer1/a/f2",
            "layer1/b/",
            "layer1/b/c/",
            "layer1/b/c/f3",
            "layer1/b/f4",
            "layer1/f5",
            "layer1/f6",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for seed in 0..20 {
            let mut entries = vec![Entry::Dir("layer2/".into())];
            let mut rng = tree::rng("test", &seed.to_string());
            whiteouts(&mut entries, "layer2", &mut rng, 4, &lower);
            let outs: Vec<&str> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Whiteout(p) => Some(p.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(outs.len(), 4, "{outs:?}");
            assert!(outs[0].ends_with(OPAQUE), "{outs:?}");
            // No whiteout's directory is deleted by another.
            let mut fs = crate::rootfs::Rootfs::default();
            fs.add("layer1/".to_owned(), ());
            for p in &lower {
                fs.add(p.clone(), ());
            }
            for out in &outs {
                let dir = &out[..=out.rfind('/').expect("a directory")];
                assert!(fs.get(dir).is_some(), "{dir} gone before {out}: {outs:?}");
                fs.apply_whiteout(out);
            }
        }
    }
}
