use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::{Error, ErrorKind, Result};
use crate::port::{DeadLetter, Delivery, DeliveryTag, Task, TaskQueue};

/// Delivery settings of the in-memory queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// A fetched task not acked within this is delivered again.
    pub ack_wait: Duration,
    /// After this many deliveries a task goes to the dead-letter list.
    pub max_deliver: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            ack_wait: Duration::from_secs(30),
            max_deliver: 100,
        }
    }
}

struct Pending {
    task: Task,
    deliveries: u32,
}

#[derive(Default)]
struct State {
    ready: HashMap<String, VecDeque<Pending>>,
    /// Nak'ed tasks: (not before, tie-breaker) -> task.
    delayed: BTreeMap<(Instant, u64), Pending>,
    /// Delivered, not yet acked: delivery seq -> (deadline, task).
    inflight: HashMap<u64, (Instant, Pending)>,
    /// The same deliveries ordered by ack deadline, so expiry is not a scan.
    deadlines: BTreeMap<(Instant, u64), ()>,
    dead: Vec<DeadLetter>,
    next_seq: u64,
    /// One wake-up per queue name: a publish wakes one fetcher of that queue only.
    wakers: HashMap<String, Arc<Notify>>,
}

impl State {
    /// Moves due delayed tasks and expired deliveries back to `ready`; returns the
    /// earliest instant at which something else will become ready.
    fn promote(&mut self, now: Instant, max_deliver: u32) -> Option<Instant> {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let p = entry.remove();
            self.ready
                .entry(p.task.queue.clone())
                .or_default()
                .push_back(p);
        }
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, seq) = *entry.key();
            entry.remove();
            if let Some((_, p)) = self.inflight.remove(&seq) {
                self.requeue(p, max_deliver, "ack wait expired");
            }
        }
        let next_delayed = self.delayed.keys().next().map(|k| k.0);
        let next_expiry = self.deadlines.keys().next().map(|k| k.0);
        match (next_delayed, next_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn waker(&mut self, queue: &str) -> Arc<Notify> {
        match self.wakers.get(queue) {
            Some(n) => n.clone(),
            None => self.wakers.entry(queue.to_owned()).or_default().clone(),
        }
    }

    /// Takes delivery `seq` out of flight.
    fn land(&mut self, seq: u64) -> Option<Pending> {
        let (deadline, p) = self.inflight.remove(&seq)?;
        self.deadlines.remove(&(deadline, seq));
        Some(p)
    }

    fn requeue(&mut self, p: Pending, max_deliver: u32, why: &str) {
        if p.deliveries >= max_deliver {
            self.dead.push(DeadLetter {
                reason: format!("{why}; max_deliver ({max_deliver}) reached"),
                delivery_count: p.deliveries,
                task: p.task,
            });
        } else {
            self.ready
                .entry(p.task.queue.clone())
                .or_default()
                .push_back(p);
        }
    }
}

/// A [`TaskQueue`] in memory with ack-wait redelivery, delayed nak and a dead-letter
/// list. Clones share the same queue.
#[derive(Clone, Default)]
pub struct InMemoryTaskQueue {
    state: Arc<Mutex<State>>,
    config: QueueConfig,
}

