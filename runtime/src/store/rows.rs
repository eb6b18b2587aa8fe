//! What every SQL store shares about its rows: the checksums that catch a
//! damaged payload column, the JSON encoding of events, and conversions of
//! counts and times. One definition, so a row is checked the same way
//! whichever backend wrote it.

use std::time::Duration;

use crate::history::{duration_micros, Event, RuntimeStatus};
use crate::store::StoreError;

/// A damaged row: `what` it was and what is wrong with it.
pub(crate) fn corrupt(what: impl Into<String>, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// Encodes an event or setting for a text column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    // Our own event types always encode; an error here is a bug, reported as such.
    serde_json::to_string(value).map_err(|e| corrupt("an event being written", e))
}

/// Decodes a stored event; `what` names the row if it does not decode.
pub(crate) fn decode_event(text: &str, what: impl FnOnce() -> String) -> Result<Event, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what(), e))
}

/// A word-at-a-time hash over the parts, each marked present or absent (and
/// by its length): a row whose
/// payload columns were damaged no longer matches its stored sum, so it is
/// reported as corrupt instead of read as a wrong value.
pub(crate) fn checksum(parts: &[Option<&str>]) -> i64 {
    checksum_with(&[], parts)
}

/// [`checksum`] over some integer columns, then the text parts.
pub(crate) fn checksum_with(numbers: &[i64], parts: &[Option<&str>]) -> i64 {
    // Eight bytes a step: each step (xor, odd multiply, rotate) is a
    // bijection of the state, so any change confined to one word always
    // changes the sum; more scattered damage goes unseen with odds of 2^-64.
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |w: u64| h = (h ^ w).wrapping_mul(K).rotate_left(29);
    for n in numbers {
        eat(u64::from_ne_bytes(n.to_ne_bytes()));
    }
    for part in parts {
        match part {
            None => eat(u64::MAX),
            Some(text) => {
                eat(text.len() as u64);
                let mut words = text.as_bytes().chunks_exact(8);
                for w in words.by_ref() {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(w);
                    eat(u64::from_le_bytes(b));
                }
                let mut b = [0u8; 8];
                b[..words.remainder().len()].copy_from_slice(words.remainder());
                eat(u64::from_le_bytes(b));
            }
        }
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// Checks a row's stored checksum against its integer columns, then its
/// text parts.
pub(crate) fn verify_with(
    sum: i64,
    numbers: &[i64],
    parts: &[Option<&str>],
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    if checksum_with(numbers, parts) == sum {
        Ok(())
    } else {
        Err(corrupt(what(), "the row does not match its checksum"))
    }
}

/// A count or sequence number as an SQL integer.
pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Parses a stored status; instance `id`'s row is damaged if it does not.
pub(crate) fn status_of(text: &str, id: &str) -> Result<RuntimeStatus, StoreError> {
    text.parse()
        .map_err(|e| corrupt(format!("the status of instance `{id}`"), e))
}

/// The checksum of an instance row's history length and text columns
/// (the counters and locks are not covered: a damaged one can only delay
/// or repeat work, which the history's own checks catch).
pub(crate) fn instance_sum(
    name: &str,
    status: &str,
    output: Option<&str>,
    failure: Option<&str>,
    reason: Option<&str>,
    history_len: i64,
) -> i64 {
    checksum_with(
        &[history_len],
        &[Some(name), Some(status), output, failure, reason],
    )
}

/// The checksum of a message row.
pub(crate) fn message_sum(instance: &str, seq: i64, visible_at: i64, event: &str) -> i64 {
    checksum_with(&[seq, visible_at], &[Some(instance), Some(event)])
}

/// The checksum of a task row.
pub(crate) fn task_sum(instance: &str, seq: i64, name: &str, input: &str, retry: &str) -> i64 {
    checksum(&[
        Some(instance),
        Some(&seq.to_string()),
        Some(name),
        Some(input),
        Some(retry),
    ])
}

/// An SQL integer as a count or sequence number; negative is damage.
pub(crate) fn seq_of(n: i64, what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|e| corrupt(what(), e))
}

/// `now` plus `d`, in microseconds, saturating.
pub(crate) fn micros_from_now(now: i64, d: Duration) -> i64 {
    now.saturating_add(duration_micros(d))
}

/// How long from `now` until `at` (zero if past).
pub(crate) fn until(now: i64, at: Option<i64>) -> Option<Duration> {
    at.map(|t| Duration::from_micros(t.saturating_sub(now).max(0).unsigned_abs()))
}

/// One task row's state, its numbers checked.
pub(crate) fn task_state(
    instance: &str,
    seq: i64,
    attempts: i64,
    failures: i64,
    running: bool,
    visible_at: i64,
    last_error: Option<&str>,
) -> Result<crate::store::TaskState, StoreError> {
    let what = || format!("a task of instance `{}`", crate::ids::Escaped(instance));
    let small = |n: i64| u32::try_from(n).map_err(|e| corrupt(what(), e));
    Ok(crate::store::TaskState {
        seq: seq_of(seq, what)?,
        attempts: small(attempts)?,
        failures: small(failures)?,
        running,
        visible_at,
        last_error: last_error
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(what(), e))?,
    })
}

/// One history row, checked: its checksum, that it is the `index` the
/// read expects next (no gap), and that its turn does not go back from
/// `prev_turn`.
pub(crate) fn history_record(
    instance: &str,
    (index, prev_turn): (u64, u64),
    (idx, turn, at, sum): (i64, i64, i64, i64),
    text: &str,
) -> Result<crate::history::HistoryRecord, StoreError> {
    let what = || {
        format!(
            "history event {idx} of instance `{}`",
            crate::ids::Escaped(instance)
        )
    };
    verify_with(sum, &[idx, turn, at], &[Some(instance), Some(text)], what)?;
    if seq_of(idx, what)? != index {
        return Err(corrupt(what(), format!("expected index {index}")));
    }
    let turn = seq_of(turn, what)?;
    if turn < prev_turn {
        return Err(corrupt(
            what(),
            format!("turn {turn} after turn {prev_turn}"),
        ));
    }
    Ok(crate::history::HistoryRecord {
        index,
        turn,
        at,
        event: decode_event(text, what)?,
    })
}
