//! One pass over a layer blob: hash the bytes as stored (digest), decode them, hash the
//! tar (diff_id), walk its entries, and compare each with the plan when the spec is known.

use std::io::{self, Read};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Place};
use crate::digest::hex;
use crate::plan::{Entry, LayerPlan};

const CHUNK: usize = 256 * 1024;

/// What a layer holds, as read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerReport {
    /// The blob's digest, from its descriptor.
    pub digest: String,
    /// The blob's media type, from its descriptor.
    pub media_type: String,
    /// Bytes of the blob as stored.
    pub size: u64,
    /// Bytes of the tar once decoded.
    pub uncompressed_size: u64,
    /// The digest of the tar: the layer's `diff_id`.
    pub diff_id: String,
    /// Regular files, whiteouts left out.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic and hard links.
    pub links: u64,
    /// `.wh.` entries, opaque markers included.
    pub whiteouts: u64,
}

/// How a blob's bytes are encoded, by media type or by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Tar,
    Gzip,
    Zstd,
}

impl Encoding {
    /// The encoding a layer media type names; `None` for a type that is not a known layer.
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        use crate::spec::Compression;
        crate::media_types::layer_encoding(media_type).map(|(compression, _)| match compression {
            Compression::None => Self::Tar,
            Compression::Gzip => Self::Gzip,
            Compression::Zstd => Self::Zstd,
        })
    }

    /// What the first bytes of a blob say; `None` when they are neither compressed nor a tar.
    fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Self::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::Zstd)
        } else if head.get(257..262) == Some(b"ustar")
            || (head.len() == 512 && head.iter().all(|b| *b == 0))
        {
            Some(Self::Tar)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Tar => "a plain tar",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// What the spec says the layer holds, and the content seeds still in the running: the
/// platform's own and, until layer 1's first file tells them apart, the shared one.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    pub plan: &'a LayerPlan,
    pub seeds: &'a mut Vec<[u8; 32]>,
}

/// A reader that counts what passes, and hashes it unless told not to.
struct Hashing<R> {
    inner: R,
    hash: Option<Sha256>,
    count: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Some(Sha256::new()),
            count: 0,
        }
    }

    /// Counting only: for bytes another `Hashing` hashes already.
    fn counting(inner: R) -> Self {
        Self {
            inner,
            hash: None,
            count: 0,
        }
    }

    fn digest(&self) -> Option<String> {
        let hash = self.hash.clone()?;
        Some(format!("sha256:{}", hex(&hash.finalize())))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hash) = &mut self.hash {
            hash.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Where reading stopped when something went wrong inside the tar.
struct Stop {
    place: Option<Place>,
    kind: StopKind,
}

enum StopKind {
    /// The bytes differ from the plan: compare the blob's size first, then say this.
    Mismatch {
        what: String,
        expected: String,
        found: String,
    },
    /// The data ended early, or did not parse.
    Broken(String),
}

/// Reads the layer blob `raw`, `number` (1-based) of its manifest, described by `digest`,
/// `media_type` and `size`. `strict` (verify) makes every difference an error; without
/// it (inspect) only what stops the reading is one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read(
    raw: &mut dyn Read,
    number: usize,
    digest: &str,
    media_type: &str,
    size: u64,
    diff_id: Option<&str>,
    expected: Option<Expected<'_>>,
    strict: bool,
) -> Result<LayerReport, crate::Error> {
    let mismatch = |place, what: &str, expected: String, found: String| -> crate::Error {
        ImageError::Mismatch {
            blob: digest.to_owned(),
            place,
            what: what.to_owned(),
            expected,
            found,
        }
        .into()
    };
    let declared = Encoding::of_media_type(media_type);
    if declared.is_none() && strict {
        return Err(mismatch(
            None,
            "media type",
            "a layer type (`application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]`, or Docker's)"
                .into(),
            format!("`{media_type}`"),
        ));
    }
    let mut stored = Hashing::new(raw);
    let mut head = Vec::with_capacity(512);
    (&mut stored)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| broken(digest, None, e.to_string()))?;
    let sniffed = Encoding::sniff(&head);
    if strict && sniffed != declared {
        return Err(mismatch(
            None,
            "encoding",
            format!(
                "{} (its media type `{media_type}`)",
                declared.map_or("?", Encoding::name)
            ),
            sniffed.map_or("bytes that are neither gzip, zstd nor a tar".into(), |e| {
                e.name().to_owned()
            }),
        ));
    }
    let encoding = sniffed.or(declared).unwrap_or(Encoding::Tar);
    let mut report = LayerReport {
        digest: digest.to_owned(),
        media_type: media_type.to_owned(),
        ..LayerReport::default()
    };
    let outcome = {
        let joined = io::Cursor::new(head).chain(&mut stored);
        let decoded: Box<dyn Read + '_> = match encoding {
            Encoding::Tar => Box::new(joined),
            Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(joined)),
            Encoding::Zstd => Box::new(
                zstd::stream::read::Decoder::new(joined)
                    .map_err(|e| broken(digest, None, e.to_string()))?,
            ),
        };
        // A plain tar is the stored bytes themselves: its diff_id is the blob's digest,
        // hashed once, below.
        let mut tar = if encoding == Encoding::Tar {
            Hashing::counting(decoded)
        } else {
            Hashing::new(decoded)
        };
        let walked = walk(&mut tar, number, &mut report, expected);
        // The rest of the stream after the tar's end: the diff_id covers all of it.
        let drained = walked.and_then(|()| {
            io::copy(&mut tar, &mut io::sink())
                .map(drop)
                .map_err(|e| Stop {
                    place: Some(Place {
                        layer: number,
                        path: None,
                        offset: None,
                    }),
                    kind: StopKind::Broken(e.to_string()),
                })
        });
        report.uncompressed_size = tar.count;
        report.diff_id = tar.digest().unwrap_or_default();
        drained
    };
    // Whatever the decoder left: the digest covers every stored byte.
    let rest = io::copy(&mut stored, &mut io::sink());
    report.size = stored.count;
    let stored_digest = stored.digest().unwrap_or_default();
    if encoding == Encoding::Tar {
        report.diff_id = stored_digest.clone();
    }
    if let Err(stop) = outcome {
        // A short blob explains any trouble inside it; say that first.
        if stored.count != size {
            return Err(mismatch(
                stop.place,
                "size",
                format!("{size} bytes"),
                format!("{} bytes (the blob is cut short or too long)", stored.count),
            ));
        }
        return Err(match stop.kind {
            StopKind::Mismatch {
                what,
                expected,
                found,
            } => mismatch(stop.place, &what, expected, found),
            StopKind::Broken(detail) => broken(digest, stop.place, detail),
        });
    }
    rest.map_err(|e| broken(digest, None, e.to_string()))?;
    if strict {
        if stored.count != size {
            return Err(mismatch(
                None,
                "size",
                format!("{size} bytes"),
                format!("{} bytes", stored.count),
            ));
        }
        let actual = stored_digest;
        if actual != digest {
            return Err(mismatch(None, "digest", digest.to_owned(), actual));
        }
        if let Some(diff_id) = diff_id {
            if report.diff_id != diff_id {
                return Err(mismatch(
                    None,
                    "diff_id (the digest of the decoded tar; the config's rootfs.diff_ids)",
                    diff_id.to_owned(),
                    report.diff_id.clone(),
                ));
            }
        }
    }
    Ok(report)
}

