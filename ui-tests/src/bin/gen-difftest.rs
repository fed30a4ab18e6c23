//! Writes `tests/generated/difftest_bodies.rs` (the differential test's bodies).

fn main() -> std::io::Result<()> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/generated/difftest_bodies.rs");
    std::fs::write(&path, ui_tests::difftest::generate())?;
    println!(
        "wrote {} bodies to {}",
        ui_tests::difftest::BODIES,
        path.display()
    );
    Ok(())
}
