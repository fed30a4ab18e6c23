//! The checked-in generated differential test is what the generator writes today.

#[test]
fn generated_difftest_is_up_to_date() {
    let checked_in = include_str!("generated/difftest_bodies.rs");
    assert!(
        checked_in == ui_tests::difftest::generate(),
        "tests/generated/difftest_bodies.rs is stale: run `cargo run -p ui-tests --bin gen-difftest`"
    );
}
