//! The oracle as one JSON document, written entry by entry so that a million entries
//! never exist twice in memory:
//!
//! ```json
//! {"spec": "…canonical…", "platform": "linux/amd64", "entries": [
//!   {"path": "layer1", "type": "dir", "mode": "0755"},
//!   {"path": "layer1/a", "type": "file", "size": 3, "mode": "0644", "sha256": "…"},
//!   {"path": "layer1/l", "type": "symlink", "target": "a"}
//! ]}
//! ```

use std::io::{self, Write};

use serde::Serialize;

use super::{hex, Expected, Node};

#[derive(Serialize)]
struct Line<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// Writes the document, one entry a line, in path order.
pub fn write(expected: &Expected, out: &mut impl Write) -> io::Result<()> {
    write!(
        out,
        "{{\"spec\": {}, \"platform\": {}, \"entries\": [",
        serde_json::to_string(&expected.spec.canonical())?,
        serde_json::to_string(&expected.platform.to_string())?
    )?;
    for (i, (path, node)) in expected.fs.iter().enumerate() {
        let path = path.strip_suffix('/').unwrap_or(path);
        let line = match node {
            Node::Dir { mode } => Line {
                path,
                kind: "dir",
                size: None,
                mode: Some(format!("{mode:04o}")),
                target: None,
                sha256: None,
            },
            Node::File {
                size, mode, sha256, ..
            } => Line {
                path,
                kind: "file",
                size: Some(*size),
                mode: Some(format!("{mode:04o}")),
                target: None,
                sha256: Some(hex(sha256)),
            },
            Node::Symlink { target } => Line {
                path,
                kind: "symlink",
                size: None,
                mode: None,
                target: Some(target),
                sha256: None,
            },
        };
        out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
        serde_json::to_writer(&mut *out, &line)?;
    }
    writeln!(out, "\n]}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_holds_every_entry() {
        let spec = crate::Spec::parse("2KB:tree=4:symlinks=1").expect("valid");
        let expected = Expected::new(&spec, &crate::Platform::default(), false).expect("computed");
        let mut out = Vec::new();
        write(&expected, &mut out).expect("written");
        let doc: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(doc["platform"], "linux/amd64");
        assert_eq!(doc["spec"], spec.canonical());
        let entries = doc["entries"].as_array().expect("array");
        assert_eq!(entries.len(), expected.fs.iter().count());
        assert_eq!(entries[0]["path"], "layer1");
        assert_eq!(entries[0]["mode"], "0755");
        assert!(entries[0].get("size").is_none());
        let link = entries
            .iter()
            .find(|e| e["type"] == "symlink")
            .expect("one");
        assert!(link["target"].is_string() && link.get("mode").is_none());
        let files = entries.iter().filter(|e| e["type"] == "file").count();
        assert_eq!(files, 4);
    }
}
