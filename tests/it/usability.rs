//! What a user meets in the first hour: outputs whose parents do not exist yet, a second tag
//! in a layout, fault names as docker spells them, typos, negative sizes, completions and
//! the man page, `cache ls --json`, a registry that is not there, layouts named without
//! `oci:`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::serve::Served;
use crate::support::registry::{candidate_port, Registry};
use crate::support::*;

/// Nothing in the test's cache: no entry, no build in its log.
fn assert_nothing_built() {
    let cache = test_cache();
    let entries = cache.join("v1/entries");
    if entries.exists() {
        assert!(
            super::support::entries(&entries).is_empty(),
            "cache entries: {:?}",
            super::support::entries(&entries)
        );
    }
    assert_eq!(builds(&cache), 0, "builds in the cache's log");
}

fn in_dir(dir: &Path) -> Command {
    let mut cmd = image_maker();
    cmd.current_dir(dir);
    cmd
}

#[test]
fn outputs_create_missing_parent_directories() {
    let tmp = tempdir();
    run_ok(in_dir(tmp.path()).args([
        "-q",
        "-s",
        "1KB",
        "-o",
        "oci:out/small",
        "-o",
        "oci-archive:deep/er/small.tar",
        "mock/small:1",
    ]));
    assert!(tmp.path().join("out/small/oci-layout").is_file());
    assert!(tmp.path().join("deep/er/small.tar").is_file());
    assert_eq!(entries(&tmp.path().join("out")), ["small"]);
    assert_eq!(entries(&tmp.path().join("deep/er")), ["small.tar"]);
    if let Some(skopeo) = tool("skopeo") {
        for source in ["oci:out/small:1", "oci-archive:deep/er/small.tar"] {
            run_ok(
                skopeo
                    .cmd()
                    .current_dir(tmp.path())
                    .args(["inspect", source]),
            );
        }
    }
}

/// The tags `umoci ls` finds in the layout at `dir`, sorted.
fn umoci_tags(umoci: Tool, dir: &Path) -> Vec<String> {
    let out = run_ok(umoci.cmd().args(["ls", "--layout", path_str(dir)]));
    let mut tags: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    tags.sort();
    tags
}

fn skopeo_digest(skopeo: Tool, source: &str) -> String {
    let out = run_ok(skopeo.cmd().args(["inspect", "--raw", source]));
    let raw = out.stdout;
    format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&raw))
}

#[test]
fn a_new_tag_is_added_to_an_existing_layout() {
    let (Some(skopeo), Some(umoci), Some(oci_image_tool)) =
        (tool("skopeo"), tool("umoci"), tool("oci-image-tool"))
    else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    let dest = format!("oci:{}", path_str(&dir));
    let build = |spec: &str, reference: &str, extra: &[&str]| {
        run_ok(
            image_maker()
                .args(["-q", "-s", spec, "-o", &dest])
                .args(extra)
                .arg(reference),
        );
    };
    build("1KB", "mock/a:1", &[]);
    let first = skopeo_digest(skopeo, &format!("{dest}:1"));
    build("2KB", "mock/a:2", &[]);
    assert_eq!(umoci_tags(umoci, &dir), ["1", "2"]);
    // The first image is whole still: its manifest and every blob.
    assert_eq!(skopeo_digest(skopeo, &format!("{dest}:1")), first);
    for tag in ["1", "2"] {
        run_ok(skopeo.cmd().args(["inspect", &format!("{dest}:{tag}")]));
        assert_valid_layout(oci_image_tool, &dir, tag);
        run_ok(image_maker().args(["verify", "-q", &format!("{dest}:{tag}")]));
    }

    // The same tag again replaces that tag's manifest only.
    build("3KB", "mock/a:1", &[]);
    assert_eq!(umoci_tags(umoci, &dir), ["1", "2"]);
    assert_ne!(skopeo_digest(skopeo, &format!("{dest}:1")), first);
    run_ok(image_maker().args(["verify", "-q", &format!("{dest}:2")]));

    // An index per tag, beside the single images.
    build(
        "1KB",
        "mock/a:multi",
        &["--platform", "linux/amd64,linux/arm64"],
    );
    assert_eq!(umoci_tags(umoci, &dir), ["1", "2", "multi"]);
    // Not oci-image-tool here: Debian's keeps an index's descriptor whatever tag it is
    // asked for ("descriptor retrieved by refs [name=1] is not unique").
    for tag in ["1", "2", "multi"] {
        run_ok(skopeo.cmd().args(["inspect", &format!("{dest}:{tag}")]));
        run_ok(image_maker().args(["verify", "-q", &format!("{dest}:{tag}")]));
    }
    run_ok(skopeo.cmd().args([
        "inspect",
        "--override-arch",
        "arm64",
        &format!("{dest}:multi"),
    ]));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(3));
    assert_eq!(entries(tmp.path()), ["layout"], "nothing beside the layout");
}

