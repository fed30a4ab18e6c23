//! Writes `tests/generated/difftest_bodies.rs` (the differential test's bodies).
//!
//! `gen-difftest --seed N --count N --out FILE` writes another set instead, to explore
//! beyond what CI runs (include it from a test file like `tests/difftest.rs` does).

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (text, count, path) = match value("--seed") {
        Some(seed) => {
            let seed: u64 = seed.parse().expect("--seed takes a number");
            let count: usize =
                value("--count").map_or(200, |c| c.parse().expect("--count takes a number"));
            let out = value("--out").expect("--out FILE");
            (
                ui_tests::difftest::generate_with(seed, count),
                count,
                std::path::PathBuf::from(out),
            )
        }
        None => (
            ui_tests::difftest::generate(),
            ui_tests::difftest::BODIES,
            root.join("tests/generated/difftest_bodies.rs"),
        ),
    };
    std::fs::write(&path, text)?;
    println!("wrote {count} bodies to {}", path.display());
    Ok(())
}
