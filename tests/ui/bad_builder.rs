use image_maker::{mock_image, MockImage};

#[mock_image(layers = "1MB", builder = "docker")]
fn builder_is_not_an_engine(img: MockImage) {
    let _ = img;
}

#[mock_image(layers = "1MB", engine = "podman")]
fn engine_without_the_dockerfile_builder(img: MockImage) {
    let _ = img;
}

#[mock_image(layers = "1MB", builder = "dockerfile", engine = "moby")]
fn unknown_engine(img: MockImage) {
    let _ = img;
}

fn main() {}
