//! gzip and zstd layers and compressible content, as gzip, zstd, skopeo, umoci,
//! oci-image-tool and docker see them.

use std::path::Path;

use crate::support::*;

/// One layer of each encoding.
// The zstd layer is several frames, raw and compressed (tar headers), as a decoder must read them.
const MIXED: &str = "2MB:compression=gzip,5MB:files=3:compression=zstd,512KB";

fn build(dir: &Path, spec: &str, extra: &[&str]) -> serde_json::Value {
    let mut cmd = image_maker();
    cmd.args(["-q", "--json", "-s", spec, "-o"])
        .arg(format!("oci:{}", path_str(dir)))
        .args(extra)
        .arg("mock/enc:1");
    json(&run_ok(&mut cmd))
}

fn blob(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn gzip_zstd_and_plain_layers_decompress_to_their_diff_ids() {
    let (Some(gzip), Some(zstd), Some(skopeo)) = (tool("gzip"), tool("zstd"), tool("skopeo"))
    else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let built = build(&dir, MIXED, &[]);
    let raw = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--raw",
        &format!("oci:{}:1", path_str(&dir)),
    ])));
    let types: Vec<&str> = raw["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().expect("media type"))
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(
            &dir,
            raw["config"]["digest"].as_str().expect("config"),
        ))
        .expect("config blob"),
    )
    .expect("config json");
    let layers = built["layers"].as_array().expect("layers");
    for (i, (tool, layer)) in [Some(gzip), Some(zstd), None]
        .into_iter()
        .zip(layers)
        .enumerate()
    {
        let path = blob(&dir, layer["digest"].as_str().expect("digest"));
        let tar = match tool {
            Some(tool) => {
                run_ok(tool.cmd().arg("-t").arg(&path));
                stdout_bytes(tool.cmd().args(["-d", "-c"]).arg(&path))
            }
            None => std::fs::read(&path).expect("plain blob"),
        };
        let diff_id = sha256(&tar);
        assert_eq!(
            config["rootfs"]["diff_ids"][i],
            diff_id.as_str(),
            "layer {i}"
        );
        assert_eq!(layer["diff_id"], diff_id.as_str(), "layer {i}");
        assert_ne!(
            tool.is_some(),
            layer["digest"] == layer["diff_id"],
            "layer {i}"
        );
    }
}

/// What a program printed on stdout, as bytes.
fn stdout_bytes(cmd: &mut std::process::Command) -> Vec<u8> {
    run_ok(cmd).stdout
}

#[test]
fn validators_and_umoci_read_the_generators_bytes() {
    let (Some(skopeo), Some(umoci), Some(oci_image_tool)) =
        (tool("skopeo"), tool("umoci"), tool("oci-image-tool"))
    else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    build(&dir, MIXED, &[]);
    // Debian's umoci (0.4) and oci-image-tool (1.0.0-rc1) predate image-spec 1.1's zstd
    // media type: skopeo reads all three layers and rewrites them as gzip for them.
    let copy = tmp.path().join("copy");
    run_ok(skopeo.cmd().args([
        "copy",
        "-q",
        "--dest-compress",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:1", path_str(&dir)),
        &format!("oci:{}:1", path_str(&copy)),
    ]));
    assert_valid_layout(oci_image_tool, &copy, "1");
    let bundle = tmp.path().join("bundle");
    run_ok(umoci.cmd().args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:1", path_str(&copy)),
        path_str(&bundle),
    ]));
    assert_rootfs(&bundle.join("rootfs"), MIXED);

    // gzip and plain layers, as written, need no translation.
    let plain = tmp.path().join("plain");
    build(&plain, "1MB:compression=gzip:ratio=3,300KB", &[]);
    assert_valid_layout(oci_image_tool, &plain, "1");
}

#[test]
fn docker_loads_a_gzip_archive_and_a_zstd_image() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let tmp = tempdir();
    let archive = tmp.path().join("gz.tar");
    let name = format!("image-maker-test/gz:{}", unique());
    let image = EngineImage::named(docker, name.clone());
    let built = json(&run_ok(image_maker().args([
        "-q",
        "--json",
        "-s",
        "1MB:compression=gzip,64KB:files=4:compression=gzip:level=9",
        "-o",
        &format!("oci-archive:{}", path_str(&archive)),
        &name,
    ])));
    run_ok(docker.cmd().arg("load").arg("-i").arg(&archive));
    assert_eq!(image.inspect("{{.Id}}"), built["config_digest"]);

    // Straight into the engine: zstd layers arrive decompressed, and the image is the one
    // the config describes, whatever the docker version.
    let name = format!("image-maker-test/zstd:{}", unique());
    let image = EngineImage::named(docker, name.clone());
    let out = run_ok(image_maker().args([
        "--json",
        "-e",
        "docker",
        "-s",
        "1MB:compression=zstd",
        &name,
    ]));
    assert_eq!(image.inspect("{{.Id}}"), json(&out)["config_digest"]);
    let version = stdout(&run_ok(docker.cmd().args([
        "version",
        "--format",
        "{{.Server.Version}}",
    ])));
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(
        stderr(&out).contains("cannot read zstd layers"),
        major < 23,
        "docker {version}: {}",
        stderr(&out)
    );
}

