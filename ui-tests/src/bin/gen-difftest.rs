//! Writes `tests/difftest.rs` (the differential test's generated bodies).

fn main() -> std::io::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/difftest.rs");
    std::fs::write(&path, ui_tests::difftest::generate())?;
    println!(
        "wrote {} bodies to {}",
        ui_tests::difftest::BODIES,
        path.display()
    );
    Ok(())
}