#[test]
fn fault_names_are_accepted_in_lowercase() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let server = Served::start(&[]);
    let out = run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/faults/slow-64mb/mock:2x1KB", server.host),
    ]));
    assert!(
        stdout(&out).contains("faults/slow-64mb/mock"),
        "{}",
        stdout(&out)
    );
    let tmp = tempdir();
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/faults/slow-64mb/mock:2x1KB", server.host),
        &format!("oci:{}:1", path_str(&tmp.path().join("pulled"))),
    ]));
    let help = stdout(&run_ok(image_maker().args(["serve", "--help"])));
    assert!(help.contains("faults/slow-1mb/"), "{help}");
    assert!(!help.contains("slow-1MB"), "{help}");
}

#[test]
fn a_near_miss_of_a_command_is_not_built_as_an_image() {
    let tmp = tempdir();
    for (args, meant) in [
        (&["-s", "1KB", "verfy"][..], "verify"),
        (&["-s", "1KB", "-o", "oci:out", "inspcet"][..], "inspect"),
        (&["sevre", "--addr", "127.0.0.1:0"][..], "serve"),
        (&["pussh", "oci:x", "localhost:1/x"][..], "push"),
    ] {
        let out = run(in_dir(tmp.path()).args(args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("did you mean `{meant}`?")),
            "{args:?}: {err}"
        );
        assert!(err.starts_with("error: "), "{err}");
    }
    assert!(entries(tmp.path()).is_empty());
    assert_nothing_built();
}

#[test]
fn a_name_that_is_clearly_an_image_is_built_even_near_a_command() {
    let tmp = tempdir();
    for image in ["verfy:1", "mock/verfy", "tar", "map"] {
        run_ok(in_dir(tmp.path()).args(["-q", "-s", "1KB", "-o", "oci:out", image]));
    }
}

