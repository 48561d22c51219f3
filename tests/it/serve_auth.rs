//! `image-maker serve --auth` as a shared service runs it: the realm is the public URL
//! whatever `Host` a client sends, tokens are keyed by a server secret that replicas share,
//! htpasswd files of bcrypt hashes let skopeo and docker in, failed attempts from one client
//! get slower, and no credential shows in an error or the log. Real clients on loopback.

use std::fs;
use std::process::Output;
use std::time::{Duration, Instant};

use hmac::Mac as _;

use crate::serve::{docker_login_and_pull, Served};
use crate::support::*;

/// A secret as `openssl rand -hex 32` makes one.
const SECRET: &str = "5f0c8d3a9b1e47f2a6c4d8e0b3f7a1c95e2d4b6f8a0c1e3d5b7f9a2c4e6d8b0f";

/// curl with `args`: its output as it is (no check).
fn curl(curl: Tool, args: &[&str]) -> Output {
    run(curl.cmd().arg("-sS").args(args))
}

/// The status, headers (lowercased names) and body of a curl request.
fn fetch(tool: Tool, args: &[&str]) -> (u16, String, String) {
    let out = curl(tool, &[&["-D", "/dev/stderr"], args].concat());
    let head = stderr(&out);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, head.to_ascii_lowercase(), stdout(&out))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(|v| v.trim().to_owned())
}

/// A token from `server`'s `/token` for `user:password`.
fn token(tool: Tool, server: &Served, creds: &str) -> String {
    let (status, _, body) = fetch(
        tool,
        &["-u", creds, &server.url("/token?service=image-maker")],
    );
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("token JSON");
    json["token"].as_str().expect("a token").to_owned()
}

/// The status of a manifest GET with `Authorization: Bearer TOKEN`.
fn with_token(tool: Tool, server: &Served, token: &str) -> u16 {
    let auth = format!("Authorization: Bearer {token}");
    fetch(
        tool,
        &[
            "-H",
            &auth,
            "-o",
            "/dev/null",
            &server.url("/v2/mock/manifests/1KB"),
        ],
    )
    .0
}

/// `htpasswd -B -i -c FILE USER` with the password on stdin, as an operator makes one.
fn htpasswd_b(htpasswd: Tool, file: &std::path::Path, user: &str, password: &str, create: bool) {
    let mut cmd = htpasswd.cmd();
    cmd.args(["-B", "-i"]);
    if create {
        cmd.arg("-c");
    }
    let out = run_with_stdin(cmd.arg(file).arg(user), password.as_bytes());
    assert!(out.status.success(), "htpasswd: {}", stderr(&out));
}

#[test]
fn the_realm_is_the_public_url_whatever_host_the_client_sends() {
    let Some(tool) = tool("curl") else {
        return;
    };
    let password = format!("pw-{}", unique());
    let auth = format!("bearer:alice:{password}");
    let evil = ["-H", "Host: evil.example"];
    let server = Served::start(&["--auth", &auth]);
    let (status, head, _) = fetch(
        tool,
        &[&evil[..], &[&server.url("/v2/mock/manifests/1KB")]].concat(),
    );
    assert_eq!(status, 401);
    assert_eq!(
        header(&head, "www-authenticate").as_deref(),
        Some(
            format!(
                "bearer realm=\"http://{}/token\",service=\"image-maker\",scope=\"repository:mock:pull\"",
                server.host
            )
            .as_str()
        ),
        "{head}"
    );
    // Behind a balancer that terminates TLS: the URL clients use, `https` included.
    let behind = Served::start(&[
        "--auth",
        &auth,
        "--public-url",
        "HTTPS://Registry.Example.com/",
    ]);
    let (status, head, _) = fetch(tool, &[&evil[..], &[&behind.url("/v2/")]].concat());
    assert_eq!(status, 401);
    assert_eq!(
        header(&head, "www-authenticate").as_deref(),
        Some("bearer realm=\"https://registry.example.com/token\",service=\"image-maker\""),
        "{head}"
    );
    for (url, says) in [
        ("registry.example.com", "has no `http://` or `https://`"),
        (
            "ftp://registry.example.com",
            "is neither `http://` nor `https://`",
        ),
        ("https://registry.example.com/v2/", "has a path"),
        ("https://registry.example.com?x", "has a query"),
        ("http://0.0.0.0:5000", "names the unspecified address"),
        ("http://registry:0", "has a port that is not a number"),
    ] {
        let out = run(image_maker().args(["serve", "--auth", &auth, "--public-url", url]));
        assert_eq!(out.status.code(), Some(2), "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("error: `--public-url` value `{url}` {says}"))
                && err.contains("\nhint: "),
            "{err}"
        );
    }
}

