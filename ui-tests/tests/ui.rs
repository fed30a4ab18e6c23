//! One trybuild batch: every pass case compiles and runs (its `main` checks the
//! workflow on the engine and in the simulator, stopped and resumed at every
//! checkpoint with every codec); every fail case fails with its `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/**/*.rs");
}
