use image_maker::{mock_image, MockImage};

#[mock_image(layers = 1024)]
fn number(img: MockImage) {
    let _ = img;
}

#[mock_image(layers = "1MB", platform = linux)]
fn path(img: MockImage) {
    let _ = img;
}

#[mock_image(layers = "1MB", platform = "windows/amd64/v9/x", tag = "Mock/Upper:1")]
fn bad_values(img: MockImage) {
    let _ = img;
}

fn main() {}
