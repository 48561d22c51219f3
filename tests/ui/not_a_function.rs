use image_maker::mock_image;

#[mock_image(layers = "1MB")]
struct Fixture;

#[mock_image(layers = "1MB")]
fn two_images(a: image_maker::MockImage, b: image_maker::MockImage) {
    let _ = (a, b);
}

fn main() {
    let _ = Fixture;
}
