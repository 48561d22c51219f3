//! The oracle as an SPDX 2.3 document (JSON): the image's root filesystem as one package
//! whose files are listed with their SHA-1 (which SPDX 2.3 requires) and SHA-256, in path
//! order, and the package's verification code. `pyspdxtools -i FILE` validates it. Everything in it follows from the spec and
//! platform: the same image, the same bytes.

use std::io::{self, Write};

use serde_json::json;
use sha1::{Digest as _, Sha1};

use super::{hex, Expected, Node};

/// Writes the document: its header, one file a line, then the relationships. `created` is
/// RFC 3339 (the image's own `created`, from its mtime).
pub fn write(expected: &Expected, created: &str, out: &mut impl Write) -> io::Result<()> {
    // The files first, as they are hashed: the package's verification code needs all of
    // their SHA-1s, and keys may come in any order.
    out.write_all(b"{\"files\":[")?;
    let mut buf = vec![0; 256 << 10];
    let mut sha1s: Vec<String> = Vec::new();
    for (path, node) in expected.fs.iter() {
        let Node::File {
            size,
            sha256,
            origin,
            ..
        } = node
        else {
            continue;
        };
        let mut content = expected.content(*origin, *size);
        let mut sha1 = Sha1::new();
        while content.remaining() > 0 {
            let n = content.fill(&mut buf);
            if n == 0 {
                break;
            }
            sha1.update(&buf[..n]);
        }
        let sha1 = hex(sha1.finalize().as_slice());
        let file = json!({
            "fileName": format!("./{path}"),
            "SPDXID": format!("SPDXRef-File-{}", sha1s.len() + 1),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": sha1},
                {"algorithm": "SHA256", "checksumValue": hex(sha256)},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        });
        out.write_all(if sha1s.is_empty() { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *out, &file)?;
        sha1s.push(sha1);
    }
    // SPDX 2.3 §7.9: the SHA-1 of the files' sorted SHA-1s, concatenated.
    sha1s.sort_unstable();
    let code = hex(Sha1::digest(sha1s.concat().as_bytes()).as_slice());
    let spec = expected.spec.canonical();
    let platform = expected.platform.to_string();
    let namespace = crate::digest::Blob::of(format!("{spec}\n{platform}").as_bytes()).digest;
    let head = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("image-maker {spec} {platform}"),
        "documentNamespace": format!(
            "https://spdx.image-maker.invalid/{}",
            namespace.trim_start_matches("sha256:")
        ),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: image-maker-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": [{
            "SPDXID": "SPDXRef-Package-rootfs",
            "name": spec,
            "versionInfo": platform,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": true,
            "packageVerificationCode": {"packageVerificationCodeValue": code},
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }],
    });
    // The header without its braces, after the files.
    let head = serde_json::to_string(&head)?;
    out.write_all(b"],")?;
    out.write_all(&head.as_bytes()[1..head.len() - 1])?;
    out.write_all(b",\"relationships\":[")?;
    let describes = json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Package-rootfs",
    });
    serde_json::to_writer(&mut *out, &describes)?;
    for n in 1..=sha1s.len() {
        let contains = json!({
            "spdxElementId": "SPDXRef-Package-rootfs",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": format!("SPDXRef-File-{n}"),
        });
        out.write_all(b",\n")?;
        serde_json::to_writer(&mut *out, &contains)?;
    }
    out.write_all(b"]}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_file_with_both_checksums_and_is_json() {
        let spec = crate::Spec::parse("3KB:files=3,1KB:whiteouts=1").expect("valid");
        let expected = Expected::new(&spec, &crate::Platform::default(), false).expect("plan");
        let mut out = Vec::new();
        write(&expected, "1970-01-01T00:00:00Z", &mut out).expect("written");
        let doc: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        let files = doc["files"].as_array().expect("files");
        assert_eq!(files.len() as u64, expected.counts().files);
        assert_eq!(files[0]["checksums"][0]["algorithm"], "SHA1");
        assert_eq!(
            doc["relationships"].as_array().map(Vec::len),
            Some(files.len() + 1)
        );
    }
}
