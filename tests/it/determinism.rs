//! The same spec gives the same bytes and digests on every run and machine.

use image_maker::{build, BuildRequest, Output, Platform, Progress, Reference, Spec};

use crate::support::*;

/// Pinned: if this changes, every digest users have recorded changes with it.
const GOLDEN_SPEC: &str = "5MB,2KB,300B";
const GOLDEN_DIGEST: &str =
    "sha256:3e9546d971c7b278709766c369e7ad41d5c0e6156e7c1e752aa7adaeddfb8b77";

/// Pinned as well, for a `tree=` layer, whose history names its layout as the label does
/// (`3KB:tree=40`). Before, the history said `files=40` and the digest was
/// sha256:7261ec959202260e97a544b8130ecd96f11a4a1a067f360d75f22486cb179001; then, before
/// `tree=N` drew a realistic tree (skewed sizes, varied depth, modes), it was
/// sha256:d8d11a7722d53248d47a6108bae46cd2be4235acfc99976d6e749aab03ac69c3.
const GOLDEN_TREE_SPEC: &str = "1MB,3KB:tree=40";
const GOLDEN_TREE_DIGEST: &str =
    "sha256:ba75ac7b9239005ab86fcfa5b8b8613acb0d49d86d5f078d89c0ef5c8a8d4139";

/// Pinned for every entry kind: symlinks, hard links, empty directories, and whiteouts
/// (one of them opaque) of the lower layer's tree. Pinned when those kinds came.
const GOLDEN_KINDS_SPEC: &str =
    "64KB:tree=40:symlinks=6:hardlinks=3:dirs=2,16KB:whiteouts=3:symlinks=2";
const GOLDEN_KINDS_DIGEST: &str =
    "sha256:4a0f41fe3d481851377cae6c941d750d62a8e811a084702281ecac1318fc4631";

/// Pinned for each encoding: the gzip and zstd streams are part of the digest, so a change
/// of encoder (or of its settings) shows up here. zstd's moved when its stream became
/// independent 2 MiB frames (so that a range starts at the frame that holds it): before,
/// one multi-threaded frame gave
/// sha256:cb177cb393f9b0f9137a6d0f58e7f82a6b17a4c512f767e826f26c23a0c507f3. Both moved
/// when generated layers at the default level came to be written from their matches (each
/// piece 5 to 20 times cheaper to make, so that serve keeps up with a registry's disk):
/// gzip's from sha256:54d6d3409eea07fd6e0191211c7685f5e089ee4edfdc0e59b4f2cb70780da935,
/// zstd's from sha256:57555399960c48aa2e3cf05ff220bc956fda2753656591ce51f9933acf630e79.
const GOLDEN_GZIP_SPEC: &str = "2MB:compression=gzip:ratio=3,300KB:files=3:compression=gzip";
const GOLDEN_GZIP_DIGEST: &str =
    "sha256:5a8051f87e5478904185cc0033993af2e649298671cc5e5748096f4d17c9e952";
const GOLDEN_ZSTD_SPEC: &str = "2MB:compression=zstd:ratio=3,300KB:files=3:compression=zstd";
const GOLDEN_ZSTD_DIGEST: &str =
    "sha256:0f907f9f10b76b8fc2a07ea880f0f08c738d05862ddcc2ed6c00d3b143dc2e96";

/// The index of the golden spec for two platforms; its linux/amd64 image is the golden
/// manifest itself. Pinned when multi-platform images came.
const GOLDEN_INDEX_PLATFORMS: &str = "linux/amd64,linux/arm64/v8";
const GOLDEN_INDEX_DIGEST: &str =
    "sha256:80cc1d2317387be4ea2bbcb998918a428c8aa7fd532ac7bb87322bb909634ef6";

fn digest_of(list: &str, reference: &str) -> String {
    let request = BuildRequest::new(
        Spec::parse(list).expect("valid"),
        Reference::parse(reference).expect("valid"),
    );
    build(&request, &mut Progress::hidden())
        .expect("build")
        .digest
}

#[test]
fn golden_manifest_digest() {
    assert_eq!(digest_of(GOLDEN_SPEC, "any/name:tag"), GOLDEN_DIGEST);
}

#[test]
fn golden_index_digest() {
    let request = BuildRequest::new(
        Spec::parse(GOLDEN_SPEC).expect("valid"),
        Reference::parse("any/name:tag").expect("valid"),
    )
    .platforms(Platform::parse_list(GOLDEN_INDEX_PLATFORMS).expect("valid"));
    let built = build(&request, &mut Progress::hidden()).expect("build");
    assert_eq!(built.manifests[0].digest, GOLDEN_DIGEST);
    assert_eq!(built.digest, GOLDEN_INDEX_DIGEST);
}

#[test]
fn golden_manifest_digest_with_a_tree_layer() {
    assert_eq!(
        digest_of(GOLDEN_TREE_SPEC, "any/name:tag"),
        GOLDEN_TREE_DIGEST
    );
}

#[test]
fn golden_manifest_digest_with_links_and_whiteouts() {
    assert_eq!(
        digest_of(GOLDEN_KINDS_SPEC, "any/name:tag"),
        GOLDEN_KINDS_DIGEST
    );
}

