//! The entries of a layer's tar, as the plan lists them: below the plan and the tree
//! drawing, so that both speak of the same entries.

/// One regular file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// 0-based index within the layer; part of the content seed.
    pub index: u64,
    /// Path relative to the layer root, e.g. `layer1/1GB-file`.
    pub path: String,
    /// Bytes of content.
    pub size: u64,
    /// Permission bits: 0644, or a tree's 0755 and 0600.
    pub mode: u32,
}

/// A tar entry of a layer, in the order the tar holds them (sorted by path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory path ending in `/`.
    Dir(String),
    /// A regular file and its content's size.
    File(FilePlan),
    /// A symbolic link and its target, as the link holds it.
    Symlink {
        /// Where the link is.
        path: String,
        /// Relative, absolute, or dangling.
        target: String,
    },
    /// A hard link to `target`, a regular file the same layer holds earlier.
    Hardlink {
        /// Where the link is.
        path: String,
        /// The file's path, relative to the root as every path here.
        target: String,
        /// The file's permission bits. A link and its file are one inode, so the header
        /// carries the file's: docker applies a hard link header's mode to the inode,
        /// and a different one there would change the file's mode under docker alone.
        mode: u32,
    },
    /// A `.wh.NAME` or `.wh..wh..opq` entry (see [`crate::rootfs::whiteout`]): an empty
    /// regular file in the tar, a deletion when applied.
    Whiteout(String),
}

impl Entry {
    /// The entry's path in the tar.
    pub fn path(&self) -> &str {
        match self {
            Self::Dir(path) | Self::Whiteout(path) => path,
            Self::File(file) => &file.path,
            Self::Symlink { path, .. } | Self::Hardlink { path, .. } => path,
        }
    }
}
