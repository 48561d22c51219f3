//! The `run` entry: a layer holding our own static entrypoint (`src/runnable/*.s`, a few KB
//! per platform, built by `src/runnable/build.sh`), and the list of the image's files it
//! reads before it says it is ready.
//!
//! The layer holds the program for every platform it is built for, so that it is one blob
//! in every image of an index; each platform's config names its own.

use std::sync::Arc;

use crate::entry::{Entry, FilePlan};
use crate::platform::Platform;
use crate::rootfs::Rootfs;
use crate::spec::{Run, Spec};

/// The layer's top directory.
pub(crate) const DIR: &str = ".image-maker";
/// The list of files the program reads, one absolute path per line.
const LIST: &str = ".image-maker/read-list";

/// The programs by architecture, with their paths in the layer.
const PROGRAMS: [(&str, &str, &[u8]); 2] = [
    (
        "amd64",
        ".image-maker/ready-amd64",
        include_bytes!("runnable/ready-amd64"),
    ),
    (
        "arm64",
        ".image-maker/ready-arm64",
        include_bytes!("runnable/ready-arm64"),
    ),
];

/// What the cache key hashes for an image with a `run` entry: the programs' bytes and the
/// list's form, so that a new program is a new image rather than an old cached one.
pub(crate) fn key() -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for (_, path, bytes) in PROGRAMS {
        hash.update(path.as_bytes());
        hash.update(bytes);
    }
    // Bumped when the read list's form or order changes.
    hash.update(b"read list v1");
    crate::digest::hex(&hash.finalize())
}

/// A platform the program is not built for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`run` has no entrypoint program for platform `{0}`")]
pub struct Unsupported(pub String);

impl Unsupported {
    /// What to do instead.
    pub fn hint(&self) -> &'static str {
        "the runnable program is built for linux/amd64 and linux/arm64; build other platforms without `run` (`--runnable`), or add a program of your own as the entrypoint"
    }
}

fn program(platform: &Platform) -> Option<&'static (&'static str, &'static str, &'static [u8])> {
    let arm64_variant = matches!(platform.variant.as_deref(), None | Some("v8"));
    PROGRAMS.iter().find(|(arch, _, _)| {
        platform.os == "linux"
            && platform.architecture == *arch
            && (*arch == "amd64" && platform.variant.is_none() || *arch == "arm64" && arm64_variant)
    })
}

/// Refuses a `run` spec for a platform the program is not built for.
pub fn check(spec: &Spec, platforms: &[Platform]) -> Result<(), Unsupported> {
    if spec.layers().iter().all(|l| l.run.is_none()) {
        return Ok(());
    }
    match platforms.iter().find(|p| program(p).is_none()) {
        Some(p) => Err(Unsupported(p.to_string())),
        None => Ok(()),
    }
}

/// The entrypoint of `spec`'s image for `platform`: the program, its ready line and, when
/// it reads, the list. `None` without a `run` entry or for a platform without a program
/// (which [`check`] refuses first).
pub(crate) fn entrypoint(spec: &Spec, platform: &Platform) -> Option<Vec<String>> {
    argv(&spec.layers().iter().find_map(|l| l.run)?, platform)
}

/// The entrypoint of a `run` entry with `run`'s options, for `platform`.
pub(crate) fn argv(run: &Run, platform: &Platform) -> Option<Vec<String>> {
    let (_, path, _) = program(platform)?;
    let mut argv = vec![format!("/{path}"), run.ready.to_string()];
    if run.read > 0 {
        argv.push(format!("/{LIST}"));
    }
    Some(argv)
}

/// The bytes of the files a listed layer holds when they are given rather than generated,
/// by file index.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Given(pub Vec<Arc<[u8]>>);

impl std::fmt::Debug for Given {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<usize> = self.0.iter().map(|b| b.len()).collect();
        write!(f, "Given({sizes:?})")
    }
}

/// The `run` layer's entries, in no order, and their bytes by path. `files` are the paths
/// of the image's other regular files, in tar order, as its unpack leaves them.
pub(crate) fn entries(run: &Run, files: Vec<String>, key: &str) -> Vec<(Entry, Arc<[u8]>)> {
    let mut out: Vec<(Entry, Arc<[u8]>)> =
        vec![(Entry::Dir(format!("{DIR}/")), Arc::from(&[][..]))];
    let file = |path: &str, mode: u32, bytes: Arc<[u8]>| {
        (
            Entry::File(FilePlan {
                index: 0,
                path: path.to_owned(),
                size: bytes.len() as u64,
                mode,
            }),
            bytes,
        )
    };
    for (_, path, bytes) in PROGRAMS {
        out.push(file(path, 0o755, Arc::from(bytes)));
    }
    if run.read > 0 {
        let list = read_list(run, files, key);
        out.push(file(LIST, 0o644, Arc::from(list.into_bytes())));
    }
    out
}