#[test]
fn golden_manifest_digests_of_compressed_layers() {
    assert_eq!(
        [
            digest_of(GOLDEN_GZIP_SPEC, "any/name:tag"),
            digest_of(GOLDEN_ZSTD_SPEC, "any/name:tag")
        ],
        [GOLDEN_GZIP_DIGEST, GOLDEN_ZSTD_DIGEST]
    );
}

#[test]
fn the_cli_gives_the_golden_digest_too() {
    let tmp = tempdir();
    let out = run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        GOLDEN_SPEC,
        "-o",
        &format!("oci:{}", path_str(&tmp.path().join("a"))),
        "x:1",
    ]));
    assert_eq!(json(&out)["digest"], GOLDEN_DIGEST);
}

#[test]
fn the_name_does_not_change_the_manifest() {
    assert_eq!(
        digest_of("1KB,2KB", "a:1"),
        digest_of("1KB,2KB", "localhost:5000/b/c:latest")
    );
}

#[test]
fn equivalent_spellings_give_the_same_image() {
    assert_eq!(digest_of("1MB,0.5KB", "a"), digest_of("1024KiB, 512B", "a"));
    assert_ne!(digest_of("1MB,512B", "a"), digest_of("512B,1MB", "a"));
    assert_ne!(digest_of("4KB", "a"), digest_of("4KB:files=2", "a"));
}

#[test]
fn outputs_are_byte_identical_across_runs() {
    let tmp = tempdir();
    let build_to = |name: &str| {
        let dir = tmp.path().join(name);
        let file = tmp.path().join(format!("{name}.tar"));
        let request = BuildRequest::new(
            Spec::parse("1MB,3KB:files=5").expect("valid"),
            Reference::parse("d:1").expect("valid"),
        )
        .output(Output::OciDir(dir.clone()))
        .output(Output::OciArchive(file.clone()));
        build(&request, &mut Progress::hidden()).expect("build");
        (dir, file)
    };
    let (dir_a, file_a) = build_to("a");
    let (dir_b, file_b) = build_to("b");
    assert!(
        std::fs::read(&file_a).expect("a") == std::fs::read(&file_b).expect("b"),
        "archives differ"
    );
    let blobs = entries(&dir_a.join("blobs/sha256"));
    assert_eq!(blobs, entries(&dir_b.join("blobs/sha256")));
    for name in ["index.json", "oci-layout"] {
        assert_eq!(
            std::fs::read(dir_a.join(name)).expect("a"),
            std::fs::read(dir_b.join(name)).expect("b")
        );
    }
}

#[test]
fn source_date_epoch_sets_mtime_and_created() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let out = run_ok(image_maker().env("SOURCE_DATE_EPOCH", "1700000000").args([
        "-q",
        "--json",
        "-s",
        GOLDEN_SPEC,
        "-o",
        &format!("oci:{}", path_str(&dir)),
        "x:1",
    ]));
    assert_ne!(json(&out)["digest"], GOLDEN_DIGEST);
    let layer = &json(&out)["layers"][0]["digest"];
    let blob = dir.join("blobs/sha256").join(
        layer
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:"),
    );
    let mut archive = tar::Archive::new(std::fs::File::open(blob).expect("blob"));
    for entry in archive.entries().expect("tar") {
        assert_eq!(
            entry.expect("entry").header().mtime().expect("mtime"),
            1_700_000_000
        );
    }
    let config = dir.join("blobs/sha256").join(
        json(&out)["config_digest"]
            .as_str()
            .expect("config digest")
            .trim_start_matches("sha256:"),
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config).expect("config")).expect("json");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["history"][0]["created"], "2023-11-14T22:13:20Z");
    let past_9999 = run(image_maker()
        .current_dir(tmp.path())
        .env("SOURCE_DATE_EPOCH", "253402300800")
        .args(["-s", "1KB", "-o", "oci:x", "x"]));
    assert_eq!(past_9999.status.code(), Some(2), "{}", stderr(&past_9999));
    let bad = run(image_maker()
        .current_dir(tmp.path())
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .args(["-s", "1KB", "-o", "oci:x", "x"]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("SOURCE_DATE_EPOCH `yesterday`"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(entries(tmp.path()), ["layout"]);
}

#[test]
fn a_thread_count_just_outside_its_bounds_is_refused_naming_it() {
    let tmp = tempdir();
    for (threads, ok) in [
        ("1", true),
        ("256", true),
        ("0", false),
        ("257", false),
        ("two", false),
    ] {
        let out = run(image_maker()
            .current_dir(tmp.path())
            .env("IMAGE_MAKER_THREADS", threads)
            .args(["-q", "-s", "1KB:compression=gzip", "-o", "oci:x", "x"]));
        if ok {
            assert_eq!(out.status.code(), Some(0), "{threads}: {}", stderr(&out));
            std::fs::remove_dir_all(tmp.path().join("x")).expect("removed");
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{threads}: {}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.starts_with(&format!("error: IMAGE_MAKER_THREADS `{threads}`"))
                && text.contains("hint:"),
            "{text}"
        );
        assert!(
            entries(tmp.path()).is_empty(),
            "{threads}: left {:?}",
            entries(tmp.path())
        );
    }
}
