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
pub mod cli;
pub mod content;
pub mod digest;
pub mod engine;
mod error;
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

pub use build::{build, BuildRequest, Built};
pub use engine::{Engine, EngineKind};
pub use error::Error;
pub use image::LayerInfo;
pub use platform::Platform;
pub use progress::Progress;
pub use reference::Reference;
pub use sink::Output;
pub use spec::{LayerSpec, Spec};
