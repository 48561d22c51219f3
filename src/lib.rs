//! Mock OCI container images of exact shapes, for tests.
//!
//! ```no_run
//! use image_maker::{build, BuildRequest, Output, Progress, Reference, Spec};
//!
//! let spec = Spec::parse("5MB,2KB:files=3")?;
//! let request = BuildRequest::new(spec, Reference::parse("mock/small:1")?)
//!     .output(Output::OciDir("target/mock-small".into()));
//! let built = build(&request, &mut Progress::hidden())?;
//! println!("{} {}", built.reference, built.digest);
//! # Ok::<(), image_maker::Error>(())
//! ```
//!
//! Test fixtures need only the default-less crate: `#[mock_image]`, [`Fixture`],
//! [`MockImage`], the native builder and the cache. Cargo features add the rest:
//! `engine` (loading into docker or podman, the dockerfile builder), `registry` (pushes),
//! `serve` (a registry that makes images as they are pulled, and [`MockRegistry`]), and
//! `cli` (the `image-maker` command, which needs them all).
//!
//! Checking: [`expect()`] gives the root filesystem an unpack must produce, [`verify()`]
//! re-reads an image (or [`verify_rootfs`] an unpacked one) against its spec, and
//! [`inspect()`] reports what an image holds. [`serve`] is a registry that makes images as
//! they are pulled.
//!
//! Inside, from the bottom up: spec (the `image-maker-spec` grammar) → plan → content →
//! layer → compress → image → sinks; the builders beneath the cache, the fixtures and the
//! command line on top. Nothing imports upward.

#![warn(missing_docs)]

// Every module is the crate's own: the public API is the names re-exported below, and a
// new public item is a decision `tests/public-api.txt` records.
mod added;
pub(crate) mod artifacts;
mod base;
pub(crate) mod build;
pub(crate) mod cache;
/// The `image-maker` command. Not an API: it is public for `src/main.rs` and xtask only.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub(crate) mod compress;
pub(crate) mod config;
pub(crate) mod content;
pub(crate) mod digest;
#[cfg(doctest)]
mod doctests;
pub(crate) mod engine;
mod entry;
mod error;
// What a build will write and need, for the command line's `--dry-run`.
#[cfg(feature = "cli")]
pub(crate) mod estimate;
pub(crate) mod expect;
mod extra;
pub(crate) mod fixture;
pub(crate) mod image;
pub(crate) mod interrupt;
pub(crate) mod layer;
pub(crate) mod media_types;
pub(crate) mod pipeline;
pub(crate) mod plan;
pub(crate) mod progress;
#[cfg(feature = "registry")]
pub(crate) mod registry;
pub(crate) mod request;
pub(crate) mod rootfs;
pub(crate) mod runnable;
#[cfg(feature = "serve")]
pub mod serve;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod spec;
mod speed;
#[doc(hidden)]
pub mod testing;
mod tree;
pub(crate) mod units;
pub(crate) mod verify;

pub(crate) use image_maker_spec::{platform, reference};

// The fixtures.
#[doc(hidden)]
pub use fixture::__private;
pub use fixture::{fixture, Fixture, MockImage};
/// `#[mock_image(layers = "1GB,512MB")] fn t(img: MockImage) { … }`: a test that receives
/// a mock image, built once per spec and shared through the cache.
pub use image_maker_macros::mock_image;
#[cfg(feature = "serve")]
pub use serve::MockRegistry;

// Building.
pub use added::Added;
pub use base::Base;
pub use build::build;
pub use cache::Cache;
pub use config::ImageConfig;
#[cfg(feature = "engine")]
pub use engine::Engine;
pub use engine::EngineKind;
pub use image::{LayerInfo, SPEC_LABEL};
pub use image_maker_spec::{LayerSpec, Platform, Reference, Spec};
pub use media_types::MediaTypes;
pub use progress::{set_log_hook, LogLevel, Progress};
pub use request::{
    BuildRequest, Builder, Built, LinkMode, Output, PlatformImage, Pushed, RegistryOptions,
};

// Checking.
pub use expect::{expect, Counts, Expected};
pub use source::Source;
pub use verify::{inspect, verify, verify_rootfs, Report};

// The errors.
pub use added::AddError;
pub use base::BaseError;
pub use config::ConfigError;
pub use error::{Error, UsageError};
pub use image_maker_spec::{PlatformError, ReferenceError, SpecError};
pub use request::OutputError;