#[test]
fn a_token_verifies_on_replicas_given_the_same_secret_and_no_other() {
    let Some(tool) = tool("curl") else {
        return;
    };
    let password = format!("pw-{}", unique());
    let auth = format!("bearer:alice:{password}");
    let creds = format!("alice:{password}");
    let dir = tempdir();
    let file = dir.path().join("token-secret");
    // As a Kubernetes Secret mounts it, with the newline `echo` leaves.
    fs::write(&file, format!("{SECRET}\n")).expect("secret file");
    let a = Served::start(&["--auth", &auth, "--token-secret", SECRET]);
    let b = Served::start(&["--auth", &auth, "--token-secret-file", path_str(&file)]);
    let random = Served::start(&["--auth", &auth]);
    let other = Served::start(&["--auth", &auth, "--token-secret", &SECRET.replace('5', "6")]);
    let issued = token(tool, &a, &creds);
    assert_eq!(with_token(tool, &a, &issued), 200);
    assert_eq!(
        with_token(tool, &b, &issued),
        200,
        "a replica with the same secret"
    );
    assert_eq!(with_token(tool, &random, &issued), 401, "a random secret");
    assert_eq!(with_token(tool, &other, &issued), 401, "another secret");
    assert_eq!(with_token(tool, &a, &token(tool, &random, &creds)), 401);
    // Tampering with the user or the expiry breaks the MAC.
    let parts: Vec<&str> = issued.split('.').collect();
    assert_eq!(parts.len(), 4, "{issued}");
    let later = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1],
        parts[2].replace('1', "2"),
        parts[3]
    );
    assert_eq!(with_token(tool, &a, &later), 401, "a later expiry");
    // A captured token is no test of a password guess: it is not the HMAC of its expiry
    // keyed by the credentials (the scheme by which one token gave `change-me` away).
    let expiry: u64 = parts[2].parse().expect("expiry");
    let mut guess = hmac::Hmac::<sha2::Sha256>::new_from_slice(
        format!("image-maker token v1\0alice\0{password}").as_bytes(),
    )
    .expect("key");
    guess.update(&expiry.to_le_bytes());
    let guessed: String = guess
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        !issued.contains(&guessed),
        "the right password's MAC is in {issued}"
    );
    // Short secrets are refused, wherever they come from, and never shown.
    for out in [
        run(image_maker().args([
            "serve",
            "--auth",
            &auth,
            "--token-secret",
            "S3cret-but-short",
        ])),
        run(image_maker()
            .env("IMAGE_MAKER_SERVE_TOKEN_SECRET", "S3cret-but-short")
            .args(["serve", "--auth", &auth])),
    ] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: the token secret is shorter than 32 bytes\nhint: "),
            "{err}"
        );
        assert!(!err.contains("S3cret"), "{err}");
    }
}

#[test]
fn skopeo_and_docker_get_in_with_an_htpasswd_file() {
    let (Some(skopeo), Some(htpasswd)) = (tool("skopeo"), tool("htpasswd")) else {
        return;
    };
    let docker = engine("docker");
    let password = format!("pw-{}", unique());
    let dir = tempdir();
    let file = dir.path().join("users.htpasswd");
    // One user as Debian's `htpasswd -B` writes it (`$2y$`), one by the bcrypt crate (`$2b$`).
    htpasswd_b(htpasswd, &file, "alice", &password, true);
    let bob = bcrypt::hash(format!("bob-{password}"), 6).expect("bcrypt");
    let mut text = fs::read_to_string(&file).expect("htpasswd file");
    assert!(text.starts_with("alice:$2y$"), "{text}");
    text.push_str(&format!("# added by hand\nbob:{bob}\n"));
    fs::write(&file, &text).expect("write");
    for kind in ["htpasswd", "bearer-htpasswd"] {
        let auth = format!("{kind}:{}", file.display());
        let server = Served::start(&["--auth", &auth]);
        let image = format!("docker://{}/mock:1MB_1KB", server.host);
        let inspect = |creds: &str| {
            run(skopeo.cmd().args([
                "inspect",
                "--tls-verify=false",
                "--format",
                "{{.Digest}}",
                "--creds",
                creds,
                &image,
            ]))
        };
        for creds in [format!("alice:{password}"), format!("bob:bob-{password}")] {
            let out = inspect(&creds);
            assert!(out.status.success(), "{kind}: {}", stderr(&out));
            assert!(stdout(&out).starts_with("sha256:"), "{}", stdout(&out));
        }
        for wrong in ["alice:nope", "carol:nope"] {
            assert!(!inspect(wrong).status.success(), "{kind}: in as {wrong}");
        }
        if let Some(docker) = docker {
            let image = format!("{}/mock:1MB_1KB", server.host);
            docker_login_and_pull(docker, &server.host, "alice", &password, &image, kind);
        }
        let log = server.log();
        assert!(
            !log.contains(&password),
            "{kind}: a password in the log: {log}"
        );
        assert!(!log.contains("$2"), "{kind}: a hash in the log: {log}");
    }
}

