//! `image-maker expect` (the oracle) and `verify --rootfs`, against real unpackers: umoci,
//! and docker's own export; mtree-netbsd reads the oracle's mtree output.

use std::fs;
use std::path::Path;
use std::process::Output;

use crate::support::*;

/// Links, hard links, whiteouts over a tree, paths past 255 bytes and non-ASCII names.
const SPEC: &str = "8MB:tree=500:symlinks=20:hardlinks=10,2MB:whiteouts=5,1MB:tree=50";

/// `expect SPEC` written to a file in `dir`.
fn expect_to(dir: &Path, spec: &str) -> std::path::PathBuf {
    let out = run_ok(image_maker().args(["expect", spec]));
    let file = dir.join("expected.mtree");
    fs::write(&file, &out.stdout).expect("write");
    file
}

/// mtree-netbsd prints a missing or extra path but still exits 0: a match is a zero exit
/// and nothing on stdout.
fn mtree_matches(mtree: Tool, spec: &Path, root: &Path) -> Output {
    let out = run(mtree
        .cmd()
        .args(["-f", path_str(spec), "-p", path_str(root)]));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "mtree found differences ({}):\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

fn verify_rootfs(root: &Path) -> Output {
    run(image_maker().args(["verify", "--rootfs", path_str(root), "--spec", SPEC]))
}

/// Builds SPEC to `oci:DIR:1` and unpacks it with umoci: the bundle's `rootfs/`.
fn umoci_rootfs(tmp: &Path) -> Option<std::path::PathBuf> {
    // Not `--rootless`: that unpacks as the caller, and the oracle's mtree says uid=0 gid=0
    // for every entry, which only an unpack as root reproduces.
    root("umoci unpack keeping owners")?;
    let umoci = tool("umoci")?;
    Some(build_and_unpack(umoci, SPEC, tmp))
}

#[test]
fn umoci_unpacks_what_expect_says() {
    let (Some(mtree), Some(oci_image_tool), Some(skopeo)) =
        (tool("mtree"), tool("oci-image-tool"), tool("skopeo"))
    else {
        return;
    };
    let tmp = tempdir();
    let Some(root) = umoci_rootfs(tmp.path()) else {
        return;
    };
    let spec = expect_to(tmp.path(), SPEC);
    mtree_matches(mtree, &spec, &root);
    let out = verify_rootfs(&root);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("matches {SPEC}: 622 entries")),
        "{}",
        stderr(&out)
    );
    // The layout stays valid for other tools.
    let layout = tmp.path().join("img");
    assert_valid_layout(oci_image_tool, &layout, "1");
    run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci:{}:1", path_str(&layout))]),
    );
}

#[test]
fn docker_export_holds_what_expect_says() {
    let (Some(mtree), Some(docker), Some(tar), Some(_)) = (
        tool("mtree"),
        engine("docker"),
        tool("tar"),
        root("tar -x keeping owners"),
    ) else {
        return;
    };
    let image = EngineImage::new(docker, "expect");
    run_ok(image_maker().args([
        "-q",
        "--no-cache",
        "-s",
        SPEC,
        "-o",
        "engine",
        &image.reference,
    ]));
    let tmp = tempdir();
    let exported = docker_export(docker, &image.reference, tmp.path());
    let root = tmp.path().join("root");
    fs::create_dir(&root).expect("mkdir");
    // GNU tar as root keeps owners and modes, as an unpacker would.
    run_ok(
        tar.cmd()
            .args(["-xf", path_str(&exported), "-C", path_str(&root)]),
    );
    // verify --rootfs ignores what docker adds at the top (/etc, /dev, /proc, /sys,
    // /.dockerenv); mtree would list each as extra, so they go before it runs.
    let out = verify_rootfs(&root);
    assert!(out.status.success(), "{}", stderr(&out));
    for entry in fs::read_dir(&root).expect("root") {
        let entry = entry.expect("entry");
        if !entry.file_name().to_string_lossy().starts_with("layer") {
            let path = entry.path();
            if entry.file_type().expect("type").is_dir() {
                fs::remove_dir_all(&path).expect("rm -r");
            } else {
                fs::remove_file(&path).expect("rm");
            }
        }
    }
    let spec = expect_to(tmp.path(), SPEC);
    mtree_matches(mtree, &spec, &root);
}

