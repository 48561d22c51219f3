//! The image config a user sets (`--entrypoint`, `--env`, …), as skopeo, oci-image-tool,
//! docker and podman read it.

use serde_json::json;

use image_maker::{Fixture, ImageConfig};

use crate::support::*;

/// Every config flag, once or more.
const FLAGS: &[&str] = &[
    "--entrypoint",
    r#"["/bin/app","-v"]"#,
    "--cmd",
    "serve --port 8080",
    "--env",
    "MODE=test",
    "--env",
    "GREETING=hello world",
    "--workdir",
    "/srv",
    "--user",
    "1000:1000",
    "--label",
    "team=storage",
    "--label",
    "org.example.empty=",
    "--expose",
    "8080",
    "--expose",
    "53/udp",
    "--stop-signal",
    "term",
];

/// The `config` object those flags give, as docker and podman show it.
fn expected_config(spec_label: &str) -> serde_json::Value {
    json!({
        "Entrypoint": ["/bin/app", "-v"],
        "Cmd": ["serve", "--port", "8080"],
        "Env": ["MODE=test", "GREETING=hello world"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
        "Labels": {
            "dev.image-maker.spec": spec_label,
            "team": "storage",
            "org.example.empty": "",
        },
        "ExposedPorts": { "8080/tcp": {}, "53/udp": {} },
        "StopSignal": "SIGTERM",
    })
}

fn build_to(dir: &std::path::Path, reference: &str, extra: &[&str]) {
    run_ok(
        image_maker()
            .args(["-q", "-s", "1KB,2KB:files=2", "-o"])
            .arg(format!("oci:{}", path_str(dir)))
            .args(FLAGS)
            .args(extra)
            .arg(reference),
    );
}

#[test]
fn every_flag_reaches_the_oci_config_and_manifest() {
    let (Some(oci_image_tool), Some(skopeo)) = (tool("oci-image-tool"), tool("skopeo")) else {
        return;
    };
    let tmp = tempdir();
    let dir = tmp.path().join("layout");
    build_to(
        &dir,
        "mock/config:v1",
        &["--annotation", "org.example.built-by=tests"],
    );
    assert_valid_layout(oci_image_tool, &dir, "v1");
    let source = format!("oci:{}:v1", path_str(&dir));
    let config = json(&run_ok(skopeo.cmd().args(["inspect", "--config", &source])));
    assert_eq!(config["config"], expected_config("1KB:files=1,2KB:files=2"));
    let manifest = json(&run_ok(skopeo.cmd().args(["inspect", "--raw", &source])));
    assert_eq!(
        manifest["annotations"],
        json!({ "org.example.built-by": "tests" })
    );

    // Again from the cache: the entry carries the config to every later output.
    let again = tmp.path().join("again");
    build_to(
        &again,
        "mock/config:v1",
        &["--annotation", "org.example.built-by=tests"],
    );
    assert_eq!(
        std::fs::read(dir.join("index.json")).expect("index"),
        std::fs::read(again.join("index.json")).expect("index")
    );
    assert_eq!(builds(&test_cache()), 1);
}

#[test]
fn docker_and_podman_show_every_field() {
    for name in ["docker", "podman"] {
        let Some(engine) = engine(name) else {
            continue;
        };
        let image = EngineImage::new(engine, "config");
        run_ok(
            image_maker()
                .args(["-q", "-s", "1KB", "-e", name])
                .args(FLAGS)
                .arg(&image.reference),
        );
        let shown: serde_json::Value =
            serde_json::from_str(&image.inspect("{{json .Config}}")).expect("json");
        let expected = expected_config("1KB:files=1");
        for (field, value) in expected.as_object().expect("object") {
            assert_eq!(&shown[field], value, "{name} {field}: {shown}");
        }
    }
}

#[test]
fn the_dockerfile_builder_writes_the_config_and_refuses_annotations() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = EngineImage::new(docker, "config-dockerfile");
    let flags: Vec<&str> = FLAGS
        .chunks(2)
        .filter(|pair| pair[0] != "--workdir")
        .flatten()
        .copied()
        .collect();
    run_ok(
        image_maker()
            .args(["-q", "-s", "1KB", "-b", "dockerfile", "-e", "docker"])
            .args(flags)
            .args(["--env", "PRICE=$5 \"net\""])
            .arg(&image.reference),
    );
    let shown: serde_json::Value =
        serde_json::from_str(&image.inspect("{{json .Config}}")).expect("json");
    let mut expected = expected_config("");
    expected["Env"] = json!(["MODE=test", "GREETING=hello world", "PRICE=$5 \"net\""]);
    expected
        .as_object_mut()
        .expect("object")
        .remove("WorkingDir");
    for (field, value) in expected.as_object().expect("object") {
        if field == "Labels" {
            assert_eq!(shown[field]["team"], "storage", "{shown}");
            continue;
        }
        if field == "Env" {
            // docker's build puts its default PATH first, as into every image it builds.
            let env = shown[field].as_array().expect("env");
            assert!(env.ends_with(value.as_array().expect("env")), "{shown}");
            continue;
        }
        assert_eq!(&shown[field], value, "{field}: {shown}");
    }
    assert_eq!(image.inspect("{{len .RootFS.Layers}}"), "1");

    for (flag, value, what) in [
        ("--annotation", "a=b", "manifest annotations: `a`"),
        (
            "--workdir",
            "/srv",
            "a working directory without a layer of its own: `/srv`",
        ),
        // A newline would end the LABEL line and start an instruction of its own.
        (
            "--label",
            "a=b\nADD layer1 /x",
            "config values with control characters (a newline ends a Dockerfile line): `a=b\\nADD layer1 /x`",
        ),
    ] {
        let out = run(image_maker().args([
            "-q",
            "-s",
            "1KB",
            "-b",
            "dockerfile",
            "-e",
            "docker",
            flag,
            value,
            "mock/x:1",
        ]));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let expected = format!("error: the dockerfile builder cannot make {what}");
        assert!(stderr(&out).starts_with(&expected), "{}", stderr(&out));
    }
}

