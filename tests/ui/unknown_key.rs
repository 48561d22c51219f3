use image_maker::{mock_image, MockImage};

#[mock_image(layers = "1MB", size = "2MB", platfrom = "linux/arm64")]
fn misspelled(img: MockImage) {
    let _ = img;
}

#[mock_image(platform = "linux/arm64")]
fn no_layers(img: MockImage) {
    let _ = img;
}

fn main() {}