/// The first regular file below `root/top` (path order) of at least `min` bytes, relative
/// to `root`; a plain ASCII name, which mtree prints as it is.
fn a_file(root: &Path, top: &str, min: u64) -> String {
    let mut stack = vec![root.join(top)];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("dir") {
            let entry = entry.expect("entry");
            let meta = fs::symlink_metadata(entry.path()).expect("stat");
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && meta.len() >= min {
                let rel = entry.path().strip_prefix(root).expect("under").to_owned();
                let rel = rel.to_str().expect("utf-8").to_owned();
                if rel.bytes().all(|b| b.is_ascii_graphic()) {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    found.into_iter().next().expect("a file")
}

#[test]
fn a_wrong_unpack_is_named() {
    let Some(mtree) = tool("mtree") else {
        return;
    };
    let tmp = tempdir();
    let Some(root) = umoci_rootfs(tmp.path()) else {
        return;
    };
    let spec = expect_to(tmp.path(), SPEC);

    // A file gone: mtree says `missing` (and exits 0: see `mtree_matches`).
    let gone = a_file(&root, "layer3", 1);
    let kept = fs::read(root.join(&gone)).expect("read");
    fs::remove_file(root.join(&gone)).expect("rm");
    let out = run(mtree
        .cmd()
        .args(["-f", path_str(&spec), "-p", path_str(&root)]));
    assert!(
        stdout(&out).contains(&format!("missing: ./{gone}")),
        "{}",
        stdout(&out)
    );
    let out = verify_rootfs(&root);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("`{gone}`")) && stderr(&out).contains("found nothing"),
        "{}",
        stderr(&out)
    );
    fs::write(root.join(&gone), kept).expect("restore");
    fs::set_permissions(root.join(&gone), {
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(fs_mode_of(&spec, &gone))
    })
    .expect("chmod");
    mtree_matches(mtree, &spec, &root);

    // One byte changed: mtree exits non-zero naming the file, verify names the offset.
    let changed = a_file(&root, "layer1", 100);
    let path = root.join(&changed);
    let mut bytes = fs::read(&path).expect("read");
    bytes[77] ^= 0xff;
    fs::write(&path, &bytes).expect("write");
    let out = run(mtree
        .cmd()
        .args(["-f", path_str(&spec), "-p", path_str(&root)]));
    assert!(!out.status.success(), "mtree missed the change");
    assert!(
        stdout(&out).contains(&changed) && stdout(&out).contains("sha256"),
        "{}",
        stdout(&out)
    );
    let out = verify_rootfs(&root);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("`{changed}`")) && stderr(&out).contains("byte 77:"),
        "{}",
        stderr(&out)
    );
}

/// The mode the mtree spec gives `path`.
fn fs_mode_of(spec: &Path, path: &str) -> u32 {
    let text = fs::read_to_string(spec).expect("read");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("./{path} ")))
        .unwrap_or_else(|| panic!("{path} not in the spec"));
    let mode = line
        .split(' ')
        .find_map(|w| w.strip_prefix("mode="))
        .expect("a mode");
    u32::from_str_radix(mode, 8).expect("octal")
}

#[test]
fn json_agrees_with_mtree() {
    let mtree = run_ok(image_maker().args(["expect", SPEC]));
    let json = json(&run_ok(
        image_maker().args(["expect", "--format", "json", SPEC]),
    ));
    let entries = json["entries"].as_array().expect("entries");
    let lines: Vec<String> = stdout(&mtree)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(". "))
        .map(str::to_owned)
        .collect();
    assert_eq!(entries.len(), lines.len());
    for kind in ["file", "dir"] {
        let in_json = entries.iter().filter(|e| e["type"] == kind).count();
        let in_mtree = lines
            .iter()
            .filter(|l| l.contains(&format!(" type={kind} ")))
            .count();
        assert_eq!(in_json, in_mtree, "{kind}");
    }
    let links = entries.iter().filter(|e| e["type"] == "symlink").count();
    assert_eq!(
        links,
        lines.iter().filter(|l| l.contains(" type=link ")).count()
    );
    assert_eq!(links, 20);
    assert_eq!(json["platform"], "linux/amd64");
    // Plain-ASCII paths read the same in both; others are escaped in mtree.
    let path = entries[0]["path"].as_str().expect("path");
    assert!(lines[0].starts_with(&format!("./{path} ")), "{}", lines[0]);
    // Another platform has other bytes, the same entries.
    let arm = json_of(&[
        "expect",
        "--format",
        "json",
        "--platform",
        "linux/arm64",
        SPEC,
    ]);
    let shared = json_of(&[
        "expect",
        "--format",
        "json",
        "--platform",
        "linux/arm64",
        "--shared-layers",
        SPEC,
    ]);
    assert_eq!(
        arm["entries"].as_array().expect("entries").len(),
        entries.len()
    );
    assert_ne!(arm["entries"], json["entries"]);
    assert_eq!(shared["entries"], json["entries"]);
}

