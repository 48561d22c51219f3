//! One corpus of specs through every path that yields bytes, each compared with the
//! reference build byte for byte, by hash: the CLI at 1, 2, 3 and 8 compressing threads
//! and on one core, a cold cache and a cache hit, `oci-archive:`, `cache:SPEC` pushed to a
//! real registry, serve (its digest pass, three full GETs, two at once, the blob put
//! together from Ranges at random cut points, and short Ranges at random offsets against
//! the reference's bytes), and the dockerfile builder's files.
//!
//! The compressed specs are large enough for the encoders to run in parallel: 64 MiB of
//! compressible input is 512 gzip blocks, 256 per worker on two cores; zstd's are several
//! 2 MiB frames. Their Ranges start past the first MiB, so serve makes them from a piece.
//! Nothing large is kept: blobs are hashed as they are read, but for one case's reference
//! layout while serve's Ranges are compared with it.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::serve::{tag, Served};
use crate::support::registry::Registry;
use crate::support::*;

/// One spec and the platforms of its image.
struct Case {
    list: &'static str,
    platforms: &'static str,
}

const fn case(list: &'static str) -> Case {
    Case {
        list,
        platforms: "linux/amd64",
    }
}

/// Plain, `files=`, a tree with every entry kind, `ratio=` 1.5, 3 and 10 at gzip levels 1,
/// 6 and 9, zstd at levels 1, 3 and 19, and an index of two platforms.
const CORPUS: &[Case] = &[
    case("3MB,1KB"),
    case("2MB:files=5"),
    case("4MB:tree=300:symlinks=5:hardlinks=3:dirs=2,64KB:whiteouts=3"),
    case("64MB:ratio=1.5:compression=gzip:level=1"),
    case("64MB:ratio=3:compression=gzip"),
    case("64MB:ratio=10:compression=gzip:level=9"),
    case("8MB:tree=200:ratio=2:compression=gzip,1MB"),
    case("16MB:ratio=3:compression=zstd:level=1"),
    case("16MB:compression=zstd"),
    case("6MB:ratio=3:compression=zstd:level=19"),
    Case {
        list: "4MB:ratio=2:compression=gzip,1MB:compression=zstd",
        platforms: "linux/amd64,linux/arm64",
    },
];

/// What a build said it made: the image's digest (an index's, for several platforms) and
/// every layer blob's digest and size.
#[derive(Debug, PartialEq, Eq)]
struct Made {
    digest: String,
    layers: Vec<(String, u64)>,
}

