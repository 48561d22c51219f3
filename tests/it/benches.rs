//! What the benchmarks share (`benches/support`), tested here: benchmarks run without a
//! test harness.

#[path = "../../benches/support/mod.rs"]
#[allow(dead_code)]
mod bench_support;

use bench_support::{median, parse_rounds};

#[test]
fn rounds_come_from_the_environment_and_zero_is_refused() {
    assert_eq!(parse_rounds(None, 3).expect("default"), 3);
    assert_eq!(parse_rounds(Some("5"), 3).expect("five"), 5);
    let zero = parse_rounds(Some("0"), 3).expect_err("zero rounds");
    // `main` prints the Debug form after `Error: `: the message alone, no quotes.
    assert_eq!(
        format!("{zero:?}"),
        "IMAGE_MAKER_BENCH_ROUNDS is 0: a benchmark needs at least one round"
    );
    let word = parse_rounds(Some("many"), 3).expect_err("not a number");
    assert!(
        format!("{word:?}").starts_with("IMAGE_MAKER_BENCH_ROUNDS `many` is not a number"),
        "{word:?}"
    );
    assert_eq!(
        median(vec![std::time::Duration::from_secs(1)]),
        std::time::Duration::from_secs(1)
    );
}