#[test]
fn wrong_passwords_from_one_client_get_slower_and_the_right_one_still_gets_in() {
    let Some(tool) = tool("curl") else {
        return;
    };
    let password = format!("pw-{}", unique());
    let dir = tempdir();
    let file = dir.path().join("users.htpasswd");
    let hash = bcrypt::hash(&password, 4).expect("bcrypt");
    fs::write(&file, format!("alice:{hash}\n")).expect("write");
    let auth = format!("bearer-htpasswd:{}", file.display());
    let server = Served::start(&["--auth", &auth]);
    let url = server.url("/token");
    let attempt = |from: &str, creds: &str| {
        let started = Instant::now();
        let (status, _, body) = fetch(tool, &["--interface", from, "-u", creds, &url]);
        (status, started.elapsed(), body)
    };
    // Asking for the challenge is no failure: none of these slow anything.
    for _ in 0..10 {
        assert_eq!(fetch(tool, &["-o", "/dev/null", &url]).0, 401);
    }
    let started = Instant::now();
    let mut times = Vec::new();
    for _ in 0..8 {
        let (status, took, body) = attempt("127.0.0.1", "alice:wrong");
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("wrong") && !body.contains("alice"), "{body}");
        times.push(took);
    }
    let wrong = started.elapsed();
    // The waits between the 4th and 8th attempts are 0.25 + 0.5 + 1 + 2 s: eight tries in
    // 3.75 s at the least, where unthrottled they took a few milliseconds each.
    assert!(
        wrong >= Duration::from_secs(3),
        "eight failures in {wrong:?}: {times:?}"
    );
    assert!(
        times[..4].iter().all(|t| *t < Duration::from_secs(5)),
        "{times:?}"
    );
    // Another client (another loopback address) is not slowed by this one's failures.
    let (status, took, _) = attempt("127.0.0.2", "alice:wrong");
    assert_eq!(status, 401);
    assert!(
        took < Duration::from_secs(3),
        "another client waited {took:?}"
    );
    // The right password from the slowed client waits its turn like any guess (4 s after
    // the last), then gets in ...
    let (status, right, body) = attempt("127.0.0.1", &format!("alice:{password}"));
    assert_eq!(status, 200, "{body}");
    assert!(right >= Duration::from_secs(1), "no wait: {right:?}");
    assert!(right < Duration::from_secs(60), "{right:?}");
    // ... and the client starts afresh.
    let (status, took, _) = attempt("127.0.0.1", "alice:wrong");
    assert_eq!(status, 401);
    assert!(took < Duration::from_secs(3), "{took:?}");
    eprintln!("wrong attempts took {times:?}; the right one after them {right:?}");

    // Many attempts at once from one client are queued as a sequence would be (turns at 0,
    // 0, 0, 0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75 s); those whose turn would be more than
    // 30 s away are refused at once with 429 and `Retry-After`.
    let flood: Vec<_> = (0..14)
        .map(|_| {
            spawn(tool.cmd().args([
                "-sS",
                "--max-time",
                "5",
                "--interface",
                "127.0.0.3",
                "-D",
                "/dev/stderr",
                "-o",
                "/dev/null",
                "-u",
                "alice:wrong",
                &url,
            ]))
        })
        .collect();
    let outs: Vec<Output> = flood.into_iter().map(|r| r.finish()).collect();
    let statuses: Vec<Option<u16>> = outs
        .iter()
        .map(|o| {
            stderr(o)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .collect();
    let count = |s: u16| statuses.iter().filter(|x| **x == Some(s)).count();
    assert_eq!(count(200), 0, "{statuses:?}");
    assert!(count(401) >= 4, "the first four go at once: {statuses:?}");
    assert!(count(429) >= 1, "{statuses:?}");
    let refused = outs
        .iter()
        .map(stderr)
        .find(|h| h.starts_with("HTTP/1.1 429"))
        .expect("a 429");
    let retry = header(&refused.to_ascii_lowercase(), "retry-after").expect("Retry-After");
    assert!(
        retry.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)),
        "{refused}"
    );
    assert!(
        statuses.iter().any(Option::is_none),
        "turns 7.75 s and 15.75 s away are still waiting when curl gives up after 5 s: {statuses:?}"
    );
}

