use image_maker::{mock_image, MockImage};

#[mock_image(layers = "1MB", runnable = 5)]
fn not_a_bool(_img: MockImage) {}

#[mock_image(layers = "1MB", runnable = "read=200")]
fn a_bad_option(_img: MockImage) {}

#[mock_image(layers = "1MB,run", runnable = "ready=up")]
fn two_run_entries(_img: MockImage) {}

fn main() {}