/// `read` percent of `files` (rounded up), as absolute paths a line each: in tar order, or
/// shuffled by a generator keyed by `key` (the image's content) with `order=random`.
fn read_list(run: &Run, mut files: Vec<String>, key: &str) -> String {
    let keep = (files.len() * usize::from(run.read)).div_ceil(100);
    if keep < files.len() || run.random {
        let mut order: Vec<usize> = (0..files.len()).collect();
        // Fisher-Yates, with the trees' generator: the order is the spec's on every machine.
        let mut rng = crate::tree::rng("image-maker read list v1", key);
        for i in (1..order.len()).rev() {
            order.swap(i, crate::tree::below(&mut rng, i + 1));
        }
        order.truncate(keep);
        if !run.random {
            order.sort_unstable();
        }
        files = order
            .into_iter()
            .map(|i| std::mem::take(&mut files[i]))
            .collect();
    }
    let mut list = String::with_capacity(files.iter().map(|f| f.len() + 2).sum());
    for path in files {
        list.push('/');
        list.push_str(&path);
        list.push('\n');
    }
    list
}

/// The regular files an unpack of `entries` (every layer's, bottom first) leaves, in the
/// order the tars hold them.
pub(crate) fn surviving_files<'a>(layers: impl Iterator<Item = Vec<Entry>> + 'a) -> Vec<String> {
    let mut fs: Rootfs<u64> = Rootfs::default();
    let mut order = 0u64;
    for entries in layers {
        for entry in entries {
            match entry {
                Entry::Whiteout(path) => {
                    fs.apply_whiteout(&path);
                }
                Entry::File(file) => {
                    fs.add(file.path, order);
                    order += 1;
                }
                // Directories merge.
                Entry::Dir(_) => {}
                // A link over a file replaces it: not a file to read.
                link => {
                    fs.apply_whiteout(&whiteout_of(link.path()));
                }
            }
        }
    }
    let mut files: Vec<(u64, String)> = fs
        .iter()
        .filter(|(path, _)| !path.ends_with('/'))
        .map(|(path, order)| (*order, path.clone()))
        .collect();
    files.sort_unstable();
    files.into_iter().map(|(_, path)| path).collect()
}

/// The whiteout entry that deletes `path`.
fn whiteout_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}{name}", crate::rootfs::WHITEOUT),
        None => format!("{}{path}", crate::rootfs::WHITEOUT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_are_static_elf_executables_of_a_few_kb() {
        for (arch, _, bytes) in PROGRAMS {
            assert!(bytes.starts_with(b"\x7fELF\x02\x01\x01"), "{arch}");
            // e_type ET_EXEC: static, no interpreter.
            assert_eq!(bytes[16..18], [2, 0], "{arch}");
            assert!(bytes.len() < 4096, "{arch}: {}", bytes.len());
        }
    }

    #[test]
    fn platforms_without_a_program_are_refused() {
        let spec = Spec::parse("1KB,run").expect("valid");
        let parse = |p: &str| Platform::parse(p).expect("platform");
        assert!(check(&spec, &[parse("linux/amd64"), parse("linux/arm64/v8")]).is_ok());
        let e = check(&spec, &[parse("linux/amd64"), parse("linux/arm/v7")]).expect_err("arm");
        assert_eq!(
            e.to_string(),
            "`run` has no entrypoint program for platform `linux/arm/v7`"
        );
        assert!(check(&Spec::parse("1KB").expect("valid"), &[parse("linux/s390x")]).is_ok());
        assert_eq!(
            entrypoint(&spec, &parse("linux/arm64")),
            Some(vec![
                "/.image-maker/ready-arm64".to_owned(),
                "ready".to_owned()
            ])
        );
    }

    #[test]
    fn the_list_reads_a_share_in_tar_or_seeded_order() {
        let files: Vec<String> = (0..10).map(|i| format!("layer1/f{i}")).collect();
        let run = |read, random| Run {
            read,
            random,
            ..Run::default()
        };
        let all = read_list(&run(100, false), files.clone(), "k");
        assert_eq!(all.lines().count(), 10);
        assert!(all.starts_with("/layer1/f0\n/layer1/f1\n"));
        let some = read_list(&run(25, false), files.clone(), "k");
        let lines: Vec<&str> = some.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{some}");
        let shuffled = read_list(&run(100, true), files.clone(), "k");
        assert_ne!(shuffled, all);
        assert_eq!(shuffled, read_list(&run(100, true), files.clone(), "k"));
        let mut sorted: Vec<&str> = shuffled.lines().collect();
        sorted.sort_unstable();
        assert_eq!(sorted.join("\n") + "\n", all);
    }
}
