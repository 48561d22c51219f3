//! Integration tests: the real CLI against real tools (skopeo, umoci, oci-image-tool,
//! docker, podman, docker-registry). A missing tool skips a test with a `skipped:` line
//! (also appended to `IMAGE_MAKER_SKIP_LOG` when set), unless `CI` or
//! `IMAGE_MAKER_REQUIRE_ENGINES` is set (to anything but `0` or `false`), in which case it
//! fails. Each test builds with a cache of its own; see `support`.

mod added;
mod archive;
mod base;
mod benches;
mod cache;
mod cli;
mod config;
mod deploy;
mod determinism;
mod dockerfile;
mod dry_run;
mod encodings;
mod engine;
mod exactness;
mod expect;
mod failures;
mod families;
mod link;
mod macros;
mod oci;
mod platforms;
mod registry;
mod runnable;
mod serve;
mod serve_auth;
mod serve_disk;
mod serve_limits;
mod serve_metrics;
mod serve_registry;
mod shapes;
mod support;
mod usability;
mod verify;
mod warm;
