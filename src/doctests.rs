//! The Rust examples of the README and docs/, compiled (and run, unless marked `no_run`) as
//! doctests, so that they follow the real API.

#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[doc = include_str!("../docs/library.md")]
pub struct LibraryDoctests;

#[doc = include_str!("../docs/serve.md")]
pub struct ServeDoctests;
