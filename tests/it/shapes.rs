//! File-system shapes as real tools read them: a realistic tree, symlinks, hard links,
//! empty directories and whiteouts, listed by GNU tar from the layer blobs.

use std::path::Path;

use crate::support::*;

/// The image: a tree with links, a layer of whiteouts, another tree.
const SHAPES: &str = "8MB:tree=500:symlinks=20:hardlinks=10,2MB:whiteouts=5,1MB:tree=50";

/// One line of `tar -tv`: the type letter, the size, the path and what a link points at.
#[derive(Debug)]
struct Listed {
    kind: char,
    size: u64,
    path: String,
    link: Option<String>,
}

/// GNU tar's verbose listing of a layer blob, names printed as they are.
fn list(tar: Tool, blob: &Path) -> Vec<Listed> {
    let out = run_ok(
        tar.cmd()
            .env("LC_ALL", "C.UTF-8")
            .args(["--utc", "--quoting-style=literal", "-tvf"])
            .arg(blob),
    );
    stdout(&out)
        .lines()
        .map(|line| {
            // perms, owner, size, date, time, then the name (with ` -> ` or ` link to `).
            let mut rest = line;
            let mut fields = Vec::new();
            for _ in 0..5 {
                rest = rest.trim_start();
                let end = rest.find(' ').unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = &rest[end..];
            }
            let name = rest.trim_start();
            let kind = fields[0].chars().next().unwrap_or('?');
            let (path, link) = match kind {
                'l' => name.split_once(" -> ").map(|(p, l)| (p, Some(l))),
                'h' => name.split_once(" link to ").map(|(p, l)| (p, Some(l))),
                _ => Some((name, None)),
            }
            .unwrap_or((name, None));
            Listed {
                kind,
                size: fields[2].parse().unwrap_or(u64::MAX),
                path: path.trim_end_matches('/').to_owned(),
                link: link.map(str::to_owned),
            }
        })
        .collect()
}

fn layer_blobs(dir: &Path, built: &serde_json::Value) -> Vec<std::path::PathBuf> {
    built["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            dir.join("blobs/sha256").join(
                l["digest"]
                    .as_str()
                    .expect("digest")
                    .trim_start_matches("sha256:"),
            )
        })
        .collect()
}

#[test]
fn every_entry_kind_reads_back_through_gnu_tar_skopeo_and_oci_image_tool() {
    let (Some(skopeo), Some(oci_image_tool), Some(tar)) =
        (tool("skopeo"), tool("oci-image-tool"), tool("tar"))
    else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = json(&run_ok(
        image_maker()
            .args(["-q", "--json", "--no-cache", "-s", SHAPES, "-o"])
            .arg(format!("oci:{}", path_str(&dir)))
            .arg("mock/shapes:1"),
    ));
    let blobs = layer_blobs(&dir, &built);
    let layers: Vec<Vec<Listed>> = blobs.iter().map(|b| list(tar, b)).collect();

    // The tree of layer 1: exactly 500 regular files, summing to 8 MiB, skewed, deep,
    // with a path past 255 bytes and a non-ASCII name.
    let one = &layers[0];
    let files: Vec<&Listed> = one.iter().filter(|e| e.kind == '-').collect();
    assert_eq!(files.len(), 500);
    assert_eq!(files.iter().map(|f| f.size).sum::<u64>(), 8 << 20);
    let mut sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
    sizes.sort_unstable();
    let (median, largest) = (sizes[250], sizes[499]);
    assert!(largest >= 20 * median, "largest {largest}, median {median}");
    assert_eq!(sizes[0], 0, "an empty file");
    let depth = files
        .iter()
        .map(|f| f.path.matches('/').count())
        .max()
        .unwrap_or(0);
    assert!(depth >= 4, "{depth} levels");
    assert!(files.iter().any(|f| f.path.len() > 255));
    assert!(files.iter().any(|f| !f.path.is_ascii()));

    // 20 symlinks, one with a target past ustar's 100 bytes, some into no file at all;
    // 10 hard links to files the layer holds before them.
    let symlinks: Vec<&Listed> = one.iter().filter(|e| e.kind == 'l').collect();
    assert_eq!(symlinks.len(), 20);
    let targets: Vec<&str> = symlinks.iter().filter_map(|s| s.link.as_deref()).collect();
    assert!(targets.iter().any(|t| t.len() > 100), "{targets:?}");
    assert!(targets.iter().any(|t| t.starts_with('/')), "{targets:?}");
    assert!(targets.iter().any(|t| t.starts_with("..")), "{targets:?}");
    let hardlinks: Vec<&Listed> = one.iter().filter(|e| e.kind == 'h').collect();
    assert_eq!(hardlinks.len(), 10);
    for link in &hardlinks {
        let target = link.link.as_deref().expect("a target");
        let at = one.iter().position(|e| e.path == target && e.kind == '-');
        let here = one.iter().position(|e| e.path == link.path);
        assert!(at < here && at.is_some(), "{} before {target}", link.path);
    }

    // Layer 2: its file, and five whiteouts of layer 1's entries, one of them opaque.
    let two = &layers[1];
    let whiteouts: Vec<&str> = two
        .iter()
        .map(|e| e.path.as_str())
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(".wh.")))
        .collect();
    assert_eq!(whiteouts.len(), 5, "{whiteouts:?}");
    assert_eq!(
        whiteouts
            .iter()
            .filter(|p| p.ends_with("/.wh..wh..opq"))
            .count(),
        1
    );
    assert!(whiteouts.iter().all(|p| p.starts_with("layer1/")));
    assert!(two
        .iter()
        .any(|e| e.path == "layer2/2MB-file" && e.size == 2 << 20));

    // inspect counts the same, and the image still validates.
    let source = format!("oci:{}", path_str(&dir));
    let report = json(&run_ok(image_maker().args(["inspect", "--json", &source])));
    let counted = &report["images"][0]["layers"];
    assert_eq!(counted[0]["files"], 500);
    assert_eq!(counted[0]["links"], 30);
    assert_eq!(counted[1]["whiteouts"], 5);
    assert_eq!(counted[2]["files"], 50);
    // To a directory: the default output, an engine, would make the dry run ask docker
    // whether it answers, which has nothing to do with the counts.
    let dry = stdout(&run_ok(
        image_maker()
            .args(["-s", SHAPES, "--dry-run", "-o"])
            .arg(format!("oci:{}", path_str(&tmp.path().join("dry"))))
            .arg("mock/shapes:1"),
    ));
    assert!(
        !tmp.path().join("dry").exists(),
        "a dry run wrote its output"
    );
    assert!(dry.contains("500 files, tree, "), "{dry}");
    assert!(dry.contains(", 20 symlinks, 10 hard links, "), "{dry}");
    assert!(dry.contains(", 5 whiteouts, "), "{dry}");
    let out = run_ok(image_maker().args(["verify", &source]));
    assert!(stderr(&out).contains("verified"), "{}", stderr(&out));
    assert_valid_layout(oci_image_tool, &dir, "1");
    run_ok(
        skopeo
            .cmd()
            .args(["inspect", &format!("oci:{}:1", path_str(&dir))]),
    );
}

