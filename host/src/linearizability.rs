//! A linearizability checker for histories of reads and writes on keys
//! (registers), for fault tests: it decides whether the outcomes clients
//! saw could come from one copy of the data, each operation taking effect
//! at one instant between its call and its answer.
//!
//! Keys are independent (linearizability is local), so each key's history
//! is checked alone, by the Wing–Gong search with memoization of (the set of
//! operations taken, the value), as in Lowe's and Porcupine's checkers. A
//! write whose answer never came (a timeout, a dropped connection, a crash)
//! may take effect at any instant after its call, or never; a read without
//! an answer tells nothing and is left out by the caller.

use std::collections::{BTreeMap, HashSet};

/// What a client did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Wrote this value (values are unique per key in a test).
    Write(u64),
    /// Read this value (`None`: the key was absent).
    Read(Option<u64>),
}

/// One operation: when it was called and when its answer came (`None`: it
/// never did, for a write of unknown fate), both on one clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The key.
    pub key: String,
    /// What it did.
    pub op: Op,
    /// When it was called.
    pub call: u64,
    /// When its answer came.
    pub answer: Option<u64>,
}

/// Why a history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose history is not.
    pub key: String,
    /// Its operations, in call order.
    pub events: Vec<Event>,
}

/// The most operations on one key the search takes (its state is a 128-bit
/// set of them).
pub const MAX_OPS_PER_KEY: usize = 128;

/// Checks `history`; keys start absent.
///
/// # Errors
/// The first key whose history no order explains.
///
/// # Panics
/// If a key has more than [`MAX_OPS_PER_KEY`] operations.
pub fn check(history: &[Event]) -> Result<CheckStats, Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    let mut stats = CheckStats::default();
    for (key, mut events) in by_key {
        assert!(
            events.len() <= MAX_OPS_PER_KEY,
            "key {key} has {} operations: at most {MAX_OPS_PER_KEY} are checked",
            events.len()
        );
        events.sort_by_key(|e| e.call);
        stats.keys += 1;
        stats.operations += events.len() as u64;
        if !linearizable(&events, &mut stats) {
            return Err(Violation {
                key: key.to_string(),
                events: events.into_iter().cloned().collect(),
            });
        }
    }
    Ok(stats)
}

/// What a check looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Keys checked.
    pub keys: u64,
    /// Operations checked.
    pub operations: u64,
    /// Search states visited.
    pub states: u64,
}

fn linearizable(events: &[&Event], stats: &mut CheckStats) -> bool {
    let n = events.len();
    let answer = |i: usize| events[i].answer.unwrap_or(u64::MAX);
    // Operations that must be taken: all but writes without an answer.
    let required: u128 = (0..n)
        .filter(|&i| events[i].answer.is_some())
        .fold(0, |m, i| m | 1 << i);
    let mut seen: HashSet<(u128, Option<u64>)> = HashSet::new();
    // Depth-first: (taken, value).
    let mut stack = vec![(0u128, None::<u64>)];
    while let Some((taken, value)) = stack.pop() {
        if taken & required == required {
            return true;
        }
        if !seen.insert((taken, value)) {
            continue;
        }
        stats.states += 1;
        // The earliest answer among what is left: only an operation called
        // before it can be next.
        let first_answer = (0..n)
            .filter(|&i| taken & (1 << i) == 0)
            .map(answer)
            .min()
            .unwrap_or(u64::MAX);
        for (i, e) in events.iter().enumerate() {
            if taken & (1 << i) != 0 || e.call > first_answer {
                continue;
            }
            match e.op {
                Op::Write(v) => stack.push((taken | 1 << i, Some(v))),
                Op::Read(r) if r == value => stack.push((taken | 1 << i, value)),
                Op::Read(_) => {}
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: u64, call: u64, answer: Option<u64>) -> Event {
        Event {
            key: "k".into(),
            op: Op::Write(v),
            call,
            answer,
        }
    }

    fn r(v: Option<u64>, call: u64, answer: u64) -> Event {
        Event {
            key: "k".into(),
            op: Op::Read(v),
            call,
            answer: Some(answer),
        }
    }

    #[test]
    fn histories_that_one_copy_explains_pass() {
        // In order.
        check(&[
            w(1, 0, Some(1)),
            r(Some(1), 2, 3),
            w(2, 4, Some(5)),
            r(Some(2), 6, 7),
        ])
        .unwrap();
        // A read overlapping a write sees the old or the new value.
        check(&[w(1, 0, Some(1)), w(2, 2, Some(10)), r(Some(1), 3, 4)]).unwrap();
        check(&[w(1, 0, Some(1)), w(2, 2, Some(10)), r(Some(2), 3, 4)]).unwrap();
        // Absent before the first write.
        check(&[r(None, 0, 1), w(1, 2, Some(3))]).unwrap();
        // A write of unknown fate: seen later, or never.
        check(&[w(1, 0, Some(1)), w(2, 2, None), r(Some(2), 50, 51)]).unwrap();
        check(&[w(1, 0, Some(1)), w(2, 2, None), r(Some(1), 50, 51)]).unwrap();
        // Keys are independent.
        let mut other = w(9, 0, Some(1));
        other.key = "j".into();
        check(&[w(1, 0, Some(1)), other, r(Some(1), 2, 3)]).unwrap();
    }

    #[test]
    fn histories_no_order_explains_fail() {
        let bad: [(&str, Vec<Event>); 5] = [
            (
                "a stale read after a write was answered",
                vec![w(1, 0, Some(1)), w(2, 2, Some(3)), r(Some(1), 4, 5)],
            ),
            (
                "an acknowledged write lost",
                vec![w(1, 0, Some(1)), r(None, 2, 3)],
            ),
            (
                "a value nobody wrote",
                vec![w(1, 0, Some(1)), r(Some(7), 2, 3)],
            ),
            (
                "a write of unknown fate seen, then unseen",
                vec![
                    w(1, 0, Some(1)),
                    w(2, 2, None),
                    r(Some(2), 10, 11),
                    r(Some(1), 12, 13),
                ],
            ),
            (
                "two reads disagreeing on the order of two writes",
                vec![
                    w(1, 0, Some(10)),
                    w(2, 0, Some(10)),
                    r(Some(1), 11, 12),
                    r(Some(2), 13, 14),
                    r(Some(1), 15, 16),
                ],
            ),
        ];
        for (what, history) in bad {
            let v = check(&history).expect_err(what);
            assert_eq!(v.key, "k", "{what}");
        }
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 4 clients, 30 rounds of overlapping writes and reads of the last
        // value: many orders to try, each pruned.
        let mut h = Vec::new();
        let mut t = 0;
        for round in 0..30u64 {
            for c in 0..3u64 {
                h.push(w(round * 10 + c + 1, t, Some(t + 5)));
            }
            h.push(r(Some(round * 10 + 3), t + 6, t + 7));
            t += 10;
        }
        let stats = check(&h).unwrap();
        assert_eq!(stats.operations, 120);
        assert!(stats.states < 100_000, "{stats:?}");
    }
}
