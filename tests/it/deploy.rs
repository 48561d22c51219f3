//! deploy/: the Kubernetes Deployment's and the systemd unit's command lines run as they are
//! written, and the server they start answers what the probes ask. `.ci/run` validates the
//! files' syntax against Kubernetes' schemas and systemd; this is what neither can see: that
//! the arguments are ones `serve` takes, and that the readiness probe works with auth on.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

const DEPLOYMENT: &str = include_str!("../../deploy/kubernetes/base/deployment.yaml");
const SECRET: &str = include_str!("../../deploy/kubernetes/secret.example.yaml");
const UNIT: &str = include_str!("../../deploy/systemd/image-maker-serve.service");
const UNIT_ENV: &str = include_str!("../../deploy/systemd/serve.env.example");
const SERVE_DOCS: &str = include_str!("../../docs/serve.md");

#[test]
fn deployment_starts_and_answers_its_probes() {
    let args = container_args(DEPLOYMENT);
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
    let args: Vec<String> = args[1..]
        .iter()
        .map(|a| match a.strip_prefix("--addr=") {
            Some(_) => "--addr=127.0.0.1:0".to_owned(),
            None => a.clone(),
        })
        .collect();
    assert!(
        args.iter().any(|a| a == "--addr=127.0.0.1:0"),
        "the Deployment sets --addr: {args:?}"
    );
    let env = [
        ("IMAGE_MAKER_SERVE_AUTH", secret_value(SECRET, "auth")),
        (
            "IMAGE_MAKER_SERVE_TOKEN_SECRET",
            secret_value(SECRET, "token-secret"),
        ),
    ];
    let volume = tempdir();
    // As in the pod: the server makes the cache directory inside the volume.
    let server = Started::new(&args, &env, &volume.path().join("cache"));
    probe(&server.host);
}

#[test]
fn systemd_unit_starts_and_answers_the_probes() {
    let exec = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart= line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/image-maker"));
    assert_eq!(words.next(), Some("serve"));
    let dir = tempdir();
    let images = dir.path().join("images.toml");
    fs::write(&images, "\"mock/app:v1\" = { layers = \"1KB\" }\n").expect("images.toml");
    let mut args = Vec::new();
    let mut words = words.peekable();
    while let Some(word) = words.next() {
        args.push(word.to_owned());
        let value = match word {
            "--addr" => "127.0.0.1:0".to_owned(),
            "--images" => path_str(&images).to_owned(),
            _ => continue,
        };
        words.next().expect("the flag's value");
        args.push(value);
    }
    let env: Vec<(&str, String)> = UNIT_ENV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('=').expect("NAME=value"))
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    assert_eq!(
        env.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["IMAGE_MAKER_SERVE_AUTH", "IMAGE_MAKER_SERVE_TOKEN_SECRET"]
    );
    let server = Started::new(&args, &env, &dir.path().join("cache"));
    probe(&server.host);
}

