//! Identifiers: fresh random ids (instances, runtime owners), the UUID
//! format `ctx.uuid()` shares with them, and what makes a name acceptable.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest instance id or event name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// 128 fresh random bits.
pub(crate) fn random_u128() -> (u64, u64) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut words = [0u64; 2];
    for w in &mut words {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    (words[0], words[1])
}

/// A fresh random id (UUID-shaped): for instances and runtime owners.
pub(crate) fn new_id() -> String {
    let (a, b) = random_u128();
    uuid_v4(a, b)
}

/// Formats 128 random bits as a version-4 UUID (RFC 4122 variant).
pub(crate) fn uuid_v4(a: u64, b: u64) -> String {
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Why a name was refused; the client reports it as
/// [`Error::InvalidName`](crate::Error::InvalidName).
#[derive(Debug)]
pub(crate) struct NameError {
    pub(crate) what: &'static str,
    pub(crate) reason: String,
}

/// Checks an instance id, event name or key: not empty, at most
/// [`MAX_NAME_LEN`] bytes, and no control characters (NUL, newlines,
/// bidirectional overrides), which would make logs and tools lie.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), NameError> {
    let refuse = |reason: String| Err(NameError { what, reason });
    if value.is_empty() {
        return refuse("it is empty".to_owned());
    }
    if value.len() > MAX_NAME_LEN {
        return refuse(format!(
            "it is {} bytes long, more than {MAX_NAME_LEN}",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|c| is_unsafe(*c)) {
        return refuse(format!(
            "it contains the control character {}",
            c.escape_unicode()
        ));
    }
    if what.ends_with("instance id") && value.starts_with(crate::history::ENTITY_PREFIX) {
        return refuse(
            "ids that begin with `@` are entities': reach an entity with `client.entity::<T>(key)`"
                .to_owned(),
        );
    }
    Ok(())
}

/// Control characters, and the invisible ones that reorder or hide text.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Shows a name with control characters escaped: for logs and error
/// messages, where a stored id must never print raw control characters.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if is_unsafe(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_escaped() {
        for bad in ["a\0b", "line\nbreak", "bidi\u{202e}txt", ""] {
            assert!(check_name("instance id", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("instance id", "order-7/ü").is_ok());
        assert_eq!(Escaped("a\nb").to_string(), "a\\u{a}b");
    }

    #[test]
    fn uuids_are_version_4() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_id(), id);
    }
}