impl InMemoryTaskQueue {
    /// A queue with the default [`QueueConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue with `config`.
    pub fn with_config(config: QueueConfig) -> Self {
        InMemoryTaskQueue {
            config,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tasks waiting or in flight (not dead).
    pub fn len(&self) -> usize {
        let s = self.lock();
        s.ready.values().map(VecDeque::len).sum::<usize>() + s.delayed.len() + s.inflight.len()
    }

    /// True if nothing is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_inflight(&self, tag: &DeliveryTag) -> Result<Pending> {
        self.lock().land(tag.seq).ok_or_else(|| {
            Error::new(ErrorKind::TaskQueue, "unknown or expired delivery")
                .with("delivery", tag.seq)
        })
    }
}

#[async_trait]
impl TaskQueue for InMemoryTaskQueue {
    async fn publish(&self, task: Task) -> Result<()> {
        let waker = {
            let mut s = self.lock();
            let waker = s.waker(&task.queue);
            s.ready
                .entry(task.queue.clone())
                .or_default()
                .push_back(Pending {
                    task,
                    deliveries: 0,
                });
            waker
        };
        waker.notify_one();
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<Option<u64>> {
        let s = self.lock();
        let ready = s.ready.get(queue).map_or(0, VecDeque::len);
        let delayed = s.delayed.values().filter(|p| p.task.queue == queue).count();
        Ok(Some((ready + delayed) as u64))
    }

    async fn fetch(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let give_up = Instant::now() + wait;
        let waker = self.lock().waker(queue);
        loop {
            // Registered before looking at the state, so a publish in between is not
            // missed: `notify_one` either wakes this waiter or leaves it a permit.
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_change = {
                let now = Instant::now();
                let mut s = self.lock();
                let next = s.promote(now, self.config.max_deliver);
                let mut out = Vec::new();
                while out.len() < max {
                    let Some(mut p) = s.ready.get_mut(queue).and_then(VecDeque::pop_front) else {
                        break;
                    };
                    p.deliveries += 1;
                    s.next_seq += 1;
                    let seq = s.next_seq;
                    out.push(Delivery {
                        task: p.task.clone(),
                        tag: DeliveryTag { seq, handle: None },
                        delivery_count: p.deliveries,
                    });
                    let deadline = now + self.config.ack_wait;
                    s.inflight.insert(seq, (deadline, p));
                    s.deadlines.insert((deadline, seq), ());
                }
                if !out.is_empty() {
                    if s.ready.get(queue).is_some_and(|q| !q.is_empty()) {
                        // Pass the wake-up on: another fetcher takes the rest.
                        waker.notify_one();
                    }
                    return Ok(out);
                }
                next
            };
            let now = Instant::now();
            if now >= give_up {
                return Ok(Vec::new());
            }
            let until = next_change.map_or(give_up, |t| t.min(give_up));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    async fn ack(&self, tag: &DeliveryTag) -> Result<()> {
        self.take_inflight(tag).map(|_| ())
    }

    async fn nak(&self, tag: &DeliveryTag, delay: Duration) -> Result<()> {
        let p = self.take_inflight(tag)?;
        let mut s = self.lock();
        let waker = s.waker(&p.task.queue);
        if delay.is_zero() || p.deliveries >= self.config.max_deliver {
            s.requeue(p, self.config.max_deliver, "nak");
        } else {
            s.next_seq += 1;
            let key = (Instant::now() + delay, s.next_seq);
            s.delayed.insert(key, p);
        }
        drop(s);
        // Wakes a fetcher to recompute its wait (for a delayed task, its deadline).
        waker.notify_one();
        Ok(())
    }

    async fn progress(&self, tag: &DeliveryTag) -> Result<()> {
        let now = Instant::now();
        let mut s = self.lock();
        // A delivery whose ack wait already ran out is back on the queue (or dead), not
        // revived: progress comes too late for it, as on a broker.
        s.promote(now, self.config.max_deliver);
        let deadline = now + self.config.ack_wait;
        let (old, _) = s.inflight.get_mut(&tag.seq).ok_or_else(|| {
            Error::new(ErrorKind::TaskQueue, "unknown or expired delivery")
                .with("delivery", tag.seq)
        })?;
        let old = std::mem::replace(old, deadline);
        s.deadlines.remove(&(old, tag.seq));
        s.deadlines.insert((deadline, tag.seq), ());
        Ok(())
    }

    async fn terminate(&self, tag: &DeliveryTag, reason: &str) -> Result<()> {
        let p = self.take_inflight(tag)?;
        self.lock().dead.push(DeadLetter {
            task: p.task,
            reason: reason.to_owned(),
            delivery_count: p.deliveries,
        });
        Ok(())
    }

    async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>> {
        let mut s = self.lock();
        // Deliveries whose ack wait ran out on their last allowed attempt are dead now,
        // whether or not anyone fetched the queue since.
        s.promote(Instant::now(), self.config.max_deliver);
        Ok(s.dead
            .iter()
            .filter(|d| d.task.queue == queue)
            .cloned()
            .collect())
    }

    fn is_in_process(&self) -> bool {
        true
    }
}
