//! The differential test, in the spirit of a compiler test suite.
//!
//! [`generate`] writes many random workflow bodies in the supported subset (nested
//! branches and loops, early returns, `?` on checkpoints and on plain values, handled
//! activity failures, sleeps, `let x = if ..` values). `tests/difftest.rs` (its bodies checked in under `tests/generated/`,
//! kept up to date by `tests/difftest_fresh.rs`; regenerate with
//! `cargo run -p ui-tests --bin gen-difftest`) compiles each body twice: as a plain
//! async fn against a [`Plain`] context, and through `#[workflow]`. [`compare`] runs
//! both against the same scripted activity results and demands identical command
//! traces and results; the machine's state goes through a serde round-trip (JSON,
//! bincode, postcard in turn) at every checkpoint.

use std::fmt::Write;
use std::time::Duration;

use saga_runtime::codec::{AnyCodec, Codec};
use saga_runtime::domain::SagaId;
use saga_runtime::prelude::*;

/// `n * 3 + 1` (its results are scripted in the differential test).
#[activity]
pub async fn step(n: u64) -> Result<u64, ActivityError> {
    Ok(n * 3 + 1)
}

/// `n + 7` (its results are scripted in the differential test).
#[activity]
pub async fn other(n: u64) -> Result<u64, ActivityError> {
    Ok(n + 7)
}

/// A plain `Result` for `?` between checkpoints: fails on some values.
pub fn checked(n: u64) -> Result<u64, SagaError> {
    if n % 101 == 7 {
        Err(SagaError::rejected(format!("checked({n})")))
    } else {
        Ok(n % 1000)
    }
}