fn json_of(args: &[&str]) -> serde_json::Value {
    json(&run_ok(image_maker().args(args)))
}

#[test]
fn usage_errors_exit_2() {
    for (args, says) in [
        (
            vec!["expect", "--platform", "linux/amd64,linux/arm64", "1MB"],
            "more than one platform",
        ),
        (vec!["expect", "1MB:whiteouts=1"], "whiteouts"),
        (vec!["expect", "1MB:bogus=1"], "bogus"),
        (vec!["expect", "--format", "yaml", "1MB"], "yaml"),
        (vec!["verify", "--rootfs", "/tmp"], "--spec"),
        (
            vec!["verify", "--spec", "1MB", "oci:x"],
            "cannot be used with",
        ),
        (vec!["verify", "--spec", "1MB"], "--rootfs"),
        (
            vec!["verify", "oci:x", "--rootfs", "/tmp", "--spec", "1MB"],
            "cannot be used with",
        ),
        (
            vec![
                "verify",
                "--rootfs",
                "/tmp",
                "--spec",
                "1MB",
                "--platform",
                "linux/amd64,linux/arm64",
            ],
            "more than one platform",
        ),
        (
            vec!["verify", "--rootfs", "/nonexistent/rootfs", "--spec", "1MB"],
            "`/nonexistent/rootfs` is not a directory",
        ),
    ] {
        let out = run(image_maker().args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(image_maker().args(["expect", "--platform", "linux/amd64,linux/arm64", "1MB"]));
    assert!(stderr(&out).contains("hint: "), "{}", stderr(&out));
}

/// `expect --format spdx` is an SPDX 2.3 SBOM that spdx-tools validates, listing exactly
/// the regular files umoci unpacks, each with the SHA-1 and SHA-256 of its bytes there.
#[test]
fn the_spdx_sbom_validates_and_lists_what_an_unpack_holds() {
    use sha1::Digest as _;
    let Some(pyspdxtools) = tool("pyspdxtools") else {
        return;
    };
    let Some(_) = root("umoci unpack keeping owners") else {
        return;
    };
    let Some(umoci) = tool("umoci") else {
        return;
    };
    let spec = "64KB:tree=20:symlinks=3:hardlinks=2,16KB:files=4:whiteouts=2";
    let tmp = tempdir();
    let sbom = tmp.path().join("sbom.spdx.json");
    fs::write(
        &sbom,
        run_ok(image_maker().args(["expect", "--format", "spdx", spec])).stdout,
    )
    .expect("write");
    let out = run_ok(pyspdxtools.cmd().args(["-i", path_str(&sbom)]));
    assert!(!stderr(&out).contains("invalid"), "{}", stderr(&out));

    let root = build_and_unpack(umoci, spec, tmp.path());
    let mut unpacked = std::collections::BTreeMap::new();
    // Regular files only: links are not followed.
    for (path, _) in files_under(&root) {
        let bytes = fs::read(&path).expect("read");
        let name = format!("./{}", path.strip_prefix(&root).expect("under").display());
        let sha1: String = sha1::Sha1::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sha256 = sha256(&bytes).trim_start_matches("sha256:").to_owned();
        unpacked.insert(name, (sha1, sha256));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&sbom).expect("read")).expect("JSON");
    let listed: std::collections::BTreeMap<String, (String, String)> = doc["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let sum = |i: usize| {
                f["checksums"][i]["checksumValue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                f["fileName"].as_str().unwrap_or_default().to_owned(),
                (sum(0), sum(1)),
            )
        })
        .collect();
    assert!(unpacked.len() > 20, "{unpacked:?}");
    assert_eq!(listed, unpacked);
}
