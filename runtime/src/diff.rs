//! Two instances of one orchestrator side by side: their decisions
//! aligned by sequence number, to see where they took different paths.

use crate::history::{Event, HistoryRecord};

/// What an instance decided at one sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// The event's kind: `ActivityScheduled`, `TimerCreated`, ..
    pub kind: &'static str,
    /// What it named: the activity, the child orchestrator, the entity
    /// operation, the patch (empty for a timer or a side effect).
    pub name: String,
    /// Where in the source it was decided.
    pub site: String,
}

/// One sequence number of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Row {
    /// The sequence number.
    pub seq: u64,
    /// The first instance's step there, if it took one.
    pub a: Option<Step>,
    /// The second instance's.
    pub b: Option<Step>,
}

impl Row {
    /// Whether both took the same step (kind, name and call site).
    pub fn same(&self) -> bool {
        self.a.is_some() && self.a == self.b
    }
}

/// The decision a history event records, by sequence number.
fn step(event: &Event) -> Option<(u64, Step)> {
    let (seq, kind, name, site) = match event {
        Event::ActivityScheduled {
            seq, name, site, ..
        } => (*seq, "ActivityScheduled", name.clone(), site),
        Event::TimerCreated { seq, site, .. } => (*seq, "TimerCreated", String::new(), site),
        Event::ChildScheduled {
            seq, name, site, ..
        } => (*seq, "ChildScheduled", name.clone(), site),
        Event::SideEffect { seq, site, .. } => (*seq, "SideEffect", String::new(), site),
        Event::EntityCalled {
            seq,
            entity,
            op,
            site,
            ..
        } => (*seq, "EntityCalled", format!("{entity}.{op}"), site),
        Event::EntitySignaled {
            seq,
            entity,
            op,
            site,
            ..
        } => (*seq, "EntitySignaled", format!("{entity}.{op}"), site),
        Event::LockRequested {
            seq,
            entities,
            site,
        } => (*seq, "LockRequested", entities.join(","), site),
        _ => return None,
    };
    Some((
        seq,
        Step {
            kind,
            name,
            site: site.clone(),
        },
    ))
}

/// The decisions of two histories aligned by sequence number, in order.
/// The first row that is not [`Row::same`] is where they parted.
///
/// ```
/// # use durable::history::HistoryRecord;
/// let (a, b): (Vec<HistoryRecord>, Vec<HistoryRecord>) = (Vec::new(), Vec::new());
/// let parted = durable::diff::compare(&a, &b).iter().find(|r| !r.same()).map(|r| r.seq);
/// assert_eq!(parted, None);
/// ```
pub fn compare(a: &[HistoryRecord], b: &[HistoryRecord]) -> Vec<Row> {
    let mut rows: std::collections::BTreeMap<u64, Row> = std::collections::BTreeMap::new();
    for (side, history) in [(0, a), (1, b)] {
        for (seq, step) in history.iter().filter_map(|r| step(&r.event)) {
            let row = rows.entry(seq).or_insert(Row {
                seq,
                a: None,
                b: None,
            });
            if side == 0 {
                row.a = Some(step);
            } else {
                row.b = Some(step);
            }
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Payload;

    fn call(seq: u64, name: &str, line: u32) -> HistoryRecord {
        HistoryRecord {
            index: seq + 1,
            turn: seq,
            at: 0,
            event: Event::ActivityScheduled {
                seq,
                name: name.to_owned(),
                input: serde_json::from_str::<Payload>("1").expect("JSON"),
                site: format!("src/flow.rs:{line}:9"),
            },
        }
    }

    #[test]
    fn rows_align_by_seq_and_show_where_they_parted() {
        let a = [call(0, "reserve", 10), call(1, "charge", 11)];
        let b = [
            call(0, "reserve", 10),
            call(1, "refund", 14),
            call(2, "notify", 15),
        ];
        let rows = compare(&a, &b);
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(rows[0].same());
        assert!(!rows[1].same());
        assert_eq!(rows[1].b.as_ref().map(|s| s.name.as_str()), Some("refund"));
        assert!(rows[2].a.is_none() && !rows[2].same());
    }
}