fn broken(digest: &str, place: Option<Place>, detail: String) -> crate::Error {
    ImageError::Malformed {
        blob: digest.to_owned(),
        place,
        detail,
    }
    .into()
}

/// Walks the tar's entries, counting them, and comparing them with `expected`.
fn walk(
    tar: &mut dyn Read,
    number: usize,
    report: &mut LayerReport,
    mut expected: Option<Expected<'_>>,
) -> Result<(), Stop> {
    let at = |path: Option<&str>, offset: Option<u64>| {
        Some(Place {
            layer: number,
            path: path.map(str::to_owned),
            offset,
        })
    };
    let stop = |place, e: io::Error| Stop {
        place,
        kind: StopKind::Broken(e.to_string()),
    };
    let differ = |place, what: &str, expected: String, found: String| Stop {
        place,
        kind: StopKind::Mismatch {
            what: what.to_owned(),
            expected,
            found,
        },
    };
    let mut plan = expected.as_ref().map(|e| e.plan.entries());
    let mut archive = tar::Archive::new(tar);
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(|e| stop(at(None, None), e))?;
    let mut buf = vec![0; CHUNK];
    for entry in entries {
        let mut entry = entry.map_err(|e| stop(at(last.as_deref(), None), e))?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let size = entry.size();
        let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if name.starts_with(".wh.") {
            report.whiteouts += 1;
        } else if kind.is_dir() {
            report.dirs += 1;
        } else if kind.is_symlink() || kind.is_hard_link() {
            report.links += 1;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            report.files += 1;
        }
        last = Some(path.clone());
        let Some(plan) = plan.as_mut() else {
            // Read, not skipped: a short blob shows as such, with the entry it ends in.
            read_data(&mut entry, size, &path, &mut buf, at)?;
            continue;
        };
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let found = match &link {
            Some(target) if kind.is_symlink() || kind.is_hard_link() => {
                format!("{} to `{target}`", describe(kind, size))
            }
            _ => describe(kind, size),
        };
        let Some(want) = plan.next() else {
            return Err(differ(
                at(Some(&path), None),
                "entry",
                "the end of the layer".into(),
                format!("`{path}` ({found})"),
            ));
        };
        let same = want.path() == path
            && match &want {
                Entry::Dir(_) => kind.is_dir(),
                Entry::File(f) => {
                    (kind.is_file() || kind == tar::EntryType::Continuous) && f.size == size
                }
                Entry::Whiteout(_) => kind.is_file() && size == 0,
                Entry::Symlink { target, .. } => {
                    kind.is_symlink() && link.as_deref() == Some(target.as_str())
                }
                Entry::Hardlink { target, .. } => {
                    kind.is_hard_link() && link.as_deref() == Some(target.as_str())
                }
            };
        if !same {
            return Err(differ(
                at(Some(&path), None),
                "entry",
                expected_entry(&want),
                format!("`{path}` ({found})"),
            ));
        }
        let file = match want {
            Entry::File(file) => Some(file),
            _ => None,
        };
        match (file, expected.as_mut()) {
            (Some(file), Some(expected)) => {
                compare_file(&mut entry, expected, &file, &mut buf, number)?
            }
            _ => read_data(&mut entry, size, &path, &mut buf, at)?,
        }
    }
    if let Some(missing) = plan.as_mut().and_then(Iterator::next) {
        return Err(differ(
            at(None, None),
            "entry",
            expected_entry(&missing),
            "the end of the layer".into(),
        ));
    }
    Ok(())
}

