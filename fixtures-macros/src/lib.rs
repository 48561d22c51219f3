//! Procedural macros for image-maker test fixtures; the `#[mock_image(...)]` test
//! attribute will live here, re-exported by the `image-maker` crate.
