//! Writers that hash what passes through them and end in a descriptor.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// Whether `text` is a sha256 digest as the image spec writes them: `sha256:` and 64
/// lowercase hex digits.
pub(crate) fn is_sha256(text: &str) -> bool {
    sha256_hex(text).is_some()
}

/// The hex digits of a sha256 digest as the image spec writes them.
pub(crate) fn sha256_hex(text: &str) -> Option<&str> {
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// Hashes and counts every byte written, passing them on to `inner`.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Starts an empty blob written to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Ends the blob: its digest (`sha256:…`), its size, and the inner writer back.
    pub fn complete(self) -> (Blob, W) {
        let blob = Blob {
            digest: format!("sha256:{}", hex(&self.hasher.finalize())),
            size: self.size,
        };
        (blob, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A finished blob: what a descriptor needs but the media type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob {
    /// `sha256:` followed by 64 hex digits.
    pub digest: String,
    /// Length in bytes.
    pub size: u64,
}

impl Blob {
    /// Hashes a small in-memory blob (config, manifest).
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            digest: format!("sha256:{}", hex(&Sha256::digest(bytes))),
            size: bytes.len() as u64,
        }
    }

    /// Hashes the file at `path`, in chunks; stops with an error after Ctrl-C.
    pub fn of_file(path: &std::path::Path) -> io::Result<Self> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut hashing = HashingWriter::new(io::sink());
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hashing.complete().0);
            }
            hashing.write_all(&buf[..n])?;
            crate::interrupt::check().map_err(|_| io::Error::other("interrupted"))?;
        }
    }

    /// The 64 hex digits, as used in `blobs/sha256/<hex>`.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// `blobs/sha256/<hex>`, the blob's path in an OCI layout.
    pub fn layout_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }
}

/// Lowercase hex of `bytes`, as digests spell hashes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
