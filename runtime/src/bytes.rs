//! Bytes as a payload: JSON spells a `Vec<u8>` as an array of numbers (up to
//! 4 bytes of JSON per byte), so binary inputs and outputs hit the payload
//! limit at a quarter of their size. [`Bytes`] is spelled as one base64
//! string instead: 4 bytes of JSON per 3 bytes of data.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Binary data in a payload, stored as a base64 string (standard alphabet,
/// padded): 3 MB of bytes is 4 MB of JSON, where a `Vec<u8>` would be up to
/// 12 MB.
///
/// ```
/// use durable::Bytes;
///
/// let b = Bytes::from(vec![0u8, 1, 2, 255]);
/// assert_eq!(serde_json::to_string(&b).unwrap(), r#""AAEC/w==""#);
/// let back: Bytes = serde_json::from_str(r#""AAEC/w==""#).unwrap();
/// assert_eq!(back, b);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes, taken out.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Self(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sextet(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Why a string is not padded standard base64.
fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "base64 of length {} (not a multiple of 4)",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let last = bytes.len() / 4;
    for (q, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != last) {
            return Err(format!("misplaced `=` at {}", q * 4));
        }
        let mut n = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let v = sextet(c).ok_or_else(|| {
                format!(
                    "`{}` at {} is not base64",
                    char::from(c).escape_default(),
                    q * 4 + i
                )
            })?;
            n |= v << (18 - 6 * i);
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.push(a);
        if pad < 2 {
            out.push(b);
        }
        if pad < 1 {
            out.push(c);
        }
    }
    Ok(out)
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Base64;
        impl Visitor<'_> for Base64 {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string (standard alphabet, padded)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                decode(v).map(Bytes).map_err(E::custom)
            }
        }
        d.deserialize_str(Base64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for len in 0..40 {
            let b = Bytes(data[..len].to_vec());
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json.len(), 2 + len.div_ceil(3) * 4);
            let back: Bytes = serde_json::from_str(&json).unwrap();
            assert_eq!(back, b, "length {len}");
        }
        let all = Bytes(data);
        let back: Bytes = serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn matches_the_standard_spelling() {
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(raw.as_bytes()), b64);
            assert_eq!(decode(b64).unwrap(), raw.as_bytes());
        }
    }

    #[test]
    fn refuses_what_is_not_base64_with_a_reason() {
        for (bad, why) in [
            ("Zg=", "multiple of 4"),
            ("Z!==", "not base64"),
            ("Zg==Zm9v", "misplaced"),
            ("Z===", "misplaced"),
        ] {
            let err = serde_json::from_str::<Bytes>(&format!("\"{bad}\"")).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        let err = serde_json::from_str::<Bytes>("[1,2]").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
    }
}
