//! The layer tar stream: deterministic headers, file bytes straight from the content
//! generator, written in one pass through whatever hashing and sinks the caller stacks.

use std::io::{self, Write};

use tar::{EntryType, Header};

use crate::plan::{Entry, FilePlan, LayerPlan, Measure};
use crate::spec::LayerSpec;

const BLOCK: u64 = 512;
/// Large enough to amortise per-write costs, small enough to stay in L2 between the
/// generator writing it and SHA-256 reading it.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Header fields that are the same for every entry of every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarOptions {
    /// Modification time of every entry: 0, or `SOURCE_DATE_EPOCH` when set.
    pub mtime: u64,
}

/// The exact size of the layer's tar: known before a byte is written, which lets sinks
/// reserve headers and report progress.
pub fn tar_size(plan: &LayerPlan) -> u64 {
    part_start(plan, plan.spec.files) + 2 * BLOCK
}

/// Where file `index`'s part of the tar starts (the directories it opens, its headers, data
/// and padding); the file count gives where the last part ends.
fn part_start(plan: &LayerPlan, index: u64) -> u64 {
    let LayerSpec { size, files, .. } = plan.spec;
    let padded = |n: u64| n.div_ceil(BLOCK) * BLOCK;
    if !plan.is_listed() {
        // In closed form: a flat layer's paths are short ASCII (one header block each) and
        // its sizes differ by one byte at most, so a million-file layer costs no walk.
        if index == 0 {
            return 0;
        }
        let (base, larger) = (size / files, size % files);
        let bigger = index.min(larger);
        let data = bigger * padded(base + 1) + (index - bigger) * padded(base);
        return BLOCK * (plan.dirs_before(index) + index) + data;
    }
    // A listing's sizes and paths (some behind PAX headers) are drawn: walk its entries.
    // Past the last file, the entries that follow it count too: the end of the tar.
    let mut offset = 0;
    let mut files_seen = 0;
    for entry in plan.measures().into_iter().flatten() {
        if files_seen == index && index < files {
            // The part of `index` starts after the previous file.
            break;
        }
        offset += measure_size(&entry);
        files_seen += u64::from(entry.file.is_some());
    }
    offset
}

fn measure_size(entry: &Measure<'_>) -> u64 {
    header_blocks(entry.path, entry.link) * BLOCK
        + entry.file.map_or(0, |n| n.div_ceil(BLOCK) * BLOCK)
}

/// The file whose part of the tar holds `offset`, and where that part starts: file 0's
/// starts the tar. A flat layer's is found by binary search over closed forms, a tree's by
/// a walk over its entries.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn locate(plan: &LayerPlan, offset: u64) -> (u64, u64) {
    let files = plan.spec.files;
    if !plan.is_listed() {
        // The last file whose part starts at or before `offset`.
        let (mut lo, mut hi) = (0, files - 1);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if part_start(plan, mid) <= offset {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return (lo, part_start(plan, lo));
    }
    let (mut start, mut at, mut index) = (0, 0, 0);
    for entry in plan.measures().into_iter().flatten() {
        at += measure_size(&entry);
        if entry.file.is_some() {
            if at > offset || index + 1 == files {
                return (index, start);
            }
            index += 1;
            start = at;
        }
    }
    (index.min(files - 1), start)
}

/// Writes the layer's tar to `out`. `tick` is called with the payload bytes of each chunk;
/// an error from it (an interrupt) stops the stream.
pub fn write_tar(
    plan: &LayerPlan,
    seed: &[u8; 32],
    options: TarOptions,
    out: &mut dyn Write,
    tick: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut buffered = Buffered {
        out,
        buf: vec![0u8; CHUNK],
    };
    write_tar_to(plan, seed, options, &mut buffered, tick)
}

/// [`write_tar`] into a writer that lends its memory: file data is generated where it goes.
pub(crate) fn write_tar_to(
    plan: &LayerPlan,
    seed: &[u8; 32],
    options: TarOptions,
    out: &mut dyn Out,
    tick: &mut dyn FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut tar = TarWriter::new(out, options);
    for entry in plan.entries_borrowed(0) {
        let Some(file) = tar.plan_entry(&entry)? else {
            continue;
        };
        let mut content = crate::content::FileContent::of(plan, seed, file);
        while content.remaining() > 0 {
            let want = usize::try_from(content.remaining()).map_or(CHUNK, |r| r.min(CHUNK));
            let n = content.fill(tar.out.room(want));
            tar.out.commit(n)?;
            tick(n as u64)?;
        }
        tar.end_file()?;
    }
    tar.finish()
}

