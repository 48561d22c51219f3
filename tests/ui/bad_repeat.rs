use image_maker::{mock_image, MockImage};

#[mock_image(layers = "1GB,0x1MB")]
fn zero_repeats(img: MockImage) {
    let _ = img;
}

fn main() {}
