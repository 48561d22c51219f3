use image_maker::{mock_image, MockImage};

#[mock_image(
    layers = "1MB",
    entrypoint = r#"{"a":1}"#,
    env = ["=x", "OK=1"],
    labels = ["foo"],
    expose = ["70000", "53/udp"],
    stop_signal = "SIGRTMIN"
)]
fn bad_values(img: MockImage) {
    let _ = img;
}

#[mock_image(layers = "1MB", env = "A=1", workdir = ["/srv"])]
fn wrong_shapes(img: MockImage) {
    let _ = img;
}

#[mock_image(
    layers = "1MB",
    builder = "dockerfile",
    annotations = ["a=b"],
    workdir = "/srv"
)]
fn not_in_a_dockerfile(img: MockImage) {
    let _ = img;
}

fn main() {}
