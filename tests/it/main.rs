//! Integration tests: the real CLI against real tools (skopeo, umoci, oci-image-tool,
//! docker, podman). A missing tool skips a test with a `skipped:` line, unless `CI` or
//! `IMAGE_MAKER_REQUIRE_ENGINES=1` is set, in which case it fails.

mod archive;
mod cache;
mod cli;
mod determinism;
mod dockerfile;
mod engine;
mod failures;
mod macros;
mod oci;
mod registry;
mod support;
mod warm;
