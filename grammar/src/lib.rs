//! The grammars of image-maker, shared by its library, its command line and its
//! `#[mock_image]` attribute, so that a spec the macro accepts at compile time is one the
//! command line accepts, with the same error text:
//!
//! - [`spec`], layer lists: `1GB,512MB:files=1000,3x64MB:tree=5000:compression=gzip`;
//! - [`tag`], a spec as an image tag and back: `mock:1GB_512MB`;
//! - [`platform`], `os/arch[/variant]`;
//! - [`reference`](mod@reference), `[host[:port]/]path[:tag]`.
//!
//! ```
//! use image_maker_spec::{spec_of_tag, tag_of, Platform, Reference, Spec};
//!
//! let spec = Spec::parse("2x1MB,64MB:tree=500")?;
//! assert_eq!(spec.layers().len(), 3);
//! assert_eq!(tag_of(&spec.canonical())?, "1MB.files-1_1MB.files-1_64MB.tree-500");
//! assert_eq!(spec_of_tag("1MB_64MB.tree-500")?, Spec::parse("1MB,64MB:tree=500")?);
//! assert_eq!(Platform::parse("linux/arm64")?.to_string(), "linux/arm64");
//! assert_eq!(Reference::parse("mock/big")?.to_string(), "mock/big:latest");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod platform;
#[cfg(test)]
mod props;
pub mod reference;
pub mod spec;
pub mod tag;

pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError};
pub use spec::{
    format_size, parse_byte_size, Compression, Extra, LayerSpec, Layout, Ratio, Run, Spec,
    SpecError, Word, MAX_LAYERS, MAX_WORD,
};
pub use tag::{spec_of_tag, spec_text, tag_of, TagError, MAX_TAG_LEN};
