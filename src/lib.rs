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
//! Modules, from the bottom up: [`spec`] (the grammar) → plan → [`content`] → layer →
//! image → sinks; the builders ([`mod@build`]) beneath the [`cache`], the [`mod@fixture`]s and the
//! command line on top. Nothing imports upward.

#![warn(missing_docs)]

pub mod build;
pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
pub(crate) mod compress;
pub mod content;
pub mod digest;
#[cfg(doctest)]
mod doctests;
pub mod dry_run;
pub mod engine;
mod entry;
mod error;
pub mod expect;
mod extra;
pub mod fixture;
pub(crate) mod image;
pub mod interrupt;
pub(crate) mod layer;
pub(crate) mod pipeline;
pub mod plan;
pub mod progress;
#[cfg(feature = "registry")]
pub mod registry;
pub mod request;
pub mod rootfs;
#[cfg(feature = "serve")]
pub mod serve;
pub(crate) mod sink;
pub mod source;
pub use image_maker_spec::{platform, reference};
pub mod spec;
mod speed;
mod tree;
pub mod units;
pub mod verify;

pub use build::build;
pub use cache::Cache;
#[cfg(feature = "engine")]
pub use engine::Engine;
pub use engine::EngineKind;
pub use error::{Error, UsageError};
pub use fixture::{__private, fixture, Fixture, MockImage};
pub use image::{LayerInfo, SPEC_LABEL};
/// `#[mock_image(layers = "1GB,512MB")] fn t(img: MockImage) { … }`: a test that receives
/// a mock image, built once per spec and shared through the cache.
pub use image_maker_macros::mock_image;
pub use platform::Platform;
pub use progress::Progress;
pub use reference::Reference;
pub use request::{
    BuildRequest, Builder, Built, LinkMode, Output, OutputError, PlatformImage, PushOptions, Pushed,
};
#[cfg(feature = "serve")]
pub use serve::MockRegistry;
pub use spec::{LayerSpec, Spec};
