//! One trybuild batch: every pass case compiles and runs (its `main` checks the
//! workflow in the simulator, on the engine, and on an engine stopped after every
//! write whose snapshot, with every codec, a fresh engine resumes); every fail case
//! fails with its `.stderr`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/**/*.rs");
}
