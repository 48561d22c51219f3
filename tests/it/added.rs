//! `--add SRC:DEST`: a host file or directory as a layer of its own, whose digest follows
//! its bytes, names and modes alone.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use crate::support::*;

#[test]
fn a_host_binary_added_as_the_entrypoint_runs_under_docker() {
    let Some(docker) = engine("docker") else {
        return;
    };
    let image = EngineImage::new(docker, "added");
    run_ok(image_maker().args([
        "-q",
        "-s",
        "1KB",
        "--add",
        "/bin/busybox:/bin/busybox",
        "--entrypoint",
        r#"["/bin/busybox","echo","added-ok"]"#,
        "-e",
        "docker",
        &image.reference,
    ]));
    let out = run_ok(docker.cmd().args(["run", "--rm", &image.reference]));
    assert_eq!(stdout(&out), "added-ok\n");
}

/// The same bytes, names and modes give the same layer whatever the files' times and the
/// host path; umoci unpacks what was added, links and modes kept.
#[test]
fn an_added_directory_is_stable_and_unpacks_as_it_was() {
    let Some(umoci) = tool("umoci") else {
        return;
    };
    let tmp = tempdir();
    let make = |at: &std::path::Path| {
        fs::create_dir_all(at.join("lib")).expect("mkdir");
        fs::write(at.join("app"), b"#!/bin/sh\necho hi\n").expect("write");
        fs::set_permissions(at.join("app"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(at.join("lib/data.bin"), vec![7u8; 70_000]).expect("write");
        std::os::unix::fs::symlink("../app", at.join("lib/app")).expect("symlink");
    };
    let (one, two) = (tmp.path().join("one"), tmp.path().join("elsewhere/two"));
    make(&one);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make(&two);
    let build = |src: &std::path::Path, dir: &str| {
        json(&run_ok(image_maker().args([
            "-q",
            "--json",
            "-s",
            "1KB",
            "--add",
            &format!("{}:/opt/tool", path_str(src)),
            "-o",
            &format!("oci:{}", path_str(&tmp.path().join(dir))),
            "mock/added:1",
        ])))
    };
    let first = build(&one, "a");
    let second = build(&two, "b");
    assert_eq!(first["digest"], second["digest"]);
    assert_eq!(first["layers"].as_array().map(Vec::len), Some(2));
    fs::write(one.join("lib/data.bin"), vec![8u8; 70_000]).expect("write");
    assert_ne!(
        build(&one, "c")["layers"][1]["digest"],
        first["layers"][1]["digest"]
    );

    // verify knows the added layer for what it is: checked by its digests.
    run_ok(image_maker().args([
        "verify",
        "-q",
        &format!("oci:{}:1", path_str(&tmp.path().join("b"))),
    ]));
    let bundle = tmp.path().join("bundle");
    run_ok(umoci.cmd().args([
        "unpack",
        "--image",
        &format!("{}:1", path_str(&tmp.path().join("b"))),
        path_str(&bundle),
    ]));
    let root = bundle.join("rootfs/opt/tool");
    assert_eq!(
        fs::read(root.join("app")).expect("app"),
        b"#!/bin/sh\necho hi\n"
    );
    let mode = fs::metadata(root.join("app"))
        .expect("app")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        fs::read_link(root.join("lib/app")).expect("link").to_str(),
        Some("../app")
    );
    assert_eq!(
        fs::read(root.join("lib/data.bin")).expect("data").len(),
        70_000
    );
}

#[test]
fn bad_adds_exit_2_naming_them_and_leave_nothing() {
    let tmp = tempdir();
    let dest = tmp.path().join("layout");
    for (add, says, extra) in [
        ("nope:/x", "cannot read `nope` for --add", &[][..]),
        ("/bin/busybox", "`/bin/busybox` is not `SRC:DEST`", &[]),
        ("/bin/busybox:/a/../b", "`/a/../b` is not a path", &[]),
        (
            "/bin/busybox:/bin/busybox",
            "`--add` layers",
            &["--builder", "dockerfile"][..],
        ),
    ] {
        let out = run(image_maker()
            .args([
                "-s",
                "1KB",
                "--add",
                add,
                "-o",
                &format!("oci:{}", path_str(&dest)),
            ])
            .args(extra)
            .arg("mock/bad:1"));
        assert_eq!(out.status.code(), Some(2), "{add}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{add}: {}", stderr(&out));
        assert!(!dest.exists());
    }
}
