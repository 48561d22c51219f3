//! The layer tar stream: deterministic headers, file bytes straight from the content
//! generator, written in one pass through whatever hashing and sinks the caller stacks.

use std::io::{self, Write};

use tar::{EntryType, Header};

use crate::plan::{Entry, LayerPlan};
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
    // In closed form rather than by walking the plan: a million-file layer would otherwise
    // format every path twice. The spec parser has checked that this cannot overflow.
    let LayerSpec { size, files, .. } = plan.spec;
    let padded = |n: u64| n.div_ceil(BLOCK) * BLOCK;
    let (base, larger) = (size / files, size % files);
    let data = (files - larger) * padded(base) + larger * padded(base + 1);
    plan.dir_count() * BLOCK + files * BLOCK + data + 2 * BLOCK
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
    let mut buf = vec![0u8; CHUNK];
    let mut tar = TarWriter::new(out, options);
    for entry in plan.entries() {
        let file = match entry {
            Entry::Dir(path) => {
                tar.dir(&path)?;
                continue;
            }
            Entry::File(file) => file,
        };
        tar.begin_file(&file.path, file.size)?;
        let mut content = plan.content(seed, &file);
        while content.remaining() > 0 {
            let n = content.fill(&mut buf);
            tar.data(&buf[..n])?;
            tick(n as u64)?;
        }
        tar.end_file()?;
    }
    tar.finish()
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
        let h = header(path, 0, EntryType::Directory, self.options)?;
        self.out.write_all(h.as_bytes())
    }

    /// Starts a regular file of `size` bytes; its data follows through `data`.
    pub fn begin_file(&mut self, path: &str, size: u64) -> io::Result<()> {
        let h = header(path, size, EntryType::Regular, self.options)?;
        self.out.write_all(h.as_bytes())?;
        self.pending_pad = (BLOCK - size % BLOCK) % BLOCK;
        Ok(())
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
        ] {
            let spec = Spec::parse(list).expect("valid");
            let layer = &plan::layers(&spec)[0];
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
