//! `verify --rootfs DIR --spec SPEC`: an unpacked root filesystem against the oracle
//! ([`crate::expect`]), read with std::fs alone, links never followed.
//!
//! Every path the oracle holds must be there with its type, mode bits, size, bytes and link
//! target. Below each top directory the oracle names (`layerN`), a path it lacks is an
//! extra: that is how a whiteout the unpacker did not apply shows. Anything else at the
//! top (an engine's `/etc`, `/dev`, `/proc`, `/.dockerenv`) is not the image's, and is left
//! alone.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::expect::{hex, Counts, Expected, Node, Origin};
use crate::Error;

/// Files are read in pieces of this size.
const CHUNK: usize = 256 << 10;

/// The first path where the directory differs from the oracle (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("`{path}` in `{}`: {what}: expected {expected}, found {found}", root.display())]
pub struct RootfsMismatch {
    /// The directory checked.
    pub root: PathBuf,
    /// The path relative to it, as the layers name it.
    pub path: String,
    /// What was compared: `entry`, `type`, `mode`, `size`, `byte N`, `link target`.
    pub what: String,
    /// What the spec's image holds there.
    pub expected: String,
    /// What the directory holds there.
    pub found: String,
}

impl RootfsMismatch {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        "the directory is not what the image unpacks to: the unpacker (or something after it) lost, changed or left this path — a whiteout not applied shows as an extra path; `image-maker expect SPEC` lists every expected entry".into()
    }
}

/// Checks `root` against `expected`; the first difference is the error.
///
/// ```no_run
/// use image_maker::{expect, verify_rootfs, Platform, Spec};
///
/// // After `umoci unpack --image oci:out:1 bundle`, say.
/// let expected = expect(&Spec::parse("5MB,2KB:files=3")?, &Platform::default(), false)?;
/// let counts = verify_rootfs("bundle/rootfs".as_ref(), &expected)?;
/// println!("{} files, {} directories", counts.files, counts.dirs);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_rootfs(root: &Path, expected: &Expected) -> Result<Counts, Error> {
    let meta = fs::symlink_metadata(root).map_err(Error::io("read", root))?;
    if !meta.is_dir() {
        return Err(mismatch(root, ".", "type", "a directory", kind(&meta)));
    }
    let mut buf = vec![0; CHUNK];
    for (path, node) in expected.fs.iter() {
        crate::interrupt::check()?;
        let rel = path.strip_suffix('/').unwrap_or(path);
        let full = root.join(rel);
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(mismatch(root, rel, "entry", describe(node), "nothing"));
            }
            Err(e) => return Err(Error::io("read", full)(e)),
        };
        check(root, rel, &full, &meta, node, expected, &mut buf)?;
    }
    for top in expected.tops() {
        extras(root, &top, expected)?;
    }
    Ok(expected.counts())
}

/// One path the oracle holds, found at `full`.
fn check(
    root: &Path,
    rel: &str,
    full: &Path,
    meta: &Metadata,
    node: &Node,
    expected: &Expected,
    buf: &mut [u8],
) -> Result<(), Error> {
    let same_type = match node {
        Node::Dir { .. } => meta.is_dir(),
        Node::File { .. } => meta.is_file(),
        Node::Symlink { .. } => meta.is_symlink(),
    };
    if !same_type {
        return Err(mismatch(root, rel, "type", describe(node), kind(meta)));
    }
    let mode = meta.permissions().mode() & 0o7777;
    match node {
        Node::Dir { mode: want } | Node::File { mode: want, .. } if mode != *want => {
            return Err(mismatch(
                root,
                rel,
                "mode",
                format!("{want:04o}"),
                format!("{mode:04o}"),
            ));
        }
        Node::Dir { .. } => {}
        Node::File {
            size,
            sha256,
            origin,
            ..
        } => {
            if meta.len() != *size {
                return Err(mismatch(
                    root,
                    rel,
                    "size",
                    size.to_string(),
                    meta.len().to_string(),
                ));
            }
            let found = hash_file(full, buf)?;
            if found != *sha256 {
                return Err(first_difference(
                    root, rel, full, *size, *origin, sha256, &found, expected,
                ));
            }
        }
        Node::Symlink { target } => {
            let found = fs::read_link(full).map_err(Error::io("read the link", full))?;
            if found.as_os_str().as_bytes() != target.as_bytes() {
                return Err(mismatch(
                    root,
                    rel,
                    "link target",
                    format!("`{target}`"),
                    format!("`{}`", found.display()),
                ));
            }
        }
    }
    Ok(())
}

