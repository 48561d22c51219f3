//! Stands in for a user's crate: storage accounting of an OCI image layout, the kind of
//! code a registry or a pull-through cache has, tested against mock images.

use std::io;
use std::path::Path;

/// Bytes of all blobs in an OCI image layout.
pub fn blob_bytes(layout: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(layout.join("blobs/sha256"))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Number of blobs in an OCI image layout.
pub fn blob_count(layout: &Path) -> io::Result<usize> {
    Ok(std::fs::read_dir(layout.join("blobs/sha256"))?.count())
}
