//! The oracle as an mtree(5) specification, for `mtree -f SPEC -p ROOTFS` (NetBSD's mtree,
//! Debian's `mtree-netbsd`): one full-path line per entry, `.` first.
//!
//! No `time`: unpackers set it as they please. No `mode` on links: Linux gives them 0777
//! whatever the tar says, other systems differ. `uid=0 gid=0` as layers hold them; an
//! unpack as root keeps them. mtree-netbsd reports a missing or extra path on stdout but
//! still exits 0: a checker must read its output as well as its exit status.

use std::io::{self, Write};

use super::{hex, Expected, Node};

/// Writes the specification: a `#mtree` line, the root, then every entry in path order
/// (a directory before what it holds).
pub fn write(expected: &Expected, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "#mtree")?;
    writeln!(
        out,
        "# image-maker expect {} --platform {}",
        escape_comment(&expected.spec.canonical()),
        expected.platform
    )?;
    writeln!(out, ". type=dir mode=0755 uid=0 gid=0")?;
    for (path, node) in expected.fs.iter() {
        let name = escape(path.strip_suffix('/').unwrap_or(path).as_bytes());
        match node {
            Node::Dir { mode } => writeln!(out, "./{name} type=dir mode={mode:04o} uid=0 gid=0")?,
            Node::File {
                size, mode, sha256, ..
            } => writeln!(
                out,
                "./{name} type=file mode={mode:04o} uid=0 gid=0 size={size} sha256digest={}",
                hex(sha256)
            )?,
            Node::Symlink { target } => writeln!(
                out,
                "./{name} type=link uid=0 gid=0 link={}",
                escape(target.as_bytes())
            )?,
        }
    }
    Ok(())
}

/// A name or link target as mtree reads it back (strunvis(3)): printable ASCII stays,
/// anything else — bytes past ASCII, controls, space — and the characters the spec
/// grammar or its glob matching treat specially become `\ooo` octal escapes.
pub fn escape(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name {
        let special = matches!(b, b'\\' | b'#' | b'*' | b'?' | b'[' | b']' | b'=' | b'"');
        if b.is_ascii_graphic() && !special {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// A spec in a comment line: a newline there would end the comment.
fn escape_comment(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_mtree_would_misread() {
        assert_eq!(escape(b"usr/lib/libc.so.6"), "usr/lib/libc.so.6");
        assert_eq!(escape("données".as_bytes()), "donn\\303\\251es");
        assert_eq!(escape(b"a b\tc"), "a\\040b\\011c");
        assert_eq!(escape(b"x\\y#z"), "x\\134y\\043z");
        assert_eq!(escape(b"*?[]="), "\\052\\077\\133\\135\\075");
        assert_eq!(escape(b"\x7f\x01"), "\\177\\001");
    }

    #[test]
    fn one_full_path_line_per_entry() {
        let spec = crate::Spec::parse("2KB:tree=3:symlinks=1").expect("valid");
        let expected = Expected::new(&spec, &crate::Platform::default(), false).expect("computed");
        let mut out = Vec::new();
        write(&expected, &mut out).expect("written");
        let text = String::from_utf8(out).expect("ascii");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines[0], ". type=dir mode=0755 uid=0 gid=0");
        assert_eq!(lines[1], "./layer1 type=dir mode=0755 uid=0 gid=0");
        assert_eq!(lines.len(), expected.fs.iter().count() + 1);
        assert!(lines.iter().all(|l| l.starts_with('.')));
        let files: Vec<&&str> = lines.iter().filter(|l| l.contains("type=file")).collect();
        assert_eq!(files.len(), 3);
        assert!(files
            .iter()
            .all(|l| l.contains(" size=") && l.contains(" sha256digest=")));
        let link = lines
            .iter()
            .find(|l| l.contains("type=link"))
            .expect("link");
        assert!(!link.contains("mode="), "{link}");
    }
}