fn made(out: &std::process::Output) -> Made {
    let json = json(out);
    let images = match json["manifests"].as_array() {
        Some(manifests) => manifests.clone(),
        None => vec![json.clone()],
    };
    let layers = images
        .iter()
        .flat_map(|image| image["layers"].as_array().expect("layers").clone())
        .map(|l| {
            (
                l["digest"].as_str().expect("digest").to_owned(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect();
    Made {
        digest: json["digest"].as_str().expect("digest").to_owned(),
        layers,
    }
}

/// `CLI -q --json -s LIST --platform P ARGS… exact/image:1`: what it made. `cli` is
/// `image_maker()`, maybe with a variable set, or a command that runs it.
fn build(mut cli: Command, case: &Case, args: &[&str]) -> Made {
    made(&run_ok(
        cli.args([
            "-q",
            "--json",
            "-s",
            case.list,
            "--platform",
            case.platforms,
        ])
        .args(args)
        .arg("exact/image:1"),
    ))
}

/// `image_maker()` with its cache in `cache`.
fn cached_in(cache: &Path) -> Command {
    let mut cli = image_maker();
    cli.env("IMAGE_MAKER_CACHE_DIR", cache);
    cli
}

fn sha256_of(mut reader: impl Read) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            return (format!("sha256:{:x}", hasher.finalize()), size);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// Every layer blob of `made` in the layout `dir` hashes to its name and has its size.
fn assert_layout_holds(dir: &Path, made: &Made, what: &str) {
    for (digest, size) in &made.layers {
        let path = dir.join("blobs/sha256").join(&digest[7..]);
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{what}: {digest}: {e}"));
        assert_eq!(&sha256_of(file), &(digest.clone(), *size), "{what}");
    }
}

/// The reference: `--no-cache` with the default thread count, its blobs checked.
fn reference(case: &Case, work: &Path) -> Made {
    let (made, dir) = reference_kept(case, work);
    fs::remove_dir_all(&dir).expect("removed");
    made
}

/// The reference, and the layout that holds it.
fn reference_kept(case: &Case, work: &Path) -> (Made, std::path::PathBuf) {
    let dir = work.join("reference");
    let made = build(
        image_maker(),
        case,
        &["--no-cache", "-o", &format!("oci:{}", dir.display())],
    );
    assert_layout_holds(&dir, &made, case.list);
    (made, dir)
}

#[test]
fn every_thread_count_and_one_core_build_the_reference_bytes() {
    let taskset = tool("taskset");
    for case in CORPUS {
        let work = tempdir();
        let expected = reference(case, work.path());
        let out = work.path().join("out");
        let oci = format!("oci:{}", out.display());
        for threads in ["1", "2", "3", "8"] {
            let mut cli = image_maker();
            cli.env("IMAGE_MAKER_THREADS", threads);
            let built = build(cli, case, &["--no-cache", "-o", &oci]);
            assert_eq!(built, expected, "{} at {threads} threads", case.list);
            fs::remove_dir_all(&out).expect("removed");
        }
        if let Some(taskset) = taskset {
            let mut cli = taskset.cmd();
            with_test_env(&mut cli).args(["-c", "0", IMAGE_MAKER]);
            let built = build(cli, case, &["--no-cache", "-o", &oci]);
            assert_eq!(built, expected, "{} under taskset -c 0", case.list);
            fs::remove_dir_all(&out).expect("removed");
        }
    }
}

#[test]
fn the_cache_an_archive_and_a_registry_hold_the_reference_bytes() {
    let (Some(registry), Some(curl)) = (Registry::start(), tool("curl")) else {
        return;
    };
    for (n, case) in CORPUS.iter().enumerate() {
        let work = tempdir();
        let expected = reference(case, work.path());
        let cache = work.path().join("cache");
        for what in ["cold", "hit"] {
            let dir = work.path().join(what);
            let oci = format!("oci:{}", dir.display());
            let built = build(cached_in(&cache), case, &["-o", &oci]);
            assert_eq!(built, expected, "{}: {what} cache", case.list);
            assert_layout_holds(&dir, &expected, &format!("{}: {what} cache", case.list));
            fs::remove_dir_all(&dir).expect("removed");
        }
        let archive = work.path().join("image.tar");
        let oci_archive = format!("oci-archive:{}", archive.display());
        let built = build(image_maker(), case, &["--no-cache", "-o", &oci_archive]);
        assert_eq!(built, expected, "{}: oci-archive", case.list);
        let mut seen = Vec::new();
        let mut tar = tar::Archive::new(fs::File::open(&archive).expect("archive"));
        for entry in tar.entries().expect("entries") {
            let entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                let hex = hex.to_owned();
                let (digest, size) = sha256_of(entry);
                assert_eq!(
                    digest,
                    format!("sha256:{hex}"),
                    "{}: oci-archive",
                    case.list
                );
                seen.push((digest, size));
            }
        }
        for layer in &expected.layers {
            assert!(
                seen.contains(layer),
                "{}: {layer:?} not archived",
                case.list
            );
        }
        // The registry checks every blob's digest as it takes it.
        let target = format!("{}/exact/case-{n}:1", registry.host());
        let pushed = json(&run_ok(
            cached_in(&cache)
                .args(["push", "-q", "--json", "--platform", case.platforms])
                .arg(format!("cache:{}", case.list))
                .arg(&target),
        ));
        assert_eq!(pushed["digest"], expected.digest.as_str(), "{}", case.list);
        let accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let head = run_ok(curl.cmd().args(["-sSfI", "-H", accept]).arg(format!(
            "http://{}/v2/exact/case-{n}/manifests/{}",
            registry.host(),
            expected.digest
        )));
        let headers = stdout(&head).to_ascii_lowercase();
        assert!(
            headers.contains(&format!("docker-content-digest: {}", expected.digest)),
            "{}: {headers}",
            case.list
        );
        for (digest, size) in &expected.layers {
            let url = format!(
                "http://{}/v2/exact/case-{n}/blobs/{digest}",
                registry.host()
            );
            assert_eq!(
                &curl_sha256(curl, &[&url]),
                &(digest.clone(), *size),
                "{}: pulled back from the registry",
                case.list
            );
        }
    }
}

/// The SHA-256 and length of what `curl -sSf ARGS` prints.
fn curl_sha256(curl: Tool, args: &[&str]) -> (String, u64) {
    let mut child = curl
        .cmd()
        .arg("-sSf")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl runs");
    let hashed = sha256_of(child.stdout.take().expect("piped"));
    let status = child.wait().expect("curl ends");
    assert!(status.success(), "curl {args:?}: {status}");
    hashed
}

/// Cut points in `0..size`, drawn from a seed: the same on every run, and different for
/// every blob.
fn cuts(seed: &str, size: u64, count: usize) -> Vec<u64> {
    let mut state = u64::from_str_radix(&seed[7..23], 16).expect("hex");
    let mut points: Vec<u64> = (0..count)
        .map(|_| {
            // xorshift64*: any spread will do.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d) % size.max(1)
        })
        .collect();
    points.sort_unstable();
    points.dedup();
    points
}

#[test]
fn serve_streams_the_reference_bytes_on_every_request() {
    let Some(curl) = tool("curl") else {
        return;
    };
    // Every case by a name of the images file (`ratio=1.5` has no tag form), and by its tag
    // where it has one.
    let work = tempdir();
    let images = work.path().join("images.toml");
    let names: String = CORPUS
        .iter()
        .enumerate()
        .map(|(n, case)| {
            format!(
                "\"exact/case-{n}:1\" = {{ layers = \"{}\", platform = \"{}\" }}\n",
                case.list, case.platforms
            )
        })
        .collect();
    fs::write(&images, names).expect("images file");
    let server = Served::start(&["--images", path_str(&images)]);
    for (n, case) in CORPUS.iter().enumerate() {
        let (expected, layout) = reference_kept(case, work.path());
        let mut manifests = vec![format!("/v2/exact/case-{n}/manifests/1")];
        let tagged = run(image_maker().args(["tag", case.list]));
        if tagged.status.success() {
            let platforms = case.platforms.replace('/', "-").replace(',', "_");
            manifests.push(match case.platforms.contains(',') {
                true => format!("/v2/platform/{platforms}/mock/manifests/{}", tag(case.list)),
                false => format!("/v2/mock/manifests/{}", tag(case.list)),
            });
        }
        // The digest pass: the manifest (or index) handed out is the reference's.
        for path in &manifests {
            let out = run_ok(curl.cmd().args(["-sSf", &server.url(path)]));
            assert_eq!(
                format!("sha256:{:x}", Sha256::digest(&out.stdout)),
                expected.digest,
                "{}: {path}: {}",
                case.list,
                server.log()
            );
        }
        for (digest, size) in &expected.layers {
            let url = server.url(&format!("/v2/exact/case-{n}/blobs/{digest}"));
            let want = (digest.clone(), *size);
            for round in 1..=3 {
                assert_eq!(
                    curl_sha256(curl, &[&url]),
                    want,
                    "{}: GET {round}",
                    case.list
                );
            }
            let together: Vec<(String, u64)> = std::thread::scope(|scope| {
                let gets: Vec<_> = (0..2)
                    .map(|_| scope.spawn(|| curl_sha256(curl, &[&url])))
                    .collect();
                gets.into_iter()
                    .map(|get| get.join().expect("a GET"))
                    .collect()
            });
            assert_eq!(
                together,
                [want.clone(), want.clone()],
                "{}: two at once",
                case.list
            );
            // Put together from Ranges: each piece is fetched on its own.
            let mut bounds = vec![0];
            bounds.extend(cuts(digest, *size, 4).into_iter().filter(|&c| c > 0));
            bounds.push(*size);
            bounds.dedup();
            let mut hasher = Sha256::new();
            let mut total = 0;
            for piece in bounds.windows(2) {
                let range = format!("{}-{}", piece[0], piece[1] - 1);
                let out = run_ok(curl.cmd().args(["-sSf", "-r", &range, &url]));
                assert_eq!(
                    out.stdout.len() as u64,
                    piece[1] - piece[0],
                    "{}: range {range}",
                    case.list
                );
                hasher.update(&out.stdout);
                total += out.stdout.len() as u64;
            }
            assert_eq!(
                (format!("sha256:{:x}", hasher.finalize()), total),
                want,
                "{}: from ranges cut at {bounds:?}",
                case.list
            );
            // Short ranges at random offsets, each the same bytes as the reference blob's
            // there: a compressed one is made from the piece that holds its start.
            let blob = fs::read(layout.join("blobs/sha256").join(&digest[7..])).expect("blob");
            for start in cuts(&sha256(digest.as_bytes()), *size, 6) {
                let end = (start + 70_000).min(*size);
                let range = format!("{start}-{}", end - 1);
                let out = run_ok(curl.cmd().args(["-sSf", "-r", &range, &url]));
                assert!(
                    out.stdout == blob[start as usize..end as usize],
                    "{}: range {range} of {digest}",
                    case.list
                );
            }
        }
        fs::remove_dir_all(&layout).expect("removed");
    }
    assert!(!server.log().contains("error:"), "{}", server.log());
}

#[test]
fn the_dockerfile_builders_files_are_the_plans() {
    // Its context is what `<engine> build` adds: the plan's files, byte for byte. Plain
    // layers only (it cannot compress), and no whiteouts (a Dockerfile cannot delete).
    for list in [
        "3MB,1KB",
        "2MB:files=5",
        "4MB:tree=300:symlinks=5:hardlinks=3:dirs=2",
    ] {
        let work = tempdir();
        let context = work.path().join("context");
        run_ok(
            image_maker()
                .args(["-q", "--builder", "dockerfile", "--emit-context"])
                .args([path_str(&context), "-s", list, "exact/image:1"]),
        );
        let expect = json(&run_ok(
            image_maker().args(["expect", "--format", "json", list]),
        ));
        let mut files = 0;
        for entry in expect["entries"].as_array().expect("entries") {
            if entry["type"] != "file" {
                continue;
            }
            let path = entry["path"].as_str().expect("path");
            let file = fs::File::open(context.join(path))
                .unwrap_or_else(|e| panic!("{list}: {path}: {e}"));
            let (digest, size) = sha256_of(file);
            assert_eq!(
                (digest, size),
                (
                    format!("sha256:{}", entry["sha256"].as_str().expect("sha256")),
                    entry["size"].as_u64().expect("size")
                ),
                "{list}: {path}"
            );
            files += 1;
        }
        assert!(files > 0, "{list}: no file expected");
    }
}

/// A small random spec the CLI and serve both take: 1 to 3 layers of up to 300 KB, each
/// plain, `files=` or a tree (with links), of a whole `ratio=` and any encoding and level.
fn small_spec() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let layer = (
        1u64..300_000,
        0u8..3,
        1u64..40,
        1u8..5,
        0u8..3,
        proptest::option::of(1u32..10),
    )
        .prop_map(|(size, layout, count, ratio, encoding, level)| {
            let mut text = format!("{size}B");
            match layout {
                0 => {}
                1 => text += &format!(":files={count}"),
                _ => text += &format!(":tree={count}:symlinks={}:hardlinks=1", count % 4),
            }
            if ratio > 1 {
                text += &format!(":ratio={ratio}");
            }
            match encoding {
                0 => {}
                1 => text += ":compression=gzip",
                _ => text += ":compression=zstd",
            }
            if let (Some(level), true) = (level, encoding > 0) {
                text += &format!(":level={level}");
            }
            text
        });
    proptest::collection::vec(layer, 1..4).prop_map(|layers| layers.join(","))
}

#[test]
fn random_small_specs_agree_across_the_cli_the_cache_and_serve() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let Some(curl) = tool("curl") else {
        return;
    };
    let server = Served::start(&[]);
    let work = tempdir();
    let cache = work.path().join("cache");
    // The same cases on every run (PROPTEST_CASES asks for more): a failure here is one a
    // developer can run again.
    let config = Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&small_spec(), |list| {
        let case = Case {
            list: Box::leak(list.into_boxed_str()),
            platforms: "linux/amd64",
        };
        // Specs whose tag would be too long are served by an images file only.
        let tagged = run(image_maker().args(["tag", case.list]));
        proptest::prop_assume!(tagged.status.success());
        let expected = reference(&case, work.path());
        // Serve's digest pass, by the spec's tag: the manifest it hands out is the CLI's,
        // and its blobs can be asked for from then on.
        let path = format!("/v2/mock/manifests/{}", stdout(&tagged).trim());
        let out = run_ok(curl.cmd().args(["-sSf", &server.url(&path)]));
        proptest::prop_assert_eq!(
            format!("sha256:{:x}", Sha256::digest(&out.stdout)),
            expected.digest.clone(),
            "{}",
            case.list
        );
        for what in ["cold", "hit"] {
            let dir = work.path().join(what);
            let oci = format!("oci:{}", dir.display());
            let built = build(cached_in(&cache), &case, &["-o", &oci]);
            proptest::prop_assert_eq!(&built, &expected, "{}: {} cache", case.list, what);
            assert_layout_holds(&dir, &expected, case.list);
            if what == "hit" {
                // Ranged reads from serve against these very files.
                for (digest, size) in &expected.layers {
                    let bytes =
                        fs::read(dir.join("blobs/sha256").join(&digest[7..])).expect("blob");
                    let url = server.url(&format!("/v2/mock/blobs/{digest}"));
                    let served = curl_sha256(curl, &[&url]);
                    proptest::prop_assert_eq!(&served, &(digest.clone(), *size), "{}", case.list);
                    for cut in cuts(digest, *size, 3) {
                        let end = (cut + 1 + size / 3).min(*size);
                        let range = format!("{cut}-{}", end - 1);
                        let out = run_ok(curl.cmd().args(["-sSf", "-r", &range, &url]));
                        proptest::prop_assert!(
                            out.stdout == bytes[cut as usize..end as usize],
                            "{}: {} range {}",
                            case.list,
                            digest,
                            range
                        );
                    }
                }
            }
            fs::remove_dir_all(&dir).expect("removed");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nserve's log:\n{}", server.log());
    }
}
