//! `--dry-run`: the plan of a build, checked as a build checks it, with nothing written.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// `--dry-run --json` of `args`, and the real build's `--json` of the same.
fn dry_and_real(args: &[&str]) -> (serde_json::Value, serde_json::Value) {
    let dry = json(&run_ok(image_maker().args(args).args([
        "-q",
        "--json",
        "--dry-run",
    ])));
    let real = json(&run_ok(image_maker().args(args).args(["-q", "--json"])));
    (dry, real)
}

/// Every layer's blob size of a real build's `--json`, one list per platform.
fn real_sizes(built: &serde_json::Value) -> Vec<Vec<u64>> {
    let sizes = |layers: &serde_json::Value| -> Vec<u64> {
        layers
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["size"].as_u64().expect("size"))
            .collect()
    };
    match built["manifests"].as_array() {
        Some(images) => images.iter().map(|m| sizes(&m["layers"])).collect(),
        None => vec![sizes(&built["layers"])],
    }
}

/// The dry run's blob sizes of `field` (`exact` or `at_most`), one list per layer set.
fn planned(dry: &serde_json::Value, field: &str) -> Vec<Vec<u64>> {
    dry["layer_sets"]
        .as_array()
        .expect("layer sets")
        .iter()
        .map(|set| {
            set["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["blob"][field].as_u64().expect(field))
                .collect()
        })
        .collect()
}

fn need(dry: &serde_json::Value, output: &str) -> u64 {
    dry["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["output"] == output)
        .and_then(|o| o["bytes"].as_u64())
        .unwrap_or_else(|| panic!("no need for {output}: {dry}"))
}

fn files_bytes(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, size)| size).sum()
}

#[test]
fn a_dry_run_writes_nothing_anywhere() {
    let tmp = tempdir();
    let parent = tmp.path().join("parent");
    std::fs::create_dir(&parent).expect("mkdir");
    // The temp dir the process sees is one of ours: nothing else writes to it meanwhile.
    let temp = tmp.path().join("tmp");
    std::fs::create_dir(&temp).expect("mkdir");
    let cache = test_cache();
    let before = (entries(tmp.path()), entries(&parent), entries(&cache));
    for extra in [&[][..], &["--no-cache"][..]] {
        let out = run_ok(
            image_maker()
                .env("TMPDIR", &temp)
                .args([
                    "-s",
                    "2MB,1KB:tree=40:compression=gzip",
                    "--dry-run",
                    "-o",
                    &format!("oci:{}", path_str(&parent.join("out"))),
                    "-o",
                    &format!("oci-archive:{}", path_str(&parent.join("out.tar"))),
                    "-o",
                    "registry",
                    "localhost:1/mock/dry:1",
                ])
                .args(extra),
        );
        let text = stdout(&out);
        assert!(text.contains("the build fits"), "{text}");
        assert!(text.contains("layer1/2MB-file"), "{text}");
        assert!(text.contains("more (-v lists them all)"), "{text}");
        assert_eq!(
            (entries(tmp.path()), entries(&parent), entries(&cache)),
            before,
            "{extra:?}"
        );
        assert!(entries(&temp).is_empty(), "{:?}", entries(&temp));
    }
    // With the cache in use and the image not in it, the plan counts its entry.
    let dry = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "--dry-run",
        "-s",
        "1KB",
        "-o",
        &format!("oci:{}", path_str(&parent.join("out"))),
        "mock/dry:1",
    ])));
    assert_eq!(
        need(&dry, "cache"),
        need(&dry, &format!("oci:{}", path_str(&parent.join("out"))))
    );
    assert_eq!(entries(&cache), before.2);
}

#[test]
fn verbose_lists_every_entry() {
    let out = run_ok(image_maker().args([
        "-s",
        "4KB:tree=40",
        "-o",
        "oci:nowhere-needed",
        "--no-cache",
        "--dry-run",
        "-v",
        "mock/dry:1",
    ]));
    let text = stdout(&out);
    let spec = image_maker::Spec::parse("4KB:tree=40").expect("valid");
    for entry in image_maker::testing::plan_layers(&spec)[0].entries() {
        let path = entry.path();
        assert!(text.contains(path), "{path} not in {text}");
    }
    assert!(!text.contains("more"), "{text}");
}

#[test]
fn plain_blob_sizes_and_output_bytes_equal_a_real_build() {
    let tmp = tempdir();
    for (i, (spec, platforms)) in [
        ("3KB,1001B:files=3", "linux/amd64"),
        ("64KB:tree=40", "linux/amd64"),
        ("2KB,1KB:files=2", "linux/amd64,linux/arm64"),
        (
            "64KB:tree=40:symlinks=5:hardlinks=3:dirs=2,4KB:whiteouts=3",
            "linux/amd64",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("layout-{i}"));
        let archive = dir.with_extension("tar");
        let oci = format!("oci:{}", path_str(&dir));
        let oci_archive = format!("oci-archive:{}", path_str(&archive));
        let (dry, real) = dry_and_real(&[
            "-s",
            spec,
            "--platform",
            platforms,
            "--no-cache",
            "-o",
            &oci,
            "-o",
            &oci_archive,
            "mock/dry:1",
        ]);
        assert_eq!(
            planned(&dry, "exact"),
            real_sizes(&real),
            "{spec} {platforms}"
        );
        assert_eq!(need(&dry, &oci), files_bytes(&dir), "{spec} {platforms}");
        let archive_size = std::fs::metadata(&archive).expect("archive").len();
        assert_eq!(need(&dry, &oci_archive), archive_size, "{spec} {platforms}");
    }
}