/// SHA-256 of a file's bytes, read in pieces.
fn hash_file(path: &Path, buf: &mut [u8]) -> Result<[u8; 32], Error> {
    let mut file = File::open(path).map_err(Error::io("open", path))?;
    let mut sha = Sha256::new();
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(sha.finalize().into()),
            Ok(n) => sha.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path)(e)),
        }
    }
}

/// The bytes differ somewhere: read the file again beside its generator to say where.
#[allow(clippy::too_many_arguments)]
fn first_difference(
    root: &Path,
    rel: &str,
    full: &Path,
    size: u64,
    origin: Origin,
    want: &[u8; 32],
    found: &[u8; 32],
    expected: &Expected,
) -> Error {
    let digests = |what: String, e: String, f: String| {
        mismatch(
            root,
            rel,
            &what,
            format!("{e}, sha256 {}", hex(want)),
            format!("{f}, sha256 {}", hex(found)),
        )
    };
    let mut content = expected.content(origin, size);
    let Ok(mut file) = File::open(full) else {
        return digests("content".into(), "other bytes".into(), "these".into());
    };
    let mut ours = vec![0; CHUNK];
    let mut theirs = vec![0; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = content.fill(&mut ours);
        if n == 0 {
            break;
        }
        if file.read_exact(&mut theirs[..n]).is_err() {
            break;
        }
        if let Some(i) = (0..n).find(|&i| ours[i] != theirs[i]) {
            return digests(
                format!("byte {}", offset + i as u64),
                format!("0x{:02x}", ours[i]),
                format!("0x{:02x}", theirs[i]),
            );
        }
        offset += n as u64;
    }
    // Changed while being read: the digests are all there is to show.
    digests("content".into(), "other bytes".into(), "these".into())
}