/// Where a tar goes when it can lend its own memory for the next bytes, so that they are
/// made in place rather than copied in: a compressed layer's piece. In serve, copying a
/// GiB into pieces cost as much as making its random bytes.
pub(crate) trait Out: Write {
    /// Room for up to `want` of the next bytes: at least one when `want` is; the same room
    /// until `commit`.
    fn room(&mut self, want: usize) -> &mut [u8];
    /// The room's first `n` bytes are the next ones.
    fn commit(&mut self, n: usize) -> io::Result<()>;
}

/// Any writer, lent a buffer of its own.
pub(crate) struct Buffered<'a> {
    pub out: &'a mut dyn Write,
    pub buf: Vec<u8>,
}

impl Write for Buffered<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.out.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Out for Buffered<'_> {
    fn room(&mut self, want: usize) -> &mut [u8] {
        let n = want.min(self.buf.len());
        &mut self.buf[..n]
    }

    fn commit(&mut self, n: usize) -> io::Result<()> {
        self.out.write_all(&self.buf[..n])
    }
}

/// Writes tar entries: layers, the archive file and the stream into `docker load`.
pub(crate) struct TarWriter<W> {
    pub out: W,
    pub options: TarOptions,
    pending_pad: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, options: TarOptions) -> Self {
        Self {
            out,
            options,
            pending_pad: 0,
        }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, 0, EntryType::Directory, 0o755)
    }

    /// Writes the headers of a planned entry. For a regular file, returns it: its data
    /// follows through `data`, then `end_file`.
    pub fn plan_entry<'e>(&mut self, entry: &'e Entry) -> io::Result<Option<&'e FilePlan>> {
        match entry {
            Entry::Dir(path) => self.dir(path)?,
            Entry::File(file) => {
                self.begin_file_mode(&file.path, file.size, file.mode)?;
                return Ok(Some(file));
            }
            Entry::Symlink { path, target } => {
                self.link(path, target, EntryType::Symlink, 0o777)?;
            }
            Entry::Hardlink { path, target, mode } => {
                self.link(path, target, EntryType::Link, *mode)?;
            }
            Entry::Whiteout(path) => self.entry(path, 0, EntryType::Regular, 0o644)?,
        }
        Ok(None)
    }

    fn link(&mut self, path: &str, target: &str, kind: EntryType, mode: u32) -> io::Result<()> {
        self.entry_with_link(path, Some(target), 0, kind, mode)
    }

    /// Starts a regular file of `size` bytes; its data follows through `data`.
    pub fn begin_file(&mut self, path: &str, size: u64) -> io::Result<()> {
        self.begin_file_mode(path, size, 0o644)
    }

    /// [`begin_file`](Self::begin_file) with the permission bits `mode`.
    pub fn begin_file_mode(&mut self, path: &str, size: u64, mode: u32) -> io::Result<()> {
        self.entry(path, size, EntryType::Regular, mode)?;
        self.pending_pad = (BLOCK - size % BLOCK) % BLOCK;
        Ok(())
    }

    fn entry(&mut self, path: &str, size: u64, kind: EntryType, mode: u32) -> io::Result<()> {
        self.entry_with_link(path, None, size, kind, mode)
    }

    /// An entry's header: ustar, behind a PAX extended header when the path or the link
    /// target needs one.
    fn entry_with_link(
        &mut self,
        path: &str,
        link: Option<&str>,
        size: u64,
        kind: EntryType,
        mode: u32,
    ) -> io::Result<()> {
        let link_fits = link.is_none_or(|l| l.is_ascii() && l.len() <= 100);
        if let Some(records) = pax_records(path, link) {
            let h = header(
                PAX_NAME,
                records.len() as u64,
                EntryType::XHeader,
                self.options,
            )?;
            self.out.write_all(h.as_bytes())?;
            self.out.write_all(&records)?;
            let pad = (BLOCK - records.len() as u64 % BLOCK) % BLOCK;
            self.out.write_all(&[0; BLOCK as usize][..pad as usize])?;
            let name = if fits_ustar(path) {
                path.to_owned()
            } else {
                ustar_stand_in(path)
            };
            let mut h = header(&name, size, kind, self.options)?;
            if let Some(link) = link {
                let link = if link_fits {
                    link.to_owned()
                } else {
                    ustar_stand_in(link)
                };
                h.set_link_name(&link)?;
            }
            h.set_mode(mode);
            h.set_cksum();
            return self.out.write_all(h.as_bytes());
        }
        let mut h = header(path, size, kind, self.options)?;
        if let Some(link) = link {
            h.set_link_name(link)?;
        }
        h.set_mode(mode);
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    pub fn data(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)
    }

    /// Ends a file whose size `begin_file` did not know: pads after `size` bytes of data.
    pub fn end_file_of(&mut self, size: u64) -> io::Result<()> {
        self.pending_pad = (BLOCK - size % BLOCK) % BLOCK;
        self.end_file()
    }

    pub fn end_file(&mut self) -> io::Result<()> {
        let pad = std::mem::take(&mut self.pending_pad) as usize;
        self.out.write_all(&[0; BLOCK as usize][..pad])
    }

    pub fn file(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.begin_file(path, bytes.len() as u64)?;
        self.data(bytes)?;
        self.end_file()
    }

    /// The two zero blocks that end a tar.
    pub fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&[0; 2 * BLOCK as usize])?;
        self.out.flush()
    }

    /// Writes `files` and ends the tar.
    pub fn finish_with(&mut self, files: &[(String, Vec<u8>)]) -> io::Result<()> {
        for (path, bytes) in files {
            self.file(path, bytes)?;
        }
        self.finish()
    }
}

