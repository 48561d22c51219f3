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

pub mod build;
pub mod cache;
pub mod cli;
pub mod content;
pub mod digest;
pub mod dockerfile;
pub mod engine;
mod error;
mod fixture;
pub mod image;
pub mod interrupt;
pub mod layer;
mod pipeline;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod sink;
pub mod spec;
pub mod units;

pub use build::{build, BuildRequest, Built};
pub use engine::{Engine, EngineKind};
pub use error::Error;
pub use fixture::{__private, fixture, Fixture, MockImage};
pub use image::LayerInfo;
/// `#[mock_image(layers = "1GB,512MB")] fn t(img: MockImage) { … }`: a test that receives
/// a mock image, built once per spec and shared through the cache.
pub use image_maker_macros::mock_image;
pub use platform::Platform;
pub use progress::Progress;
pub use reference::Reference;
pub use sink::Output;
pub use spec::{LayerSpec, Spec};