#[test]
fn bad_values_exit_2_and_name_the_value() {
    let tmp = tempdir();
    let dest = format!("oci:{}", path_str(&tmp.path().join("out")));
    for (flag, value, message) in [
        ("--env", "=x", "error: env `=x` has an empty key"),
        ("--env", "FOO", "error: env `FOO` has no `=`"),
        (
            "--expose",
            "70000",
            "error: port `70000` is not a port number from 1 to 65535",
        ),
        (
            "--expose",
            "80/foo",
            "error: port `80/foo` has an unknown protocol `foo`",
        ),
        ("--label", "foo", "error: label `foo` has no `=`"),
        (
            "--annotation",
            "=v",
            "error: annotation `=v` has an empty key",
        ),
        (
            "--entrypoint",
            r#"{"a":1}"#,
            r#"error: entrypoint `{"a":1}` is not a JSON array of strings"#,
        ),
        (
            "--stop-signal",
            "SIGRTMIN+3",
            "error: unknown stop signal `SIGRTMIN+3`",
        ),
        (
            "--workdir",
            "srv",
            "error: workdir `srv` is not an absolute path",
        ),
    ] {
        let out = run(image_maker().args(["-s", "1KB", "-o", &dest, flag, value, "mock/x:1"]));
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(err.starts_with(message), "{flag} {value}: {err}");
        assert!(err.contains("\nhint: "), "{err}");
        assert!(!tmp.path().join("out").exists());
    }
}

#[test]
fn a_fixture_with_a_config_is_another_image() {
    let config = ImageConfig::new()
        .env("MODE=fixture")
        .and_then(|c| c.expose("9000/udp"))
        .expect("valid");
    let plain = Fixture::new("2KB").request().expect("request");
    let configured = Fixture::new("2KB")
        .config(config)
        .request()
        .expect("request");
    // The default reference names the cache key.
    assert_ne!(plain.reference(), configured.reference());
    assert_eq!(
        Fixture::new("2KB").request().expect("request").reference(),
        plain.reference()
    );
}

#[test]
fn serve_makes_the_same_image_from_an_images_file_entry() {
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempdir();
    let file = tmp.path().join("images.toml");
    std::fs::write(
        &file,
        r#""mock/app:cfg" = { layers = "1KB,2KB:files=2", entrypoint = ["/bin/app", "-v"], cmd = "serve --port 8080", env = ["MODE=test", "GREETING=hello world"], workdir = "/srv", user = "1000:1000", labels = { team = "storage", "org.example.empty" = "" }, annotations = ["org.example.built-by=tests"], expose = ["8080", "53/udp"], stop_signal = "term" }"#,
    )
    .expect("write");
    let server = crate::serve::Served::start(&["--images", path_str(&file)]);
    let served = format!("docker://{}/mock/app:cfg", server.host);
    let dir = tmp.path().join("layout");
    build_to(
        &dir,
        "mock/config:v1",
        &["--annotation", "org.example.built-by=tests"],
    );
    let built = format!("oci:{}:v1", path_str(&dir));
    let raw = |source: &str| {
        stdout(&run_ok(skopeo.cmd().args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            source,
        ])))
    };
    // Byte for byte the manifest the command line writes: the same config blob too.
    assert_eq!(raw(&served), raw(&built));
    let config = json(&run_ok(skopeo.cmd().args([
        "inspect",
        "--tls-verify=false",
        "--config",
        &served,
    ])));
    assert_eq!(config["config"], expected_config("1KB:files=1,2KB:files=2"));
}
