//! Support for the code `saga-macros` generates. Not a public API: nothing here is
//! covered by semver, and user code should not name it.

pub use chrono;
pub use serde;

use crate::activity::{Activity, ActivityError};
use crate::workflow::{Transition, Workflow};

/// `C` can compensate a step whose output is `O`: its input type is `O`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot compensate a step whose output is `{O}`",
    label = "the input type of this compensation is not `{O}`",
    note = "a compensation receives the output of the step it undoes: its input type must equal that output type"
)]
pub trait Compensates<O> {}

impl<A: Activity> Compensates<A::Input> for A {}

/// Compiles only if `C` can compensate a step with output `O` (the `compensate = f`
/// check of `#[activity]`).
pub fn assert_compensates<C: Compensates<O>, O>() {}

/// The value a workflow body returns, as the transition that ends the machine.
pub fn finish<W: Workflow>(result: Result<W::Output, W::Error>) -> Transition<W> {
    match result {
        Ok(out) => Transition::Complete(out),
        Err(err) => Transition::Fail(err),
    }
}

/// The stored state of a `for` loop over a `Vec<T>` that has a checkpoint in its body
/// (`vec::IntoIter` is not serializable).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor<T> {
    /// The items iterated over.
    pub items: Vec<T>,
    /// The index of the next item.
    pub next: usize,
}

impl<T: Clone> Cursor<T> {
    /// A cursor at the first item.
    pub fn new(items: impl IntoIterator<Item = T>) -> Self {
        Cursor {
            items: items.into_iter().collect(),
            next: 0,
        }
    }
}

impl<T: Clone> Iterator for Cursor<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let item = self.items.get(self.next).cloned();
        self.next += 1;
        item
    }
}

/// The error an activity's own error type converts into.
pub fn activity_error<E: Into<ActivityError>>(e: E) -> ActivityError {
    e.into()
}

/// The end of a sleep. Any other wake is an engine bug.
pub fn timer(wake: crate::workflow::Wake) {
    if let Err(e) = wake.timer() {
        panic!("this is a bug in the engine: {e}");
    }
}

/// The stored state of a `for` over `a..=b` with a checkpoint in its body. serde
/// encodes a `RangeInclusive` without its "exhausted" flag, so after the last item a
/// decoded range would yield it again; `done` keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InclusiveCursor<T> {
    /// The remaining range.
    pub range: std::ops::RangeInclusive<T>,
    /// True once the last item was yielded.
    pub done: bool,
}

impl<T> InclusiveCursor<T> {
    /// A cursor at the start of `range`.
    pub fn new(range: std::ops::RangeInclusive<T>) -> Self {
        InclusiveCursor { range, done: false }
    }
}

impl<T> Iterator for InclusiveCursor<T>
where
    std::ops::RangeInclusive<T>: Iterator<Item = T>,
    T: PartialOrd,
{
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.done {
            return None;
        }
        let item = self.range.next();
        if item.is_none() || self.range.is_empty() {
            self.done = true;
        }
        item
    }
}
