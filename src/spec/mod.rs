//! Layer specs: the grammar and their tag form (the `image-maker-spec` crate, shared with the
//! attribute macro) and the spec hash, SHA-256 of the canonical form, that seeds the content
//! and keys the cache.

use sha2::{Digest as _, Sha256};

use crate::digest::hex;

// Which of these a build uses depends on its features (serve reads tags, the CLI sizes).
#[allow(unused_imports)]
pub use image_maker_spec::{
    format_size, parse_byte_size, spec_of_tag, tag_of, Compression, Extra, LayerSpec, Layout,
    Ratio, Run, Spec, SpecError, TagError, Word, MAX_TAG_LEN,
};

/// The spec hash. A trait because the grammar crate stays free of hashing: the attribute
/// macro compiles it at every test build.
pub trait SpecHash {
    /// SHA-256 of the canonical form: seeds the content, keys the cache.
    fn hash(&self) -> [u8; 32];

    /// The spec hash as lowercase hex.
    fn hash_hex(&self) -> String {
        hex(&self.hash())
    }
}

impl SpecHash for Spec {
    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical().as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_hash_is_stable() {
        // Pinned: changing this changes every image digest users have recorded.
        let spec = Spec::parse("1GB,512MB").expect("valid");
        assert_eq!(spec.canonical(), "1GB:files=1,512MB:files=1");
        assert_eq!(
            spec.hash_hex(),
            "f7ca7e7cc8a8ae80e13f1b5dc53f2ba5a6e6fd002ae0b9d87fb13bd01105d991"
        );
        assert_eq!(
            spec.hash(),
            Spec::parse("1024MB,0.5GB").expect("valid").hash()
        );
        assert_ne!(spec.hash(), Spec::parse("512MB,1GB").expect("valid").hash());
        // Units as people type them and `Nx` keep the digests users recorded.
        for typed in ["1g,512m", "1Gb,512mb", "1x1G,1x0.5g"] {
            assert_eq!(
                Spec::parse(typed).expect("valid").hash(),
                spec.hash(),
                "{typed}"
            );
        }
        assert_eq!(
            Spec::parse("2x1K:files=2").expect("valid").hash_hex(),
            Spec::parse("1KB:files=2,1KB:files=2")
                .expect("valid")
                .hash_hex()
        );
    }

    #[test]
    fn layouts_hash_apart() {
        assert_ne!(
            Spec::parse("64MB:tree=5000").expect("valid").hash(),
            Spec::parse("64MB:files=5000").expect("valid").hash()
        );
    }
}