#[test]
fn shared_layers_are_planned_once() {
    let dry = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "--dry-run",
        "--no-cache",
        "-s",
        "1KB",
        "--platform",
        "linux/amd64,linux/arm64",
        "--shared-layers",
        "mock/dry:1",
    ])));
    assert_eq!(dry["layer_sets"].as_array().map(Vec::len), Some(1), "{dry}");
    assert_eq!(
        dry["layer_sets"][0]["platforms"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn compressed_blobs_stay_within_the_bound() {
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let (dry, real) = dry_and_real(&[
        "-s",
        "300KB:compression=gzip,300KB:compression=zstd,256KB:compression=gzip:level=1,200KB:ratio=4:compression=zstd",
        "--no-cache",
        "-o",
        &format!("oci:{}", path_str(&dir)),
        "mock/dry:1",
    ]);
    let bounds = planned(&dry, "at_most");
    let real = real_sizes(&real);
    for (bound, size) in bounds[0].iter().zip(&real[0]) {
        assert!(size <= bound, "real {size} > bound {bound}");
    }
    let layers = &dry["layer_sets"][0]["layers"];
    assert!(layers[0]["blob"]["exact"].is_null(), "{layers}");
    let expected = layers[3]["blob"]["expected"].as_u64().expect("expected");
    let tar = layers[3]["tar_size"].as_u64().expect("tar");
    assert_eq!(expected, tar / 4);
    // The layout's real bytes are within what the plan says it needs at most.
    assert!(files_bytes(&dir) <= need(&dry, &format!("oci:{}", path_str(&dir))));
}

#[test]
fn a_nine_gib_layer_is_planned_without_generating_it() {
    let tmp = tempdir();
    // With a 64 TiB layer beside it, which no machine generates or hashes within the two
    // minutes the guard waits (that takes over 500 GB/s; DESIGN.md measures ~2-4): that the
    // dry run ends at all says it computed the sizes instead, however loaded the machine.
    // Planning takes well under a second, so the guard never decides a sound run.
    let out = spawn(image_maker().args([
        "-q",
        "--json",
        "--dry-run",
        "--no-cache",
        "-s",
        "9GB,64TB",
        "-o",
        &format!("oci:{}", path_str(&tmp.path().join("big"))),
        "mock/big:1",
    ]))
    .finish_within(Duration::from_secs(120));
    // Fits or not depends on this machine's disk; the sizes do not.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
    let dry = json(&out);
    let layers = &dry["layer_sets"][0]["layers"];
    // `layerN/`, the file's header (its size in base-256, as the tar crate writes sizes
    // past ustar's 8 GiB), the data, the two end blocks.
    for (i, data) in [(0, 9u64 << 30), (1, 64u64 << 40)] {
        let tar = 512 + 512 + data + 1024;
        let layer = &layers[i];
        assert_eq!(layer["tar_size"].as_u64(), Some(tar), "{layer}");
        assert_eq!(layer["blob"]["exact"].as_u64(), Some(tar), "{layer}");
    }
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn a_build_that_does_not_fit_exits_1_naming_the_place() {
    let tmp = tempdir();
    let dest = tmp.path().join("huge");
    // No disk here has a free petabyte, and nothing is written to find that out.
    let out = run(image_maker().args([
        "--dry-run",
        "--no-cache",
        "-s",
        "1024TB",
        "-o",
        &format!("oci:{}", path_str(&dest)),
        "mock/huge:1",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not enough space at"), "{err}");
    assert!(err.contains(&format!("oci:{}", path_str(&dest))), "{err}");
    assert!(err.contains("short") && err.contains("hint:"), "{err}");
    assert!(stdout(&out).contains("DOES NOT FIT"), "{}", stdout(&out));
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn errors_are_those_of_a_real_build() {
    let tmp = tempdir();
    // A missing parent is created; one that is a file cannot be.
    std::fs::write(tmp.path().join("file"), "").expect("write");
    let missing = tmp.path().join("file/out");
    let same = tmp.path().join("same");
    let cases: [(Vec<String>, &str); 3] = [
        (vec!["-s".into(), "1XB".into()], "1XB"),
        (
            vec![
                "-s".into(),
                "1KB".into(),
                "-o".into(),
                format!("oci:{}", path_str(&missing)),
            ],
            "not a directory",
        ),
        (
            vec![
                "-s".into(),
                "1KB".into(),
                "-o".into(),
                format!("oci:{}", path_str(&same)),
                "-o".into(),
                format!("oci-archive:{}/", path_str(&same)),
            ],
            "given twice",
        ),
    ];
    for (args, named) in cases {
        let dry = run(image_maker()
            .args(&args)
            .args(["--no-cache", "--dry-run", "mock/bad:1"]));
        let real = run(image_maker().args(&args).args(["--no-cache", "mock/bad:1"]));
        assert_eq!(dry.status.code(), real.status.code(), "{args:?}");
        assert!(matches!(dry.status.code(), Some(1 | 2)), "{args:?}");
        assert!(stderr(&dry).contains(named), "{args:?}: {}", stderr(&dry));
        assert!(stdout(&dry).is_empty(), "{args:?}");
    }
    assert_eq!(entries(tmp.path()), ["file"]);
}