/// A planned entry as a mismatch names it.
fn expected_entry(entry: &Entry) -> String {
    let what = match entry {
        Entry::Dir(_) => "a directory".into(),
        Entry::File(f) => describe(tar::EntryType::Regular, f.size),
        Entry::Whiteout(_) => "a whiteout".into(),
        Entry::Symlink { target, .. } => format!("a symlink to `{target}`"),
        Entry::Hardlink { target, .. } => format!("a hard link to `{target}`"),
    };
    format!("`{}` ({what})", entry.path())
}

fn describe(kind: tar::EntryType, size: u64) -> String {
    match kind {
        k if k.is_dir() => "a directory".into(),
        k if k.is_file() => format!("a file of {size} bytes"),
        k if k.is_symlink() => "a symlink".into(),
        k if k.is_hard_link() => "a hard link".into(),
        k => format!("an entry of type {:?}", k.as_byte() as char),
    }
}

/// Reads an entry's data to its end; a short read is a cut-off blob.
fn read_data(
    entry: &mut dyn Read,
    size: u64,
    path: &str,
    buf: &mut [u8],
    at: impl Fn(Option<&str>, Option<u64>) -> Option<Place>,
) -> Result<(), Stop> {
    let mut offset = 0;
    while offset < size {
        let n = entry.read(buf).map_err(|e| Stop {
            place: at(Some(path), Some(offset)),
            kind: StopKind::Broken(e.to_string()),
        })?;
        if n == 0 {
            return Err(Stop {
                place: at(Some(path), Some(offset)),
                kind: StopKind::Broken(format!("the data ends after {offset} of {size} bytes")),
            });
        }
        offset += n as u64;
    }
    Ok(())
}

/// Compares a file's bytes with what each seed still in the running generates. A seed
/// whose bytes differ drops out; when none is left, the one that matched longest names the
/// first wrong byte.
fn compare_file(
    entry: &mut dyn Read,
    expected: &mut Expected<'_>,
    file: &crate::plan::FilePlan,
    buf: &mut [u8],
    number: usize,
) -> Result<(), Stop> {
    let place = |offset| {
        Some(Place {
            layer: number,
            path: Some(file.path.clone()),
            offset: Some(offset),
        })
    };
    let mut generators: Vec<_> = expected
        .seeds
        .iter()
        .map(|seed| {
            (
                *seed,
                crate::content::FileContent::of(expected.plan, seed, file),
            )
        })
        .collect();
    // An entry reads no more than its size: a small file needs no full chunk zeroed.
    let mut want = vec![0; usize::try_from(file.size).map_or(buf.len(), |s| s.min(buf.len()))];
    let mut offset = 0u64;
    let mut best: Option<(u64, u8, u8)> = None;
    while offset < file.size {
        let n = entry.read(&mut buf[..want.len()]).map_err(|e| Stop {
            place: place(offset),
            kind: StopKind::Broken(e.to_string()),
        })?;
        if n == 0 {
            return Err(Stop {
                place: place(offset),
                kind: StopKind::Broken(format!(
                    "the data ends after {offset} of {} bytes",
                    file.size
                )),
            });
        }
        let got = &buf[..n];
        generators.retain_mut(|(_, content)| {
            content.fill(&mut want[..n]);
            // Equal slices compare vectorised; the byte search runs only on a difference.
            if want[..n] == *got {
                return true;
            }
            match want[..n].iter().zip(got).position(|(a, b)| a != b) {
                None => true,
                Some(i) => {
                    let at = offset + i as u64;
                    if best.is_none_or(|(b, _, _)| at > b) {
                        best = Some((at, want[i], got[i]));
                    }
                    false
                }
            }
        });
        if generators.is_empty() {
            let (at, want, got) = best.unwrap_or((offset, 0, 0));
            return Err(Stop {
                place: place(at),
                kind: StopKind::Mismatch {
                    what: "file data".into(),
                    expected: format!("byte 0x{want:02x}"),
                    found: format!("0x{got:02x}"),
                },
            });
        }
        offset += n as u64;
    }
    // The seed is settled by the first file that tells the candidates apart.
    *expected.seeds = generators.into_iter().map(|(seed, _)| seed).collect();
    Ok(())
}