#[test]
fn bad_shapes_exit_2_naming_the_token_and_leave_nothing() {
    let tmp = tempdir();
    for (spec, needles) in [
        ("1MB:whiteouts=1", &["`whiteouts`", "`1MB:whiteouts=1`"][..]),
        (
            "1MB,1MB:whiteouts=3",
            &["`1MB:whiteouts=3`", "3 whiteouts", "than the 1 files"],
        ),
        (
            "1MB:tree=5,1MB:whiteouts=2",
            &["`1MB:whiteouts=2`", "opaque"],
        ),
        ("10B:tree=20", &["`10B:tree=20`", "20 files", "10 bytes"]),
        ("1MB:symlink=3", &["`symlink`", "`1MB:symlink=3`"]),
        ("1MB:hardlinks=x", &["`hardlinks=x`", "whole number"]),
    ] {
        let dest = tmp.path().join("out");
        let out = run(image_maker()
            .args(["--no-cache", "-s", spec, "-o"])
            .arg(format!("oci:{}", path_str(&dest)))
            .arg("mock/bad:1"));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{spec}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{spec}: `{needle}` not in {err}");
        }
        assert!(err.contains("hint:"), "{spec}: {err}");
        assert!(!dest.exists(), "{spec} left {dest:?}");
    }
    // A Dockerfile cannot delete: refused before any engine is asked.
    let out = run(image_maker().args([
        "--builder",
        "dockerfile",
        "--no-cache",
        "-s",
        "1MB:tree=20,1MB:whiteouts=2",
        "mock/bad:2",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("whiteouts"), "{}", stderr(&out));
}

/// A listed entry as two builds can compare it: kind, size, path, link target.
type Row = (char, u64, String, Option<String>);

#[test]
fn the_dockerfile_builder_makes_the_same_links_and_directories() {
    let (Some(docker), Some(tar)) = (engine("docker"), tool("tar")) else {
        return;
    };
    let spec = "64KB:tree=20:symlinks=4:hardlinks=2:dirs=2,8KB:files=2:symlinks=2";
    let tmp = tempdir();
    let mut listings = Vec::new();
    for builder in ["native", "dockerfile"] {
        let dir = tmp.path().join(builder);
        // Removed when the test ends: the dockerfile build leaves it in docker.
        let image = EngineImage::new(docker, &format!("shapes-{builder}"));
        let built = json(&run_ok(
            image_maker()
                .args(["-q", "--json", "--no-cache", "-b", builder])
                .args(["-e", docker.name(), "-s", spec, "-o"])
                .arg(format!("oci:{}", path_str(&dir)))
                .arg(&image.reference),
        ));
        let layers: Vec<Vec<Row>> = layer_blobs(&dir, &built)
            .iter()
            .map(|blob| {
                let mut entries: Vec<_> = list(tar, blob)
                    .into_iter()
                    .map(|e| (e.kind, e.size, e.path, e.link))
                    .collect();
                entries.sort();
                entries
            })
            .collect();
        listings.push(layers);
    }
    let kinds: Vec<char> = listings[0].iter().flatten().map(|e| e.0).collect();
    for kind in ['-', 'd', 'l', 'h'] {
        assert!(kinds.contains(&kind), "no `{kind}` in {:?}", listings[0]);
    }
    assert_eq!(listings[0], listings[1], "native, then the engine's");
}