#[test]
fn digests_do_not_depend_on_the_number_of_threads() {
    let Some(taskset) = tool("taskset") else {
        return;
    };
    let tmp = tempdir();
    // Several gzip blocks and zstd jobs, so that more than one thread has work.
    let spec = "6MB:compression=gzip:ratio=2,9MB:compression=zstd:ratio=3";
    let many = build(&tmp.path().join("many"), spec, &["--no-cache"]);
    let mut one = image_maker();
    one.args(["-q", "--json", "--no-cache", "-s", spec, "-o"])
        .arg(format!("oci:{}", path_str(&tmp.path().join("one"))))
        .arg("mock/enc:1");
    let mut pinned = taskset.cmd();
    pinned
        .args(["-c", "0"])
        .arg(one.get_program())
        .args(one.get_args());
    for (key, value) in one.get_envs() {
        match value {
            Some(value) => pinned.env(key, value),
            None => pinned.env_remove(key),
        };
    }
    let one = json(&run_ok(&mut pinned));
    assert_eq!(one["layers"], many["layers"]);
    assert_eq!(one["digest"], many["digest"]);
}

/// The uncompressed size over what `tool -N` makes of it.
fn ratio(tool: Tool, level: &str, data: &Path) -> f64 {
    let out = stdout_bytes(tool.cmd().args([level, "-c"]).arg(data));
    std::fs::metadata(data).expect("data").len() as f64 / out.len() as f64
}

#[test]
fn ratio_is_what_gzip_and_zstd_reach() {
    let (Some(gzip), Some(zstd)) = (tool("gzip"), tool("zstd")) else {
        return;
    };
    let tmp = tempdir();
    for (r, tolerance) in [(4.0, 0.15), (1.0, 0.01)] {
        let spec = format!("2MB:ratio={r}");
        let dir = tmp.path().join(format!("r{r}"));
        let built = build(&dir, &spec, &[]);
        let tar = blob(&dir, built["layers"][0]["digest"].as_str().expect("digest"));
        for (tool, level) in [(gzip, "-6"), (zstd, "-3")] {
            let reached = ratio(tool, level, &tar);
            assert!(
                (reached - r).abs() <= r * tolerance,
                "`{spec}`: {} {level} reaches {reached:.3}",
                tool.name()
            );
        }
        // Data, not filler: no byte value makes up half of it.
        let bytes = std::fs::read(&tar).expect("tar");
        let mut counts = [0usize; 256];
        for b in &bytes {
            counts[usize::from(*b)] += 1;
        }
        let most = counts.iter().max().copied().unwrap_or(0);
        assert!(
            most * 2 < bytes.len(),
            "`{spec}`: one byte value is {most} of {}",
            bytes.len()
        );
    }
}

#[test]
fn bad_encodings_are_usage_errors_that_name_the_value() {
    for (args, named) in [
        (vec!["-s", "1MB:compression=lz4"], "`lz4`"),
        (vec!["-s", "1MB", "--compression", "brotli"], "`brotli`"),
        (vec!["-s", "1MB:compression=gzip:level=10"], "`level=10`"),
        (vec!["-s", "1MB:compression=zstd:level=0"], "`level=0`"),
        (
            vec![
                "-s",
                "1MB",
                "--compression",
                "gzip",
                "--compression-level",
                "12",
            ],
            "`12`",
        ),
        (vec!["-s", "1MB", "--compression-level", "3"], "`3`"),
        (vec!["-s", "1MB:level=3"], "`1MB:level=3`"),
        (vec!["-s", "1MB:ratio=0"], "`ratio=0`"),
        (vec!["-s", "1MB:ratio=abc"], "`ratio=abc`"),
        (vec!["-s", "1MB:ratio=101"], "`ratio=101`"),
        (vec!["-s", "1MB:ratio=1.234"], "`ratio=1.234`"),
        (
            vec!["-s", "1MB:compression=gzip", "-b", "dockerfile"],
            "`1MB:files=1:compression=gzip`",
        ),
    ] {
        let tmp = tempdir();
        let mut cmd = image_maker();
        cmd.current_dir(tmp.path())
            .args(&args)
            .args(["-o", "oci:out", "mock/bad:1"]);
        let out = run(&mut cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?} should name {named}: {err}");
        assert!(err.contains("hint:"), "{args:?}: {err}");
        assert!(
            entries(tmp.path()).is_empty(),
            "{args:?} left {:?}",
            entries(tmp.path())
        );
    }
}

#[test]
fn one_spec_gives_the_same_files_in_every_encoding() {
    let tmp = tempdir();
    let plain = build(&tmp.path().join("plain"), "1MB:files=2", &[]);
    let gzip = build(
        &tmp.path().join("gzip"),
        "1MB:files=2",
        &["--compression", "gzip"],
    );
    assert_eq!(plain["layers"][0]["diff_id"], gzip["layers"][0]["diff_id"]);
    assert_ne!(plain["layers"][0]["digest"], gzip["layers"][0]["digest"]);
    assert_eq!(gzip["spec"], "1MB:files=2:compression=gzip");
    // `compression=none` and the default level are no spec of their own.
    let same = build(
        &tmp.path().join("same"),
        "1MB:files=2:compression=gzip:level=6",
        &["--compression", "zstd"],
    );
    assert_eq!(same["digest"], gzip["digest"]);
    let none = build(
        &tmp.path().join("none"),
        "1MB:files=2:compression=none",
        &["--compression", "gzip"],
    );
    assert_eq!(none["digest"], plain["digest"]);
}