/// The name of every PAX extended header: fixed, where GNU tar's holds a process ID.
const PAX_NAME: &str = "././@PaxHeader";

/// The PAX records an entry at `path` needs, if any. ustar holds a path of at most 100
/// bytes, or 256 split at a `/` into 155 and 100; a longer one goes in a `path` record, as
/// POSIX.1-2001 has it. So does a non-ASCII one: ustar fields are bytes of no stated
/// encoding, PAX records are UTF-8. Sizes of 8 GiB and more need none: the tar crate writes
/// them in the ustar field in GNU's base-256 form, which GNU tar, Go's archive/tar
/// (docker, containerd, umoci) and the tar crate read.
fn pax_records(path: &str, link: Option<&str>) -> Option<Vec<u8>> {
    let mut records = Vec::new();
    if !fits_ustar(path) {
        records.extend(pax_record("path", path));
    }
    // A link target has one field of 100 bytes, with no prefix to split into.
    if let Some(link) = link.filter(|l| !l.is_ascii() || l.len() > 100) {
        records.extend(pax_record("linkpath", link));
    }
    (!records.is_empty()).then_some(records)
}

/// Whether ustar's name and prefix fields hold `path`: ASCII, and at most 100 bytes, or
/// split at a `/` into at most 155 and 100. The tar crate's own check, without its
/// allocations: this runs for every entry, twice.
fn fits_ustar(path: &str) -> bool {
    if !path.is_ascii() {
        return false;
    }
    let bytes = path.as_bytes();
    if bytes.len() <= 100 {
        return true;
    }
    if bytes.len() > 256 {
        return false;
    }
    // The name keeps the last component(s): split at the first `/` that leaves it 100
    // bytes or fewer, keeping the prefix to 155.
    bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| i)
        .find(|&i| bytes.len() - i - 1 <= 100)
        .is_some_and(|i| i <= 155 && i > 0 && i + 1 < bytes.len())
}

/// `"%d path=%s\n"`, the length counting its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// The ustar name of an entry whose real path is in a PAX record: readers that know PAX
/// never look at it, others get a name that is at least recognisable. Cut at a character
/// boundary, so it stays valid UTF-8.
fn ustar_stand_in(path: &str) -> String {
    let mut end = path.len().min(99);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path[..end].to_owned()
}

/// The tar blocks of an entry's headers: 1, and with a PAX header 1 more plus its records'.
pub(crate) fn header_blocks(path: &str, link: Option<&str>) -> u64 {
    1 + pax_records(path, link).map_or(0, |r| 1 + (r.len() as u64).div_ceil(BLOCK))
}

