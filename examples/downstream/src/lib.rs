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

/// The user's own pull code: a manifest fetched over plain HTTP/1.1 from a registry at
/// `host` (`127.0.0.1:5000`), with the `Docker-Content-Digest` the registry sent.
pub fn fetch_manifest(host: &str, repository: &str, tag: &str) -> io::Result<(Vec<u8>, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "GET /v2/{repository}/manifests/{tag} HTTP/1.1\r\nHost: {host}\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(head));
    }
    let digest = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("docker-content-digest")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| io::Error::other("no Docker-Content-Digest"))?;
    Ok((response[split + 4..].to_vec(), digest))
}
