//! The event history: the append-only record of everything an instance did,
//! from which replay rebuilds its state.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Failure};

/// A JSON-encoded value: an input, an output, an event's data.
///
/// Kept as raw JSON text so it is encoded once when produced and decoded once
/// into the type its reader asks for.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// Encodes `value`, refusing more than `limit` bytes of JSON.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        value: &T,
        what: &str,
        limit: usize,
    ) -> Result<Self, Error> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|e| Error::payload(format!("encoding {what}"), e))?;
        let size = raw.get().len();
        if size > limit {
            return Err(Error::PayloadTooLarge {
                what: what.to_owned(),
                size,
                limit,
            });
        }
        Ok(Self(raw))
    }

    /// Decodes into `T`.
    pub(crate) fn decode<T: DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        serde_json::from_str(self.0.get())
            .map_err(|e| Error::payload(format!("decoding {what}"), e))
    }

    /// Parses stored JSON text, checking that it is JSON.
    pub(crate) fn from_json(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// How an activity call ended without a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityFailure {
    /// It returned `Err`; the encoded error.
    Error(Payload),
    /// It panicked; the message.
    Panic(String),
    /// It could not be run; the reason.
    Aborted(String),
    /// Its attempts were lost too often (each crashed or stalled its worker).
    Poisoned(String),
}

/// One thing that happened to an instance.
///
/// Events that arrive from outside (`Started`, completions, `TimerFired`,
/// `EventRaised`, `Terminated`) travel as messages first and are appended in
/// the turn that consumes them; the others are what the orchestrator did in
/// that turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// The instance was started with this orchestrator and input.
    Started {
        /// The orchestrator's stored name.
        name: String,
        /// The encoded input.
        input: Payload,
    },
    /// The orchestrator called an activity.
    ActivityScheduled {
        /// The call's sequence number.
        seq: u64,
        /// The activity's stored name.
        name: String,
        /// The encoded input.
        input: Payload,
        /// Where in the source the call was made.
        site: String,
    },
    /// An activity call returned a value.
    ActivityCompleted {
        /// The call's sequence number.
        seq: u64,
        /// The encoded value.
        output: Payload,
    },
    /// An activity call failed for good.
    ActivityFailed {
        /// The call's sequence number.
        seq: u64,
        /// How.
        failure: ActivityFailure,
    },
    /// The orchestrator started a durable timer.
    TimerCreated {
        /// The timer's sequence number.
        seq: u64,
        /// When it fires, in microseconds since the Unix epoch.
        fire_at: i64,
        /// Where in the source the timer was made.
        site: String,
    },
    /// The orchestrator recorded a value computed outside replay
    /// (`Context::side_effect`).
    SideEffect {
        /// The side effect's sequence number.
        seq: u64,
        /// The encoded value.
        value: Payload,
        /// Where in the source it was made.
        site: String,
    },
    /// A durable timer fired.
    TimerFired {
        /// The timer's sequence number.
        seq: u64,
    },
    /// An external event reached the instance.
    EventRaised {
        /// The event's name.
        name: String,
        /// Its encoded data.
        data: Payload,
    },
    /// The orchestrator returned.
    Completed {
        /// The encoded return value.
        output: Payload,
        /// Whether the value is a failure (an `Err`).
        failed: bool,
    },
    /// The instance failed outside its code's return value.
    Failed {
        /// Why.
        failure: Failure,
    },
    /// The instance was terminated from outside.
    Terminated {
        /// The reason given.
        reason: String,
    },
}

impl Event {
    /// Whether the instance is over once this event is recorded.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { .. } | Self::Terminated { .. }
        )
    }

    /// Whether this event is something the orchestrator did (as opposed to
    /// something delivered to it).
    pub(crate) fn is_decision(&self) -> bool {
        matches!(
            self,
            Self::ActivityScheduled { .. }
                | Self::TimerCreated { .. }
                | Self::SideEffect { .. }
                | Self::Completed { .. }
                | Self::Failed { .. }
        )
    }
}

/// An event as stored: its place in the history and the turn it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// Position in the instance's history, from 0, without gaps.
    pub index: u64,
    /// The turn that recorded it, from 0.
    pub turn: u64,
    /// The turn's deterministic time, microseconds since the Unix epoch.
    pub at: i64,
    /// What happened.
    pub event: Event,
}

/// Microseconds since the Unix epoch, the store's unit of time.
pub(crate) fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`micros`].
pub(crate) fn system_time(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// Now, in store units.
pub(crate) fn now_micros() -> i64 {
    micros(SystemTime::now())
}

/// A duration in store units, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
