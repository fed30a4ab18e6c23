//! The deadlock detector: cycles of executions each waiting on the next as its child.
//!
//! The wait-for graph has an edge from every open execution to each child it waits
//! for. An execution whose chain of pending children leads back to itself can never
//! finish: each waits for a child that waits, through the cycle, for it. The engine's
//! own child starts cannot build such a cycle (a child id that already exists under
//! another parent fails to start), so a cycle means histories written by another
//! writer: an older engine, an import, a hand-edited store. The action cancels one
//! execution of the cycle (the one that started last, as it closed the cycle); its
//! cancellation cancels its children in turn and each compensates its completed steps.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{Action, Detector, Finding, OpenExecutions, Severity};
use crate::domain::SagaId;

/// One finding per cycle among `open`, each naming the execution to cancel.
pub fn detect(open: &OpenExecutions, now: DateTime<Utc>) -> Vec<Finding> {
    // Only open executions wait: an edge to a closed (or unknown) child goes nowhere.
    let graph: BTreeMap<&SagaId, Vec<&SagaId>> = open
        .iter()
        .map(|x| {
            let next = x
                .pending_children
                .iter()
                .filter(|c| open.get(c).is_some())
                .collect();
            (&x.saga_id, next)
        })
        .collect();
    cycles(&graph)
        .into_iter()
        .map(|cycle| {
            let victim = cycle
                .iter()
                .max_by_key(|id| (open.get(id).and_then(|x| x.started_at), *id))
                .map(|id| (*id).clone())
                .unwrap_or_else(|| cycle[0].clone());
            let path: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|id| id.as_str())
                .collect();
            Finding::new(
                Detector::Deadlock,
                Severity::Critical,
                Some(victim.clone()),
                format!(
                    "child workflows wait on each other in a cycle: {}",
                    path.join(" -> ")
                ),
                Action::Cancel { saga_id: victim },
                now,
            )
            .with("cycle_length", cycle.len() as f64)
        })
        .collect()
}

/// Cycles found by depth-first search: at least one in every group of executions that
/// wait on each other (breaking it, the next round finds any other), each reported
/// once, starting at its smallest id.
fn cycles<'a>(graph: &BTreeMap<&'a SagaId, Vec<&'a SagaId>>) -> Vec<Vec<&'a SagaId>> {
    // Depth-first search with three colours; a back edge to a node on the current path
    // closes a cycle. Each node is finished once, so this is linear in the graph.
    let mut done: BTreeSet<&SagaId> = BTreeSet::new();
    let mut found = Vec::new();
    for &root in graph.keys() {
        if done.contains(root) {
            continue;
        }
        let mut path: Vec<&SagaId> = vec![root];
        let mut next_edge: Vec<usize> = vec![0];
        while let Some(&node) = path.last() {
            let i = next_edge.last().copied().unwrap_or_default();
            let edges = graph.get(node).map_or(&[][..], Vec::as_slice);
            if let Some(&child) = edges.get(i) {
                if let Some(e) = next_edge.last_mut() {
                    *e += 1;
                }
                if let Some(at) = path.iter().position(|&p| p == child) {
                    let mut cycle = path[at..].to_vec();
                    let start = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, id)| **id)
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(start);
                    found.push(cycle);
                } else if !done.contains(child) {
                    path.push(child);
                    next_edge.push(0);
                }
            } else {
                done.insert(node);
                path.pop();
                next_edge.pop();
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<SagaId> {
        names.iter().map(SagaId::new).collect()
    }

    #[test]
    fn finds_each_cycle_once() {
        let n = ids(&["a", "b", "c", "d", "e"]);
        let mut g: BTreeMap<&SagaId, Vec<&SagaId>> = BTreeMap::new();
        // a -> b -> c -> a, d -> d, e -> a (waits on the cycle, not part of it).
        g.insert(&n[0], vec![&n[1]]);
        g.insert(&n[1], vec![&n[2]]);
        g.insert(&n[2], vec![&n[0]]);
        g.insert(&n[3], vec![&n[3]]);
        g.insert(&n[4], vec![&n[0]]);
        let found = cycles(&g);
        assert_eq!(found, vec![vec![&n[0], &n[1], &n[2]], vec![&n[3]]]);
    }

    #[test]
    fn a_tree_has_no_cycle() {
        let n = ids(&["p", "c1", "c2"]);
        let mut g: BTreeMap<&SagaId, Vec<&SagaId>> = BTreeMap::new();
        g.insert(&n[0], vec![&n[1], &n[2]]);
        g.insert(&n[1], vec![]);
        g.insert(&n[2], vec![]);
        assert!(cycles(&g).is_empty());
    }
}