/// The limits the Deployment spells out are `serve --help`'s defaults, which its memory
/// request and limit were sized for; one that differs is a decision to write down there.
#[test]
fn deployment_limits_are_the_defaults() {
    let help = stdout(&run_ok(image_maker().args(["serve", "--help"])));
    for arg in container_args(DEPLOYMENT).iter().skip(1) {
        let Some((flag, value)) = arg.split_once('=') else {
            continue;
        };
        if ["--addr", "--public-url"].contains(&flag) {
            continue;
        }
        let entry = help_entry(&help, flag)
            .unwrap_or_else(|| panic!("`serve --help` has no {flag}:\n{help}"));
        let Some(default) = entry
            .split("[default: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
        else {
            panic!("`serve --help` gives no default for {flag}:\n{entry}");
        };
        assert_eq!(
            value, default,
            "deploy/kubernetes/base/deployment.yaml sets {flag}={value}, `serve --help`'s \
             default is {default}"
        );
    }
}

#[test]
fn the_unit_in_the_docs_is_the_file() {
    let start = SERVE_DOCS
        .find("```ini\n# /etc/systemd/system/image-maker-serve.service\n")
        .expect("docs/serve.md shows the unit")
        + "```ini\n".len();
    let block = &SERVE_DOCS[start..];
    let block = &block[..block.find("```").expect("the block ends")];
    assert_eq!(
        block, UNIT,
        "docs/serve.md's unit differs from deploy/systemd/image-maker-serve.service"
    );
}

/// What the probes ask: liveness a TCP connect, readiness `GET /metrics` with no
/// credentials; and `GET /v2/` is 401, which is why readiness does not ask it.
fn probe(host: &str) {
    TcpStream::connect(host).expect("the liveness probe connects");
    assert_eq!(status(host, "/metrics"), 200, "the readiness probe");
    assert_eq!(status(host, "/v2/"), 401, "auth is on");
}

/// The status of `GET path`, asked as the kubelet does: no credentials.
fn status(host: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(host).expect("connect");
    // A guard against a server that never answers; the answer takes milliseconds.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/1.30\r\nConnection: close\r\n\r\n"
    )
    .expect("a request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let line = response.lines().next().unwrap_or("");
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: no status line in `{response}`"))
}

/// A server started as the manifests start it, killed when dropped.
struct Started {
    _running: Running,
    host: String,
}

impl Started {
    fn new(args: &[String], env: &[(&str, String)], cache: &Path) -> Self {
        let mut cmd = image_maker();
        cmd.arg("serve")
            .args(args)
            .env("IMAGE_MAKER_CACHE_DIR", cache)
            .envs(env.iter().map(|(k, v)| (k, v)));
        let mut running = spawn(cmd.stdout(Stdio::null()));
        let mut lines = BufReader::new(running.take_stderr());
        let mut first = String::new();
        lines.read_line(&mut first).expect("a first line");
        let Some(host) = first
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        else {
            let mut rest = String::new();
            let _ = lines.read_to_string(&mut rest);
            panic!("image-maker serve {args:?} did not start:\n{first}{rest}");
        };
        // The access log keeps coming; a full pipe would stall the server.
        std::thread::spawn(move || lines.lines().map_while(Result::ok).for_each(drop));
        Self {
            host: host.to_owned(),
            _running: running,
        }
    }
}

/// The container's `args:`, one `- ARG` a line: the Deployment writes them so (a flag and
/// its value in one `--flag=value`), and a comment line between them is not one.
fn container_args(yaml: &str) -> Vec<String> {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "args:");
    let indent = lines.next().map(|l| l.len() - l.trim_start().len());
    let indent = indent.expect("the Deployment has args:");
    lines
        .filter(|l| !l.trim_start().starts_with('#'))
        .take_while(|l| l.len() - l.trim_start().len() > indent)
        .map(|l| {
            l.trim()
                .strip_prefix("- ")
                .unwrap_or_else(|| panic!("not one argument a line: `{l}`"))
                .to_owned()
        })
        .collect()
}

/// A `stringData` value of the example Secret.
fn secret_value(yaml: &str, key: &str) -> String {
    yaml.lines()
        .skip_while(|l| l.trim() != "stringData:")
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("secret.example.yaml has no stringData {key}"))
        .to_owned()
}

/// The lines of `--help` that describe `flag`, from its own line to the next option's, on
/// one line: clap wraps a `[default: …]` where the terminal width puts it.
fn help_entry(help: &str, flag: &str) -> Option<String> {
    let mut lines = help.lines().skip_while(|l| {
        let l = l.trim_start();
        !(l.starts_with(&format!("{flag} ")) || l.contains(&format!(", {flag} ")) || l == flag)
    });
    let first = lines.next()?;
    let rest = lines.take_while(|l| !l.trim_start().starts_with('-'));
    let words: Vec<&str> = std::iter::once(first)
        .chain(rest)
        .flat_map(str::split_whitespace)
        .collect();
    Some(words.join(" "))
}