#[test]
fn no_credential_shows_in_an_error_or_the_log() {
    let Some(tool) = tool("curl") else {
        return;
    };
    let dir = tempdir();
    let secret = "S3cretPart";
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).expect("write");
        path
    };
    let good = bcrypt::hash("irrelevant", 4).expect("bcrypt");
    let md5 = write("md5", &format!("alice:{good}\nbob:$apr1${secret}$x\n"));
    let plain = write("plain", &format!("alice:{secret}\n"));
    let pasted = write("pasted", &format!("{secret}\n"));
    let empty = write("empty", "# nobody yet\n");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--auth".into(), format!("{secret}:x:y")],
            "KIND:USER:PASS",
        ),
        (vec!["--auth".into(), secret.into()], "KIND:USER:PASS"),
        (vec!["--auth".into(), "htpasswd:".into()], "KIND:USER:PASS"),
        (
            vec!["--auth".into(), format!("htpasswd:{}", md5.display())],
            "line 2: holds an MD5 (`$apr1$`) hash",
        ),
        (
            vec![
                "--auth".into(),
                format!("bearer-htpasswd:{}", plain.display()),
            ],
            "line 1: holds no bcrypt hash",
        ),
        (
            vec!["--auth".into(), format!("htpasswd:{}", pasted.display())],
            "line 1: has no `:`",
        ),
        (
            vec!["--auth".into(), format!("htpasswd:{}", empty.display())],
            "names no user",
        ),
        (
            vec![
                "--auth".into(),
                format!("htpasswd:{}", dir.path().join("none").display()),
            ],
            "cannot read the htpasswd file",
        ),
        (
            vec![
                "--auth".into(),
                "bearer:alice:pw".into(),
                "--public-url".into(),
                format!("https://alice:{secret}@registry.example"),
            ],
            "user information",
        ),
        (
            vec!["--token-secret".into(), secret.into()],
            "shorter than 32 bytes",
        ),
    ];
    for (args, says) in &cases {
        let out = run(image_maker().arg("serve").args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains(says) && err.contains("\nhint: "),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains(secret) && !err.contains(&good[7..]),
            "{args:?}: {err}"
        );
    }
    // 401 bodies and the access log say nothing of what was presented.
    let password = format!("pw-{}", unique());
    let file = write(
        "users",
        &format!("alice:{}\n", bcrypt::hash(&password, 4).expect("bcrypt")),
    );
    for auth in [
        format!("basic:alice:{password}"),
        format!("bearer-htpasswd:{}", file.display()),
    ] {
        let server = Served::start(&["--auth", &auth]);
        for path in [
            "/v2/mock/manifests/1KB",
            "/token?account=alice&scope=x",
            "/v2/",
        ] {
            for creds in [format!("alice:{secret}"), format!("{secret}:x")] {
                let (status, _, body) = fetch(tool, &["-u", &creds, &server.url(path)]);
                assert!(
                    status == 401 || status == 404,
                    "{auth} {path}: {status} {body}"
                );
                assert!(
                    !body.contains(secret) && !body.contains(&password),
                    "{body}"
                );
            }
        }
        let form = format!("grant_type=password&username=alice&password={secret}");
        let (status, _, body) = fetch(tool, &["-d", &form, &server.url("/token")]);
        assert!(status == 401 || status == 404, "{status} {body}");
        assert!(!body.contains(secret), "{body}");
        let log = server.log();
        assert!(log.contains(" 401 "), "{log}");
        assert!(
            !log.contains(secret) && !log.contains(&password) && !log.contains("account="),
            "{log}"
        );
    }
}