#[test]
fn negative_sizes_get_the_grammars_error() {
    for args in [
        &["-s", "-1MB", "x"][..],
        &["--layer-sizes", "-1MB", "x"][..],
        &["-s", "1KB,-1MB", "x"][..],
        &["x", "-s", "-1MB"][..],
    ] {
        let out = run(image_maker().args(args));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is negative") && err.contains("-1MB`"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("use '--"), "{args:?}: {err}");
    }
    assert_nothing_built();
}

#[test]
fn completions_and_the_man_page() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run_ok(image_maker().args(["completions", shell]));
        assert!(stdout(&out).contains("verify"), "{shell}");
    }
    let script = run_ok(image_maker().args(["completions", "bash"])).stdout;
    let tmp = tempdir();
    let file = tmp.path().join("image-maker.bash");
    fs::write(&file, &script).expect("write");
    run_ok(Command::new("bash").arg("-n").arg(&file));
    let bash = String::from_utf8_lossy(&script).into_owned();
    for command in ["serve", "push", "cache", "inspect", "completions"] {
        assert!(bash.contains(command), "{command}");
    }
    let out = run(image_maker().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));

    let man = stdout(&run_ok(image_maker().arg("man")));
    // After clap_mangen's definition of the apostrophe string (`.ie`/`.el`), the title.
    let first = man
        .lines()
        .find(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
        .unwrap_or_default();
    assert!(
        first.starts_with(".TH image-maker 1"),
        "{}",
        &man[..man.len().min(200)]
    );
    for command in ["serve", "push", "cache", "verify", "inspect"] {
        assert!(man.contains(command), "{command}");
    }
    let help = stdout(&run_ok(image_maker().arg("--help")));
    assert!(
        help.contains("completions") && help.contains("man"),
        "{help}"
    );
}

#[test]
fn cache_ls_json_lists_every_entry() {
    let tmp = tempdir();
    run_ok(in_dir(tmp.path()).args(["-q", "-s", "1KB", "-o", "oci:a", "x:1"]));
    run_ok(in_dir(tmp.path()).args([
        "-q",
        "-s",
        "2KB",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        "oci:b",
        "x:1",
    ]));
    let out = run_ok(image_maker().args(["cache", "ls", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2, "{list:?}");
    let by_spec = |spec: &str| {
        list.iter()
            .find(|e| e["spec"] == spec)
            .unwrap_or_else(|| panic!("no {spec} in {list:?}"))
    };
    let one = by_spec("1KB:files=1");
    assert_eq!(one["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(one["key"].as_str().map(str::len), Some(64));
    assert!(one["size"].as_u64().is_some_and(|s| s > 1024), "{one}");
    assert!(
        one["last_used"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{one}"
    );
    assert!(
        one["created"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{one}"
    );
    assert_eq!(
        by_spec("2KB:files=1")["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // The text form shows the same entries.
    let text = stdout(&run_ok(image_maker().args(["cache", "ls"])));
    for entry in list {
        let key = entry["key"].as_str().expect("key");
        assert!(text.contains(&key[..12]), "{text}");
    }
}

#[test]
fn a_refused_push_fails_before_anything_is_built() {
    // A port nothing listens on: free now, and connections to it are refused.
    let port = candidate_port();
    let target = format!("127.0.0.1:{port}/mock/refused:1");
    let tmp = tempdir();
    let out = run(in_dir(tmp.path())
        .env("DOCKER_CONFIG", tmp.path())
        .args(["-s", "1KB", "-o", "registry", &target]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("refuses connections"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert_nothing_built();
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
}

#[test]
fn a_layout_directory_needs_no_prefix() {
    let tmp = tempdir();
    run_ok(in_dir(tmp.path()).args(["-q", "-s", "1KB", "-o", "oci:lay", "mock/x:1"]));
    run_ok(in_dir(tmp.path()).args(["verify", "-q", "lay"]));
    let inspected = run_ok(in_dir(tmp.path()).args(["inspect", "lay"]));
    assert!(stdout(&inspected).contains("1KB"), "{}", stdout(&inspected));
    // A directory that is not a layout is not taken for one.
    fs::create_dir(tmp.path().join("plain")).expect("mkdir");
    for source in ["plain", "missing"] {
        let out = run(in_dir(tmp.path()).args(["verify", source]));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("`{source}`")),
            "{}",
            stderr(&out)
        );
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    run_ok(in_dir(tmp.path()).env("DOCKER_CONFIG", tmp.path()).args([
        "push",
        "-q",
        "lay",
        &format!("{}/mock/x:1", registry.host()),
    ]));
}

/// `--verify` and `cache verify`, the first names of `--rehash` and `cache rehash`, still
/// work for scripts that say them, and help no longer shows them.
#[test]
fn the_first_names_of_rehash_still_work_unlisted() {
    let tmp = tempdir();
    run_ok(in_dir(tmp.path()).args(["-q", "-s", "1KB", "--verify", "-o", "oci:a", "x:1"]));
    let new = run_ok(image_maker().args(["cache", "rehash"]));
    let old = run_ok(image_maker().args(["cache", "verify"]));
    assert!(stdout(&new).starts_with("ok "), "{}", stdout(&new));
    assert_eq!(stdout(&new), stdout(&old));
    let help = stdout(&run_ok(image_maker().args(["cache", "--help"])));
    assert!(
        help.contains("rehash") && !help.contains("verify"),
        "{help}"
    );
    let help = stdout(&run_ok(image_maker().arg("--help")));
    assert!(
        help.contains("--rehash") && !help.contains("--verify"),
        "{help}"
    );
}