/// Every path below `root/top` that the oracle lacks is an error; the first, in path order.
fn extras(root: &Path, top: &str, expected: &Expected) -> Result<(), Error> {
    let mut stack = vec![top.to_owned()];
    while let Some(dir) = stack.pop() {
        crate::interrupt::check()?;
        let full = root.join(&dir);
        let mut children = Vec::new();
        for entry in fs::read_dir(&full).map_err(Error::io("read the directory", &full))? {
            let entry = entry.map_err(Error::io("read the directory", &full))?;
            let meta =
                fs::symlink_metadata(entry.path()).map_err(Error::io("read", entry.path()))?;
            let name = entry.file_name();
            // A name that is not UTF-8 is no name the layers hold.
            let name = match name.to_str() {
                Some(name) => name.to_owned(),
                None => {
                    let shown = name.to_string_lossy();
                    return Err(extra(root, &format!("{dir}/{shown}"), &meta));
                }
            };
            children.push((format!("{dir}/{name}"), meta));
        }
        // Reversed onto the stack, so that the walk and its first extra go in path order.
        children.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, meta) in children {
            let tar_form = if meta.is_dir() {
                format!("{path}/")
            } else {
                path.clone()
            };
            if expected.fs.get(&tar_form).is_none() {
                return Err(extra(root, &path, &meta));
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

fn extra(root: &Path, path: &str, meta: &Metadata) -> Error {
    mismatch(
        root,
        path,
        "entry",
        "nothing (the image does not hold this path)",
        kind(meta),
    )
}

fn mismatch(
    root: &Path,
    path: &str,
    what: &str,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> Error {
    Error::Rootfs(Box::new(RootfsMismatch {
        root: root.to_owned(),
        path: path.to_owned(),
        what: what.to_owned(),
        expected: expected.into(),
        found: found.into(),
    }))
}

fn describe(node: &Node) -> String {
    match node {
        Node::Dir { mode } => format!("a directory, mode {mode:04o}"),
        Node::File { size, mode, .. } => format!("a file of {size} bytes, mode {mode:04o}"),
        Node::Symlink { target } => format!("a symbolic link to `{target}`"),
    }
}

fn kind(meta: &Metadata) -> String {
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_symlink() {
        "a symbolic link".into()
    } else if meta.is_dir() {
        format!("a directory, mode {mode:04o}")
    } else if meta.is_file() {
        format!("a file of {} bytes, mode {mode:04o}", meta.len())
    } else {
        "a special file".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Rootfs;
    use crate::{Platform, Spec};

    /// Writes what `expected` holds under `root`, as an unpacker would.
    fn unpack(expected: &Expected, root: &Path) {
        for (path, node) in expected.fs.iter() {
            let full = root.join(path.trim_end_matches('/'));
            match node {
                Node::Dir { mode } => {
                    fs::create_dir_all(&full).expect("mkdir");
                    fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).expect("chmod");
                }
                Node::File {
                    size, mode, origin, ..
                } => {
                    let mut bytes = vec![0; *size as usize];
                    expected.content(*origin, *size).fill(&mut bytes);
                    fs::write(&full, bytes).expect("write");
                    fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).expect("chmod");
                }
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &full).expect("symlink");
                }
            }
        }
    }

    fn expected(list: &str) -> Expected {
        let spec = Spec::parse(list).expect("valid");
        Expected::new(&spec, &Platform::default(), false).expect("computed")
    }

    fn error(root: &Path, expected: &Expected) -> RootfsMismatch {
        match verify_rootfs(root, expected) {
            Err(Error::Rootfs(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_first_difference() {
        let e = expected("64KB:tree=20:symlinks=2:hardlinks=2,8KB:whiteouts=2");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        unpack(&e, root);
        let counts = verify_rootfs(root, &e).expect("matches");
        assert_eq!(counts.total(), e.fs.iter().count() as u64);

        let (file, size) =
            e.fs.iter()
                .find_map(|(p, n)| match n {
                    Node::File { size, .. } if *size > 10 => Some((p.clone(), *size)),
                    _ => None,
                })
                .expect("a file");
        let mut bytes = fs::read(root.join(&file)).expect("read");
        let mode = fs::metadata(root.join(&file)).expect("stat").permissions();
        bytes[7] ^= 1;
        fs::write(root.join(&file), &bytes).expect("write");
        let found = error(root, &e);
        assert_eq!(
            (found.path.as_str(), found.what.as_str()),
            (&*file, "byte 7")
        );
        bytes[7] ^= 1;
        let last = bytes.pop().expect("not empty");
        fs::write(root.join(&file), &bytes).expect("write");
        let found = error(root, &e);
        assert_eq!(found.what, "size");
        assert_eq!(found.expected, size.to_string());
        fs::remove_file(root.join(&file)).expect("rm");
        let found = error(root, &e);
        assert_eq!(
            (found.path.as_str(), found.found.as_str()),
            (&*file, "nothing")
        );
        bytes.push(last);
        fs::write(root.join(&file), &bytes).expect("write");
        fs::set_permissions(root.join(&file), mode).expect("chmod");
        verify_rootfs(root, &e).expect("matches again");

        fs::write(root.join("layer2/stray"), b"").expect("write");
        fs::create_dir(root.join("etc")).expect("mkdir");
        let found = error(root, &e);
        assert_eq!(found.path, "layer2/stray", "{found}");
        assert_eq!(found.what, "entry");
    }

    #[test]
    fn a_wrong_link_target_and_mode_are_named() {
        let mut fs_: Rootfs<Node> = Rootfs::default();
        fs_.add("layer1/".into(), Node::Dir { mode: 0o755 });
        fs_.add("layer1/l".into(), Node::Symlink { target: "a".into() });
        let mut e = expected("1B");
        e.fs = fs_;
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("layer1")).expect("mkdir");
        std::os::unix::fs::symlink("b", dir.path().join("layer1/l")).expect("ln");
        fs::set_permissions(dir.path().join("layer1"), fs::Permissions::from_mode(0o700))
            .expect("chmod");
        assert_eq!(error(dir.path(), &e).what, "mode");
        fs::set_permissions(dir.path().join("layer1"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let found = error(dir.path(), &e);
        assert_eq!(
            (found.what.as_str(), found.found.as_str()),
            ("link target", "`b`")
        );
    }
}