/// The scripted outcome of the `call`-th activity call on `input`.
pub fn outcome(seed: u64, call: usize, activity: &str, input: u64) -> Result<u64, ActivityError> {
    let h =
        splitmix(seed ^ (call as u64).wrapping_mul(0x9e37_79b9) ^ input ^ activity.len() as u64);
    if h.is_multiple_of(6) {
        Err(ActivityError::non_retryable(format!(
            "{activity}({input}) failed"
        )))
    } else {
        Ok(input % 1000 * 3 + (h % 10))
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The context the plain async fn version runs against: it records each command and
/// answers from the script. Its methods take `&self`, so that `ctx.join((..))` can
/// hold several calls at once, as with a real workflow context.
pub struct Plain {
    seed: u64,
    calls: std::cell::Cell<usize>,
    trace: std::cell::RefCell<Vec<Command>>,
}

impl Plain {
    /// A context answering from `seed`'s script.
    pub fn new(seed: u64) -> Self {
        Plain {
            seed,
            calls: std::cell::Cell::new(0),
            trace: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn call(&self) -> usize {
        let n = self.calls.get();
        self.calls.set(n + 1);
        n
    }

    /// Like `ctx.activity(f, input)`.
    pub async fn activity<F>(&self, _f: F, input: u64) -> Result<u64, ActivityError> {
        let name = std::any::type_name::<F>()
            .rsplit("::")
            .next()
            .unwrap_or_default();
        self.trace.borrow_mut().push(Command::ScheduleActivity {
            activity_type: name.to_owned(),
            input: serde_json::json!(input),
        });
        outcome(self.seed, self.call(), name, input)
    }

    /// Like `ctx.sleep(d)`.
    pub async fn sleep(&self, duration: Duration) {
        self.trace.borrow_mut().push(Command::sleep(duration));
        self.call();
    }

    /// Like `ctx.signal::<u64>(name)`; `.timeout(d)` bounds the wait.
    pub fn signal<T>(&self, name: &'static str) -> PlainSignal<'_, T> {
        PlainSignal {
            ctx: self,
            name,
            timeout: None,
            payload: std::marker::PhantomData,
        }
    }

    /// Like `ctx.join((a, b))`: both calls are issued, in order, before either result
    /// is used.
    pub async fn join<A, B>(&self, (a, b): (A, B)) -> (A::Output, B::Output)
    where
        A: std::future::Future,
        B: std::future::Future,
    {
        let a = a.await;
        let b = b.await;
        (a, b)
    }
}

/// A signal wait of the plain version.
pub struct PlainSignal<'a, T> {
    ctx: &'a Plain,
    name: &'static str,
    timeout: Option<Duration>,
    payload: std::marker::PhantomData<fn() -> T>,
}

impl<T> PlainSignal<'_, T> {
    /// Gives up after `d`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

impl<T: serde::de::DeserializeOwned> std::future::IntoFuture for PlainSignal<'_, T> {
    type Output = Result<T, SignalError>;
    type IntoFuture = std::future::Ready<Self::Output>;
    fn into_future(self) -> Self::IntoFuture {
        self.ctx
            .trace
            .borrow_mut()
            .push(Command::signal(self.name, self.timeout));
        let call = self.ctx.call();
        std::future::ready(
            match signal_outcome(self.ctx.seed, call, self.timeout.is_some()) {
                Some(v) => {
                    serde_json::from_value(serde_json::json!(v)).map_err(|e| SignalError::Decode {
                        name: self.name.to_owned(),
                        reason: e.to_string(),
                    })
                }
                None => Err(SignalError::TimedOut {
                    name: self.name.to_owned(),
                }),
            },
        )
    }
}

/// The scripted payload of the `call`-th call if it is a signal wait (`None`: it
/// times out, which only a wait with a timeout can).
pub fn signal_outcome(seed: u64, call: usize, has_timeout: bool) -> Option<u64> {
    let h = splitmix(seed.wrapping_mul(31) ^ (call as u64) ^ 0x5151);
    if has_timeout && h.is_multiple_of(3) {
        None
    } else {
        Some(h % 50)
    }
}

/// What one run produced.
pub type Outcome = (Result<u64, String>, Vec<Command>);

/// Runs the lowered machine against the script, round-tripping the state through a
/// codec (in turn) at every checkpoint. A suspension with several commands (a join)
/// is woken once per command, in order.
pub fn run_machine<W>(input: u64, seed: u64) -> Outcome
where
    W: Workflow<Input = u64, Output = u64, Error = SagaError>,
{
    let mut state = W::start(input);
    let mut wake = Wake::Start;
    let mut trace = Vec::new();
    let mut pending: std::collections::VecDeque<Wake> = std::collections::VecDeque::new();
    let mut calls = 0;
    for k in 0.. {
        let mut ctx = WorkflowContext::new(SagaId::new("diff"), chrono::DateTime::UNIX_EPOCH);
        match W::resume(state, &mut ctx, wake) {
            Transition::Complete(v) => return (Ok(v), trace),
            Transition::Fail(e) => return (Err(e.to_string()), trace),
            Transition::Suspend { state: s, commands } => {
                let codec = AnyCodec::ALL[k % AnyCodec::ALL.len()];
                let bytes = codec.encode(&s).expect("state encodes");
                state = codec.decode(&bytes).expect("state decodes");
                assert!(
                    commands.is_empty() || pending.is_empty(),
                    "new commands while waiting"
                );
                for (slot, command) in commands.into_iter().enumerate() {
                    let slot = slot as u32;
                    trace.push(command.clone());
                    calls += 1;
                    pending.push_back(match command {
                        Command::ScheduleActivity {
                            activity_type,
                            input,
                        } => {
                            let input = input.as_u64().expect("a u64 input");
                            Wake::Activity {
                                slot,
                                result: outcome(seed, calls - 1, &activity_type, input)
                                    .map(|v| serde_json::json!(v)),
                            }
                        }
                        Command::StartTimer { .. } => Wake::Timer { slot },
                        Command::WaitSignal { name, timeout } => Wake::Signal {
                            slot,
                            payload: signal_outcome(seed, calls - 1, timeout.is_some())
                                .map(|v| serde_json::json!(v)),
                            name,
                        },
                        other => panic!("unexpected command {other:?}"),
                    });
                }
                wake = pending
                    .pop_front()
                    .expect("suspended with nothing to wait for");
            }
        }
    }
    unreachable!()
}

/// Runs a future that never really waits (the plain version) to completion.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => panic!("the plain version waited"),
    }
}

impl Plain {
    /// The plain run's outcome: its result and the commands it issued.
    pub fn outcome(self, result: Result<u64, SagaError>) -> Outcome {
        (result.map_err(|e| e.to_string()), self.trace.into_inner())
    }
}

/// Asserts both versions agree for `input` and `seed`.
pub fn compare(name: &str, input: u64, seed: u64, machine: Outcome, plain: Outcome) {
    assert_eq!(
        machine, plain,
        "{name}: the lowered machine (left) and the plain async fn (right) disagree for input {input}, seed {seed}"
    );
}

// ---- the generator ----------------------------------------------------------------

struct Gen {
    rng: u64,
    /// Labels of the enclosing labelled loops.
    labels: Vec<String>,
    vars: usize,
    budget: usize,
}

impl Gen {
    fn next(&mut self) -> u64 {
        self.rng = splitmix(self.rng);
        self.rng
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.vars += 1;
        format!("{prefix}{}", self.vars)
    }

    fn activity(&mut self) -> &'static str {
        if self.below(3) == 0 {
            "other"
        } else {
            "step"
        }
    }

    fn input(&mut self) -> String {
        format!("acc % {} + {}", 50 + self.below(50), self.below(10))
    }

    fn cond(&mut self) -> String {
        format!("acc % {} == {}", 2 + self.below(4), self.below(2))
    }

    /// Statements at `depth` inside `loops` enclosing loops.
    fn block(&mut self, out: &mut String, indent: usize, depth: usize, loops: usize) {
        let n = 1 + self.below(if depth == 0 { 5 } else { 3 });
        for _ in 0..n {
            self.stmt(out, indent, depth, loops);
        }
    }

    fn stmt(&mut self, out: &mut String, indent: usize, depth: usize, loops: usize) {
        let pad = " ".repeat(indent);
        let nested = depth < 2 && self.budget > 0;
        let kind = self.below(if nested { 22 } else { 10 });
        match kind {
            0 | 1 => {
                let v = self.fresh("v");
                let (a, i) = (self.activity(), self.input());
                let _ = writeln!(out, "{pad}let {v}: u64 = ctx.activity({a}, {i}).await?;");
                let _ = writeln!(out, "{pad}acc += {v};");
            }
            2 => {
                let (a, i) = (self.activity(), self.input());
                let _ = writeln!(out, "{pad}acc += ctx.activity({a}, {i}).await?;");
            }
            3 => {
                let (a, i) = (self.activity(), self.input());
                let _ = writeln!(
                    out,
                    "{pad}match ctx.activity({a}, {i}).await {{\n{pad}    Ok(v) => acc += v,\n{pad}    Err(_) => acc += 1,\n{pad}}}"
                );
            }
            4 => {
                let c = self.cond();
                let _ = writeln!(out, "{pad}if {c} {{\n{pad}    return Ok(acc);\n{pad}}}");
            }
            5 => {
                let c = self.cond();
                let _ = writeln!(
                    out,
                    "{pad}if {c} && acc % 7 == 3 {{\n{pad}    return Err(SagaError::rejected(format!(\"stop at {{acc}}\")));\n{pad}}}"
                );
            }
            6 => {
                let q = self.fresh("q");
                let _ = writeln!(
                    out,
                    "{pad}let {q}: u64 = checked(acc)?;\n{pad}acc += {q} % 5;"
                );
            }
            7 => {
                if !self.labels.is_empty() && self.below(3) == 0 {
                    let c = self.cond();
                    let pick = self.below(self.labels.len() as u64) as usize;
                    let l = self.labels[pick].clone();
                    let jump = if self.below(2) == 0 {
                        "continue"
                    } else {
                        "break"
                    };
                    let _ = writeln!(out, "{pad}if {c} {{\n{pad}    {jump} {l};\n{pad}}}");
                } else if loops > 0 && self.below(2) == 0 {
                    let c = self.cond();
                    let jump = if self.below(2) == 0 {
                        "continue"
                    } else {
                        "break"
                    };
                    let _ = writeln!(out, "{pad}if {c} {{\n{pad}    {jump};\n{pad}}}");
                } else {
                    let _ = writeln!(
                        out,
                        "{pad}ctx.sleep(Duration::from_secs({})).await;",
                        1 + self.below(60)
                    );
                }
            }
            8 => {
                let (a, i) = (self.activity(), self.input());
                let (b, j) = (self.activity(), self.input());
                let (r, q) = (self.fresh("r"), self.fresh("r"));
                let _ = writeln!(
                    out,
                    "{pad}let ({r}, {q}) = ctx.join((ctx.activity({a}, {i}), ctx.activity({b}, {j}))).await;\n{pad}acc += {r}.unwrap_or(1);\n{pad}if let Ok(v) = {q} {{\n{pad}    acc += v;\n{pad}}}"
                );
            }
            9 => {
                let name = ["go", "more", "stop"][self.below(3) as usize];
                if self.below(2) == 0 {
                    let _ = writeln!(
                        out,
                        "{pad}match ctx.signal::<u64>(\"{name}\").timeout(Duration::from_secs({})).await {{\n{pad}    Ok(v) => acc += v,\n{pad}    Err(_) => acc += 2,\n{pad}}}",
                        1 + self.below(100)
                    );
                } else {
                    let g = self.fresh("g");
                    let _ = writeln!(
                        out,
                        "{pad}let {g}: u64 = ctx.signal(\"{name}\").await?;\n{pad}acc += {g};"
                    );
                }
            }
            10 | 11 => {
                self.budget -= 1;
                let c = self.cond();
                let _ = writeln!(out, "{pad}if {c} {{");
                self.block(out, indent + 4, depth + 1, loops);
                if self.below(2) == 0 {
                    let _ = writeln!(out, "{pad}}} else {{");
                    self.block(out, indent + 4, depth + 1, loops);
                }
                let _ = writeln!(out, "{pad}}}");
            }
            12 => {
                self.budget -= 1;
                let i = self.fresh("i");
                let k = 1 + self.below(3);
                let _ = writeln!(
                    out,
                    "{pad}let mut {i}: u64 = 0;\n{pad}while {i} < {k} {{\n{pad}    {i} += 1;"
                );
                self.block(out, indent + 4, depth + 1, loops + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            13 => {
                self.budget -= 1;
                let j = self.fresh("j");
                let k = 1 + self.below(3);
                let _ = writeln!(out, "{pad}for {j} in 0u64..{k} {{\n{pad}    acc += {j};");
                self.block(out, indent + 4, depth + 1, loops + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            14 => {
                self.budget -= 1;
                let i = self.fresh("i");
                let l = self.fresh("'l");
                let k = 1 + self.below(3);
                let _ = writeln!(
                    out,
                    "{pad}let mut {i}: u64 = 0;\n{pad}{l}: loop {{\n{pad}    {i} += 1;\n{pad}    if {i} > {k} {{\n{pad}        break {l};\n{pad}    }}"
                );
                self.labels.push(l);
                self.block(out, indent + 4, depth + 1, loops + 1);
                self.labels.pop();
                let _ = writeln!(out, "{pad}}}");
            }
            16 => {
                self.budget -= 1;
                let _ = writeln!(out, "{pad}match acc % 3 {{\n{pad}    0 => {{");
                self.block(out, indent + 8, depth + 1, loops);
                let _ = writeln!(
                    out,
                    "{pad}    }}\n{pad}    1 => acc += 1,\n{pad}    _ => {{"
                );
                self.block(out, indent + 8, depth + 1, loops);
                let _ = writeln!(out, "{pad}    }}\n{pad}}}");
            }
            17 => {
                self.budget -= 1;
                let b = self.fresh("'b");
                let c = self.cond();
                let _ = writeln!(out, "{pad}{b}: {{");
                // Unlabelled `break`/`continue` may not stand directly in a labelled block.
                let saved = std::mem::take(&mut self.labels);
                self.stmt(out, indent + 4, depth + 1, 0);
                let _ = writeln!(
                    out,
                    "{pad}    if {c} {{\n{pad}        break {b};\n{pad}    }}"
                );
                self.block(out, indent + 4, depth + 1, 0);
                self.labels = saved;
                let _ = writeln!(out, "{pad}}}");
            }
            18 => {
                self.budget -= 1;
                let x = self.fresh("x");
                let y = self.fresh("y");
                let (a, i) = (self.activity(), self.input());
                let (b, j) = (self.activity(), self.input());
                let _ = writeln!(
                    out,
                    "{pad}let {x}: u64 = match acc % 3 {{\n{pad}    0 => ctx.activity({a}, {i}).await?,\n{pad}    1 => {{\n{pad}        let {y}: u64 = ctx.activity({b}, {j}).await?;\n{pad}        {y} + 1\n{pad}    }}\n{pad}    _ => acc / 3,\n{pad}}};\n{pad}acc += {x};"
                );
            }
            19 => {
                self.budget -= 1;
                let list = self.fresh("list");
                let item = self.fresh("item");
                let _ = writeln!(
                    out,
                    "{pad}let mut {list}: Vec<u64> = vec![acc % 5, 3];\n{pad}while let Some({item}) = {list}.pop() {{\n{pad}    acc += {item};"
                );
                self.block(out, indent + 4, depth + 1, loops + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            20 => {
                self.budget -= 1;
                let items = self.fresh("items");
                let it = self.fresh("it");
                let _ = writeln!(
                    out,
                    "{pad}let {items}: Vec<u64> = vec![acc % 7, 2];\n{pad}for {it} in {items} {{\n{pad}    acc += {it};"
                );
                self.block(out, indent + 4, depth + 1, loops + 1);
                let _ = writeln!(out, "{pad}}}");
            }
            21 => {
                let w = self.fresh("w");
                let _ = writeln!(
                    out,
                    "{pad}let Some({w}) = ctx.signal::<Option<u64>>(\"w\").await? else {{\n{pad}    return Ok(acc + 1000);\n{pad}}};\n{pad}acc += {w};"
                );
            }
            _ => {
                self.budget -= 1;
                let x = self.fresh("x");
                let c = self.cond();
                let (a, i) = (self.activity(), self.input());
                let _ = writeln!(
                    out,
                    "{pad}let {x}: u64 = if {c} {{\n{pad}    ctx.activity({a}, {i}).await?\n{pad}}} else {{\n{pad}    acc / 2\n{pad}}};\n{pad}acc += {x};"
                );
            }
        }
    }

    fn body(&mut self) -> String {
        self.vars = 0;
        self.budget = 4;
        let mut out = String::from("    let mut acc: u64 = input;\n");
        self.block(&mut out, 4, 0, 0);
        out.push_str("    Ok(acc)\n");
        out
    }
}

/// How many bodies the checked-in test holds.
pub const BODIES: usize = 200;

/// The text of `tests/generated/difftest_bodies.rs`.
pub fn generate() -> String {
    generate_with(0x5a6a_2024, BODIES)
}

/// `count` bodies from `seed` (other seeds: `gen-difftest --seed N --count N --out F`,
/// to explore beyond what CI runs).
pub fn generate_with(seed: u64, count: usize) -> String {
    let mut g = Gen {
        labels: Vec::new(),
        rng: seed,
        vars: 0,
        budget: 0,
    };
    let mut out = String::from(
        "// GENERATED by `cargo run -p ui-tests --bin gen-difftest` from\n\
         // `ui_tests::difftest::generate`: do not edit (included by `tests/difftest.rs`).\n\n\
         use saga_runtime::prelude::*;\n\
         use ui_tests::difftest::{block_on, checked, compare, other, run_machine, step, Plain};\n\n",
    );
    for i in 0..count {
        let body = g.body();
        let _ = write!(
            out,
            "mod w{i} {{\n    use super::*;\n\n    #[workflow]\n    pub async fn wf(ctx: &mut WorkflowContext, input: u64) -> Result<u64, SagaError> {{\n{b}    }}\n\n    pub async fn plain(ctx: &mut Plain, input: u64) -> Result<u64, SagaError> {{\n{b}    }}\n\n    pub fn check() {{\n        for (input, seed) in [(0u64, 1u64), (5, 2), (42, 3), (97, 4)] {{\n            let mut p = Plain::new(seed);\n            let r = block_on(plain(&mut p, input));\n            compare(\"w{i}\", input, seed, run_machine::<wf>(input, seed), p.outcome(r));\n        }}\n    }}\n}}\n\n",
            b = indent(&body, 4)
        );
    }
    out.push_str("#[test]\nfn lowered_machines_match_plain_async_fns() {\n");
    for i in 0..count {
        let _ = writeln!(out, "    w{i}::check();");
    }
    out.push_str("}\n");
    out
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines().map(|l| format!("{pad}{l}\n")).collect()
}
