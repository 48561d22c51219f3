//! The cache directory as `serve` and the cache share it: memos age out with gc, junk in
//! the memo directory neither hangs nor slows a server, nothing planted there is followed,
//! directories are private and another user's is refused, and replicas on one directory
//! answer each other's digests. Every server is the CLI on a loopback port; curl and skopeo
//! are the clients.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::serve::{tag, Served};
use crate::support::*;

fn memo_dir(cache: &Path) -> PathBuf {
    cache.join("serve/v1")
}

/// The memos (regular files, not temporary ones) under `cache`, by name, with their text.
fn memos(cache: &Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = fs::read_dir(memo_dir(cache))
        .map(|items| {
            items
                .flatten()
                .filter(|i| i.file_type().is_ok_and(|t| t.is_file()))
                .map(|i| {
                    let name = i.file_name().to_string_lossy().into_owned();
                    (name, fs::read_to_string(i.path()).unwrap_or_default())
                })
                .filter(|(name, _)| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The key of the memo of `list` (canonical form `canonical`).
fn memo_of(cache: &Path, canonical: &str) -> String {
    memos(cache)
        .into_iter()
        .find(|(_, text)| text.starts_with(&format!("spec {canonical}\n")))
        .unwrap_or_else(|| panic!("no memo of {canonical} in {:?}", memos(cache)))
        .0
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn cache_cmd(cache: &Path, args: &[&str]) -> std::process::Output {
    run(image_maker()
        .env("IMAGE_MAKER_CACHE_DIR", cache)
        .arg("cache")
        .args(args))
}

#[test]
fn gc_ages_memos_out_and_keeps_a_used_one_and_clear_removes_them() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let cache = tempdir();
    let (old, used) = ("1KB,2KB", "3KB");
    {
        let server = Served::start_in(&[], cache.path());
        for list in [old, used] {
            server.get_ok(curl, &format!("/v2/mock/manifests/{}", tag(list)));
        }
    }
    let old_key = memo_of(cache.path(), "1KB:files=1,2KB:files=1");
    let used_key = memo_of(cache.path(), "3KB:files=1");
    // Both made three days ago; then a server reads one of them.
    let long_ago = SystemTime::now() - Duration::from_secs(3 * 86_400);
    for dir in ["serve/v1", "serve/v1-by-digest"] {
        for item in fs::read_dir(cache.path().join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            set_mtime(&item.path(), long_ago);
        }
    }
    Served::start_in(&[], cache.path()).get_ok(curl, &format!("/v2/mock/manifests/{}", tag(used)));
    let before = stdout(&cache_cmd(cache.path(), &["ls"]));
    assert!(!before.contains(", 0 B on disk"), "{before}");
    let gc = cache_cmd(cache.path(), &["gc", "--max-age", "1d"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(
        stdout(&gc).contains("removed 1 digest memo of `serve`"),
        "{}",
        stdout(&gc)
    );
    let left: Vec<String> = memos(cache.path()).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        left,
        std::slice::from_ref(&used_key),
        "the old memo goes, the used one stays"
    );
    // The old memo's pointers went with it; the used one's stay.
    for item in fs::read_dir(cache.path().join("serve/v1-by-digest"))
        .expect("index")
        .flatten()
    {
        let text = fs::read_to_string(item.path()).expect("pointer");
        assert!(
            text.contains(&used_key) && !text.contains(&old_key),
            "{text}"
        );
    }
    let clear = cache_cmd(cache.path(), &["clear"]);
    assert!(clear.status.success(), "{}", stderr(&clear));
    assert!(memos(cache.path()).is_empty(), "{:?}", memos(cache.path()));
    let pointers = fs::read_dir(cache.path().join("serve/v1-by-digest"))
        .map(|i| i.count())
        .unwrap_or(0);
    assert_eq!(pointers, 0);
    let after = stdout(&cache_cmd(cache.path(), &["ls"]));
    assert!(after.contains(", 0 B on disk"), "{after}");
}

#[test]
fn junk_in_the_memo_directory_neither_hangs_nor_slows_start_and_requests_still_work() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let cache = tempdir();
    let (fifo_list, huge_list) = ("2KB,1KB:files=2", "4KB");
    let manifest_path = |list: &str| format!("/v2/mock/manifests/{}", tag(list));
    let (fifo_manifest, huge_manifest) = {
        let server = Served::start_in(&[], cache.path());
        (
            server.get_ok(curl, &manifest_path(fifo_list)),
            server.get_ok(curl, &manifest_path(huge_list)),
        )
    };
    let dir = memo_dir(cache.path());
    let fifo_key = memo_of(cache.path(), "2KB:files=1,1KB:files=2");
    let huge_key = memo_of(cache.path(), "4KB:files=1");
    let mkfifo = |path: &Path| {
        let _ = fs::remove_file(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    };
    // A FIFO where one memo was, a 64 GiB sparse file where the other was, and more junk
    // beside them: a FIFO, a directory and a symlink to a device under names of keys.
    mkfifo(&dir.join(&fifo_key));
    fs::File::create(dir.join(&huge_key))
        .and_then(|f| f.set_len(64 << 30))
        .expect("sparse file");
    mkfifo(&dir.join("f".repeat(64)));
    fs::create_dir(dir.join("d".repeat(64))).expect("mkdir");
    std::os::unix::fs::symlink("/dev/zero", dir.join("e".repeat(64))).expect("symlink");
    // And a FIFO where the pointer of a layer's digest was.
    let doc: serde_json::Value = serde_json::from_slice(&fifo_manifest).expect("json");
    let layer = doc["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    mkfifo(
        &cache
            .path()
            .join("serve/v1-by-digest")
            .join(layer.trim_start_matches("sha256:")),
    );
    // Ten seconds is what the debug binary needs on a loaded machine many times over; a
    // server that reads the FIFO at start never starts.
    let server = Served::start_within(&[], cache.path(), Duration::from_secs(10));
    assert_eq!(
        server.get_ok(curl, &manifest_path(fifo_list)),
        fifo_manifest
    );
    assert_eq!(
        server.get_ok(curl, &manifest_path(huge_list)),
        huge_manifest
    );
    let log = server.log();
    for (key, why) in [
        (&fifo_key, "it is a FIFO, not a regular file"),
        (&huge_key, "it holds 68719476736 bytes"),
    ] {
        assert!(
            log.lines().any(|l| l.starts_with("warning: skipping")
                && l.contains(key.as_str())
                && l.contains(why)),
            "{log}"
        );
    }
    // The memo is written again in place of the FIFO.
    assert!(fs::metadata(dir.join(&fifo_key)).expect("memo").is_file());
    // A replica asked for the layer whose pointer is a FIFO answers at once, without it.
    let replica = Served::start_within(&[], cache.path(), Duration::from_secs(10));
    let (status, _) = replica.get(curl, &format!("/v2/mock/blobs/{layer}"));
    assert_eq!(status, 404, "{}", replica.log());
    assert!(replica.log().contains("a FIFO"), "{}", replica.log());
}

#[test]
fn symlinks_planted_where_the_cache_writes_are_not_followed() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let work = tempdir();
    let target = work.path().join("target");
    fs::write(&target, "untouched\n").expect("target");
    // A memo's temporary file: its name was `.KEY.PID.0` for the first memo a server
    // writes, so a symlink could be planted there before it.
    let cache = tempdir();
    let list = "1KB,1KB:files=2";
    let path = format!("/v2/mock/manifests/{}", tag(list));
    let manifest = Served::start_in(&[], cache.path()).get_ok(curl, &path);
    let key = memo_of(cache.path(), "1KB:files=1,1KB:files=2");
    fs::remove_file(memo_dir(cache.path()).join(&key)).expect("memo removed");
    let server = Served::start_in(&[], cache.path());
    let planted = memo_dir(cache.path()).join(format!(".{key}.{}.0", server.pid()));
    std::os::unix::fs::symlink(&target, &planted).expect("symlink");
    assert_eq!(server.get_ok(curl, &path), manifest);
    assert_eq!(fs::read_to_string(&target).expect("target"), "untouched\n");
    assert_eq!(memo_of(cache.path(), "1KB:files=1,1KB:files=2"), key);
    // The cache's log.
    let cache = tempdir();
    fs::create_dir(cache.path().join("v1")).expect("mkdir");
    std::os::unix::fs::symlink(&target, cache.path().join("v1/log")).expect("symlink");
    let out_dir = work.path().join("out");
    let build = |args: &[&str]| {
        run_ok(
            image_maker()
                .env("IMAGE_MAKER_CACHE_DIR", cache.path())
                .args(["-q", "-s", "1KB,2KB", "-o"])
                .arg(format!("oci:{}", out_dir.display()))
                .args(args)
                .arg("mock/planted:1"),
        )
    };
    build(&[]);
    assert_eq!(fs::read_to_string(&target).expect("target"), "untouched\n");
    // The damage marker: a dangling symlink where it goes, and a blob damaged since it
    // was hashed, so that the next use marks the entry.
    let entries = cache.path().join("v1/entries");
    let entry = fs::read_dir(&entries)
        .expect("entries")
        .flatten()
        .next()
        .expect("an entry")
        .path();
    let created = work.path().join("created-through-the-symlink");
    std::os::unix::fs::symlink(&created, entry.join("damaged")).expect("symlink");
    let blob = fs::read_dir(entry.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .max_by_key(|b| b.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a blob")
        .path();
    flip_byte(&blob, false);
    fs::remove_dir_all(&out_dir).expect("out removed");
    build(&[]);
    assert!(
        !created.exists(),
        "the marker was written through the symlink"
    );
    assert_eq!(fs::read_to_string(&target).expect("target"), "untouched\n");
}

#[test]
fn cache_directories_are_private_and_another_users_is_refused() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let work = tempdir();
    let mode = |path: &Path| fs::metadata(path).expect("stat").mode() & 0o7777;
    // Made by a build, parents included.
    let made = work.path().join("new/cache");
    run_ok(
        image_maker()
            .env("IMAGE_MAKER_CACHE_DIR", &made)
            .args(["-q", "-s", "1KB", "-o"])
            .arg(format!("oci:{}", work.path().join("out").display()))
            .arg("mock/private:1"),
    );
    let dirs = [
        "..",
        "",
        "v1",
        "v1/entries",
        "v1/blobs",
        "v1/blobs/sha256",
        "v1/locks",
        "v1/tmp",
        "v1/archives",
    ];
    for dir in dirs {
        assert_eq!(mode(&made.join(dir)), 0o700, "{dir}");
    }
    // And by a server.
    let served = work.path().join("served");
    Served::start_in(&[], &served).get_ok(curl, &format!("/v2/mock/manifests/{}", tag("1KB")));
    for dir in ["", "serve", "serve/v1", "serve/v1-by-digest"] {
        assert_eq!(mode(&served.join(dir)), 0o700, "{dir}");
    }
    // Every user may write to it: refused, whoever owns it.
    let open = work.path().join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = cache_cmd(&open, &["ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "error: the cache directory `{}` can be written by every user (mode 777)",
            open.display()
        )),
        "{}",
        stderr(&out)
    );
    // Its group may: a warning, as that group is often the user alone.
    let group = work.path().join("group");
    fs::create_dir(&group).expect("mkdir");
    fs::set_permissions(&group, fs::Permissions::from_mode(0o770)).expect("chmod");
    let out = cache_cmd(&group, &["ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("can be written by its group"),
        "{}",
        stderr(&out)
    );
    // Another user's: refused, as ssh refuses a foreign ~/.ssh, by every command.
    let Some(_root) = crate::support::root("chown a cache directory to another user") else {
        return;
    };
    let foreign = work.path().join("foreign");
    fs::create_dir(&foreign).expect("mkdir");
    std::os::unix::fs::chown(&foreign, Some(1000), Some(1000)).expect("chown");
    let refused = format!(
        "error: the cache directory `{}` is owned by uid 1000, not you (uid 0)\nhint: use a cache directory of your own: IMAGE_MAKER_CACHE_DIR=",
        foreign.display()
    );
    let build = |extra: &[&str]| {
        run(image_maker()
            .env("IMAGE_MAKER_CACHE_DIR", &foreign)
            .args(["-q", "-s", "1KB", "-o"])
            .arg(format!("oci:{}", work.path().join("out2").display()))
            .args(extra)
            .arg("mock/foreign:1"))
    };
    for out in [
        cache_cmd(&foreign, &["ls"]),
        cache_cmd(&foreign, &["clear"]),
        build(&[]),
    ] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(&refused), "{}", stderr(&out));
    }
    assert!(
        fs::read_dir(&foreign).expect("dir").next().is_none(),
        "nothing written"
    );
    // Without the cache, the same build works.
    let out = build(&["--no-cache"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn replicas_on_one_cache_directory_answer_each_others_digests() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let cache = tempdir();
    // Both up before either has made anything: B learns A's digests only from the disk.
    let a = Served::start_in(&[], cache.path());
    let b = Served::start_in(&[], cache.path());
    let list = "1MB:compression=gzip,2KB:files=3,3KB:compression=zstd";
    let manifest = a.get_ok(curl, &format!("/v2/mock/manifests/{}", tag(list)));
    let digest = sha256(&manifest);
    let doc: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    let mut blobs: Vec<String> = doc["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_owned())
        .collect();
    blobs.push(doc["config"]["digest"].as_str().expect("config").to_owned());
    for blob in &blobs {
        let bytes = b.get_ok(curl, &format!("/v2/other/name/blobs/{blob}"));
        assert_eq!(&sha256(&bytes), blob);
    }
    assert_eq!(
        b.get_ok(curl, &format!("/v2/mock/manifests/{digest}")),
        manifest
    );
    // An index: its digest, then each image's manifest and blobs, from another replica.
    let index = a.get_ok(
        curl,
        &format!(
            "/v2/platform/linux-arm64_linux-amd64/mock/manifests/{}",
            tag("2KB,1KB:compression=gzip")
        ),
    );
    let c = Served::start_in(&[], cache.path());
    assert_eq!(
        c.get_ok(curl, &format!("/v2/mock/manifests/{}", sha256(&index))),
        index
    );
    let doc: serde_json::Value = serde_json::from_slice(&index).expect("json");
    for image in doc["manifests"].as_array().expect("manifests") {
        let digest = image["digest"].as_str().expect("digest");
        let manifest = b.get_ok(curl, &format!("/v2/mock/manifests/{digest}"));
        assert_eq!(sha256(&manifest), digest);
        let doc: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
        for layer in doc["layers"].as_array().expect("layers") {
            let blob = layer["digest"].as_str().expect("digest");
            assert_eq!(
                &sha256(&b.get_ok(curl, &format!("/v2/mock/blobs/{blob}"))),
                blob
            );
        }
    }
    // What nobody made is unknown, asked once or twice.
    let nobody = format!("sha256:{}", "0".repeat(64));
    for _ in 0..2 {
        assert_eq!(b.get(curl, &format!("/v2/mock/blobs/{nobody}")).0, 404);
        assert_eq!(b.get(curl, &format!("/v2/mock/manifests/{nobody}")).0, 404);
    }
    // skopeo, by digest from B alone, checks every blob as it copies.
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let copied = tempdir();
    let fresh = Served::start_in(&[], cache.path());
    run_ok(skopeo.cmd().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/mock@{digest}", fresh.host),
        &format!("oci:{}:1", copied.path().display()),
    ]));
}

/// How many layer blob bodies `server` has started from `source` (`cache`, `generated`,
/// `stale-cache`).
pub(crate) fn bodies_from(curl: Tool, server: &Served, source: &str) -> f64 {
    let samples = crate::serve_metrics::parse(&crate::serve_metrics::metrics_text(curl, server));
    let key = format!("image_maker_layer_blob_bodies_total{{source=\"{source}\"}}");
    samples.get(&key).copied().unwrap_or(0.0)
}

/// The first layer's digest of the image `path` names.
pub(crate) fn first_layer(curl: Tool, server: &Served, path: &str) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&server.get_ok(curl, path)).expect("a manifest");
    manifest["layers"][0]["digest"]
        .as_str()
        .expect("a digest")
        .to_owned()
}

#[test]
fn a_cached_image_is_sent_from_the_cache_and_a_damaged_blob_is_regenerated_and_healed() {
    let Some(curl) = tool("curl") else { return };
    let cache = tempdir();
    let list = "16MB:ratio=3:compression=gzip";
    let work = tempdir();
    let images = work.path().join("warm.toml");
    fs::write(
        &images,
        format!("\"mock/warm:v1\" = {{ layers = \"{list}\" }}\n"),
    )
    .expect("written");
    let server = Served::start_in(&["--warm", path_str(&images)], cache.path());
    server.log_with("cache: warmed 1 of 1 images");
    let digest = first_layer(curl, &server, "/v2/mock/warm/manifests/v1");
    let blob = format!("/v2/mock/warm/blobs/{digest}");
    // From the cache: the right bytes, for a fraction of the CPU that making them costs.
    let cpu = crate::serve_limits::cpu_seconds(server.pid());
    for _ in 0..3 {
        assert_eq!(sha256(&server.get_ok(curl, &blob)), digest);
    }
    let from_cache = crate::serve_limits::cpu_seconds(server.pid()) - cpu;
    assert_eq!(bodies_from(curl, &server, "cache"), 3.0);
    assert_eq!(bodies_from(curl, &server, "generated"), 0.0);
    // The same tag by its synthesized name is the same image, so the same file.
    assert_eq!(
        first_layer(curl, &server, &format!("/v2/mock/manifests/{}", tag(list))),
        digest
    );
    assert_eq!(sha256(&server.get_ok(curl, &blob)), digest);
    assert_eq!(bodies_from(curl, &server, "cache"), 4.0);

    // One byte of the cached file changed in place, as a careless hand or a disk would.
    let file = fs::read_dir(cache.path().join("v1/entries"))
        .expect("entries")
        .flatten()
        .map(|e| e.path().join("blobs/sha256").join(&digest[7..]))
        .find(|p| p.exists())
        .expect("the entry holds the layer");
    let mut bytes = fs::read(&file).expect("read");
    bytes[1000] ^= 0xff;
    fs::write(&file, &bytes).expect("damaged");
    // Not sent: the stamp moved, so the blob is made again, byte for byte right.
    let cpu = crate::serve_limits::cpu_seconds(server.pid());
    assert_eq!(sha256(&server.get_ok(curl, &blob)), digest);
    let generated = crate::serve_limits::cpu_seconds(server.pid()) - cpu;
    assert_eq!(bodies_from(curl, &server, "stale-cache"), 1.0);
    assert_eq!(bodies_from(curl, &server, "generated"), 1.0);
    assert!(
        from_cache * 4.0 < generated * 3.0,
        "three sends from the cache took {from_cache:.2} CPU s, one generated {generated:.2}"
    );
    // The entry is checked, found damaged, and built again: the next GETs come from the
    // cache once more, with the right bytes.
    server.log_with("is damaged: building its entry again (--warm)");
    wait_for(
        "the healed entry to be sent from the cache",
        Duration::from_secs(120),
        || {
            assert_eq!(sha256(&server.get_ok(curl, &blob)), digest);
            bodies_from(curl, &server, "cache") > 4.0
        },
    );
    let healed = fs::read(&file).expect("read");
    assert_eq!(sha256(&healed), digest, "{}", server.log());
}

#[test]
fn a_layer_built_by_the_cli_is_sent_from_the_cache_by_any_name_of_its_image() {
    let Some(curl) = tool("curl") else { return };
    let cache = tempdir();
    let work = tempdir();
    let list = "3MB:compression=zstd,1MB";
    run_ok(
        image_maker()
            .env("IMAGE_MAKER_CACHE_DIR", cache.path())
            .args(["-s", list, "-o"])
            .arg(format!("oci:{}", work.path().join("out").display()))
            .arg("mock/built:1"),
    );
    let server = Served::start_in(&[], cache.path());
    let manifest: serde_json::Value =
        serde_json::from_slice(&server.get_ok(curl, &format!("/v2/mock/manifests/{}", tag(list))))
            .expect("a manifest");
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("a digest");
        assert_eq!(
            sha256(&server.get_ok(curl, &format!("/v2/mock/blobs/{digest}"))),
            digest
        );
    }
    assert_eq!(bodies_from(curl, &server, "cache"), 2.0);
    // A name whose image the cache lacks is generated, as before.
    let other = first_layer(curl, &server, "/v2/mock/manifests/2MB");
    assert_eq!(
        sha256(&server.get_ok(curl, &format!("/v2/mock/blobs/{other}"))),
        other
    );
    assert_eq!(bodies_from(curl, &server, "generated"), 1.0);
}
