//! Not an API. The internals that the integration tests, benchmarks and xtask reach, in one
//! place, so that each is a visible exception rather than a public module. Anything here
//! may change in any release.

#[cfg(feature = "engine")]
pub use crate::build::dockerfile::key as dockerfile_key;
pub use crate::cache::GcOptions;
pub use crate::content::{seed, FileContent};
pub use crate::plan::{layers as plan_layers, LayerPlan};
pub use crate::spec::{tag_of, SpecHash, TagError};
pub use crate::units::human_size;
