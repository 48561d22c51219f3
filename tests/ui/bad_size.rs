use image_maker::{mock_image, MockImage};

#[mock_image(layers = "1GB,12XB")]
fn bad_unit(img: MockImage) {
    let _ = img;
}

#[mock_image(layers = "0MB")]
fn zero(img: MockImage) {
    let _ = img;
}

fn main() {}
