//! What a downstream test suite looks like: one dev-dependency, one attribute per test.

use downstream::{blob_bytes, blob_count};
use image_maker::{mock_image, MockImage};

#[mock_image(layers = "2MB,512KB:files=10")]
fn counts_every_blob(img: MockImage) {
    // Two layers, the config and the manifest.
    assert_eq!(blob_count(img.oci_dir()).unwrap(), 4);
    let layers: u64 = img.layers().iter().map(|l| l.size).sum();
    let total = blob_bytes(img.oci_dir()).unwrap();
    assert!(total > layers, "{total} <= {layers}");
    assert!(
        total < layers + 4096,
        "{total}: config and manifest are small"
    );
}

#[mock_image(layers = "2MB,512KB:files=10", tag = "downstream/same:1")]
fn the_same_spec_is_the_same_image(img: MockImage) -> Result<(), std::io::Error> {
    // Shared with the test above: built once, whichever runs first.
    assert_eq!(img.reference(), "downstream/same:1");
    assert_eq!(img.layers()[0].payload, 2 << 20);
    assert_eq!(blob_count(img.oci_dir())?, 4);
    Ok(())
}

#[mock_image(layers = "1KB", platform = "linux/arm64")]
fn arm_images_too(img: MockImage) {
    assert_eq!(img.platform(), "linux/arm64");
    assert_eq!(blob_count(img.oci_dir()).unwrap(), 3);
}