/// A ustar header with everything a build could vary pinned: owner 0:0, no user or group
/// names, fixed modes and mtime.
pub(crate) fn header(
    path: &str,
    size: u64,
    kind: EntryType,
    options: TarOptions,
) -> io::Result<Header> {
    let mut header = Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(options.mtime);
    header.set_device_major(0)?;
    header.set_device_minor(0)?;
    header.set_cksum();
    Ok(header)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::plan;
    use crate::spec::Spec;
    use crate::spec::SpecHash as _;

    fn build(list: &str, mtime: u64) -> Vec<u8> {
        let spec = Spec::parse(list).expect("valid");
        let mut out = Vec::new();
        for layer in plan::layers(&spec) {
            let mut tar = Vec::new();
            write_tar(
                &layer,
                &spec.hash(),
                TarOptions { mtime },
                &mut tar,
                &mut |_| Ok(()),
            )
            .expect("in memory");
            assert_eq!(tar.len() as u64, tar_size(&layer));
            out.extend(tar);
        }
        out
    }

    #[test]
    fn tar_size_is_exact_for_every_layout() {
        for list in [
            "1B",
            "511B",
            "512B",
            "513B",
            "3KB:files=4",
            "1001B:files=10",
            "1KB:tree=1",
            "40B:tree=33",
            "1MB:tree=5000",
            "100KB:tree=600",
            "9000B:tree=4097",
            "100KB:tree=600:symlinks=9:hardlinks=5:dirs=4",
            "3KB:files=4:symlinks=3:hardlinks=2:dirs=1",
            "64KB:tree=40,2KB:whiteouts=6:symlinks=2",
        ] {
            let spec = Spec::parse(list).expect("valid");
            let layers = plan::layers(&spec);
            let layer = layers.last().expect("a layer");
            let mut out = std::io::sink();
            let mut counting = crate::digest::HashingWriter::new(&mut out);
            write_tar(
                layer,
                &spec.hash(),
                TarOptions { mtime: 0 },
                &mut counting,
                &mut |_| Ok(()),
            )
            .expect("in memory");
            let (blob, _) = counting.complete();
            assert_eq!(tar_size(layer), blob.size, "{list}");
            let dirs = layer
                .entries()
                .filter(|e| matches!(e, Entry::Dir(_)))
                .count();
            assert_eq!(layer.dir_count(), dirs as u64, "{list}");
        }
    }

    #[test]
    fn headers_are_deterministic() {
        let a = build("3KB:files=4,700B", 0);
        assert_eq!(a, build("3KB:files=4,700B", 0));
        assert_ne!(a, build("3KB:files=4,700B", 1_700_000_000));
        // Pinned, headers and data alike: a change to any header field shows up here.
        use sha2::Digest as _;
        assert_eq!(
            crate::digest::hex(&sha2::Sha256::digest(&a)),
            "f84b97d9a3e5e4f85f7d766d9013c3c30374ea35b50b69cdf080d5c25f74103d"
        );
        let dir_header = &a[..512];
        assert_eq!(&dir_header[..8], b"layer1/\0");
        assert_eq!(&dir_header[100..108], b"0000755\0");
        assert_eq!(&dir_header[257..265], b"ustar\x0000");
    }

    #[test]
    fn entries_are_sorted_with_pinned_metadata() {
        let spec = Spec::parse("3001B:files=3").expect("valid");
        let layer = &plan::layers(&spec)[0];
        let mut bytes = Vec::new();
        write_tar(
            layer,
            &spec.hash(),
            TarOptions { mtime: 42 },
            &mut bytes,
            &mut |_| Ok(()),
        )
        .expect("in memory");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("tar") {
            let mut entry = entry.expect("entry");
            let h = entry.header().clone();
            assert_eq!(
                (h.uid().ok(), h.gid().ok(), h.mtime().ok()),
                (Some(0), Some(0), Some(42))
            );
            assert_eq!(h.username().ok().flatten(), Some(""));
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("data");
            seen.push((path, h.mode().ok(), data.len()));
        }
        assert_eq!(
            seen,
            [
                ("layer1/".to_owned(), Some(0o755), 0),
                ("layer1/file-1".to_owned(), Some(0o644), 1001),
                ("layer1/file-2".to_owned(), Some(0o644), 1000),
                ("layer1/file-3".to_owned(), Some(0o644), 1000),
            ]
        );
    }

    /// A stream holding one header per `(path, size)` and no data: the readers below are
    /// asked for headers only, and skip the data they are told of.
    fn headers_only(entries: &[(&str, u64)], dir: &std::path::Path) -> std::path::PathBuf {
        use std::io::{Seek, SeekFrom};
        let path = dir.join("headers.tar");
        let file = std::fs::File::create(&path).expect("create");
        let mut tar = TarWriter::new(file, TarOptions { mtime: 0 });
        let mut headers = 0;
        for (name, size) in entries {
            tar.begin_file(name, *size).expect("header");
            headers += header_blocks(name, None);
            // A hole, not data: a 9 GiB file costs no disk.
            let skip = size.div_ceil(BLOCK) * BLOCK;
            tar.out.seek(SeekFrom::Current(skip as i64)).expect("seek");
            tar.pending_pad = 0;
        }
        tar.finish().expect("finish");
        let len = std::fs::metadata(&path).expect("metadata").len();
        let data: u64 = entries.iter().map(|(_, s)| s.div_ceil(BLOCK) * BLOCK).sum();
        assert_eq!(len, (headers + 2) * BLOCK + data);
        path
    }

    #[test]
    fn long_non_ascii_and_huge_entries_read_back_through_tar_and_gnu_tar() {
        let long = format!("layer1/{}/{}.log", "deep".repeat(40), "n".repeat(120));
        let unicode = "layer1/données/résumé-日本語.txt";
        let nine_gib = 9 << 30;
        let entries = [
            ("layer1/short", 3),
            (long.as_str(), 1),
            (unicode, 2),
            ("layer1/huge.bin", nine_gib),
        ];
        assert!(long.len() > 255);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = headers_only(&entries, dir.path());
        let mut archive = tar::Archive::new(std::fs::File::open(&path).expect("open"));
        // Seeking past the data, as the listing below does: nothing reads the 9 GiB hole.
        let seen: Vec<(String, u64)> = archive
            .entries_with_seek()
            .expect("tar")
            .map(|e| {
                let e = e.expect("entry");
                let name = e.path().expect("path").to_string_lossy().into_owned();
                (name, e.header().size().expect("size"))
            })
            .collect();
        let expected: Vec<(String, u64)> =
            entries.iter().map(|(p, s)| ((*p).to_owned(), *s)).collect();
        assert_eq!(seen, expected);
        // GNU tar, where installed (CI installs it with the base system).
        let Ok(out) = std::process::Command::new("tar")
            .args(["--utc", "-tvf"])
            .arg(&path)
            .output()
        else {
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (name, size) in entries {
            assert!(
                listing
                    .lines()
                    .any(|l| l.ends_with(name) && l.contains(&format!(" {size} "))),
                "{name} ({size} bytes) not in:\n{listing}"
            );
        }
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value in ["a", &"b".repeat(93), &"c".repeat(94), &"d".repeat(994)] {
            let record = pax_record("path", value);
            let text = String::from_utf8(record.clone()).expect("utf8");
            let (len, _) = text.split_once(' ').expect("length");
            assert_eq!(
                len.parse::<usize>().expect("number"),
                record.len(),
                "{text}"
            );
        }
        assert_eq!(pax_records("layer1/file-1", None), None);
        assert!(pax_records(&"x/".repeat(200), None).is_some());
        assert!(pax_records("a", Some(&"t".repeat(101))).is_some());
        assert_eq!(ustar_stand_in(&"é".repeat(60)).len(), 98);
    }

    #[test]
    fn file_bytes_come_from_the_content_generator() {
        let spec = Spec::parse("1000B").expect("valid");
        let layer = &plan::layers(&spec)[0];
        let mut bytes = Vec::new();
        write_tar(
            layer,
            &spec.hash(),
            TarOptions { mtime: 0 },
            &mut bytes,
            &mut |_| Ok(()),
        )
        .expect("in memory");
        let mut expected = vec![0; 1000];
        crate::content::FileContent::new(&spec.hash(), 1, 0, 1000).fill(&mut expected);
        assert_eq!(&bytes[1024..2024], expected.as_slice());
    }
}
