//! Newtypes for the ids that cross module boundaries.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn to_hex(&self) -> String {
                let mut buf = [0u8; 64];
                hex::encode_to_slice(self.0, &mut buf).expect("64 bytes hold 32 in hex");
                // Hex digits are ASCII.
                String::from_utf8(buf.to_vec()).expect("hex is ASCII")
            }
            /// The first 8 hex digits, as shown to people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| {
                    Error::invalid(stringify!($name), format!("{s:?} is not 64 hex digits: {e}"))
                })?;
                Ok(Self(out))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut buf = [0u8; 64];
                hex::encode_to_slice(self.0, &mut buf).expect("64 bytes hold 32 in hex");
                s.serialize_str(std::str::from_utf8(&buf).expect("hex is ASCII"))
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Keyed blake3 hash of a blob's plaintext (data chunk or tree).
    BlobId
);
id_type!(
    /// Unkeyed blake3 hash of a whole pack file as stored: checkable without the key.
    PackId
);
id_type!(
    /// Unkeyed blake3 hash of a stored (encrypted) snapshot, index or key file.
    FileId
);

/// What a blob holds. Trees and data live in separate packs so that listing and
/// planning a restore never download file contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

/// A byte count printed for people: "1.5 GiB".
pub struct HumanBytes(pub u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = BlobId([7; 32]);
        assert_eq!(BlobId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(BlobId::from_hex("xyz").is_err());
        assert_eq!(HumanBytes(1536).to_string(), "1.5 KiB");
        assert_eq!(HumanBytes(12).to_string(), "12 B");
    }
}

/// A system's recovery priority, 0 to 3: 3 must not stop, 2 is back within 24 h,
/// 1 within 3 days, 0 may stay down during an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Priority(u8);

impl Priority {
    pub const ALL: [Priority; 4] = [Priority(3), Priority(2), Priority(1), Priority(0)];

    pub fn new(p: u8) -> Option<Priority> {
        (p <= 3).then_some(Priority(p))
    }
    pub fn get(self) -> u8 {
        self.0
    }
    /// The standard's deadline: 0 for priority 3, 24 h for 2, 72 h for 1, none for 0.
    pub fn default_deadline(self) -> Option<chrono::Duration> {
        match self.0 {
            3 => Some(chrono::Duration::zero()),
            2 => Some(chrono::Duration::hours(24)),
            1 => Some(chrono::Duration::hours(72)),
            _ => None,
        }
    }
}

/// A number that is not one of the standard's four priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("priority {0} is out of range: use 0, 1, 2 or 3")]
pub struct PriorityOutOfRange(pub u8);

impl TryFrom<u8> for Priority {
    type Error = PriorityOutOfRange;
    fn try_from(p: u8) -> std::result::Result<Self, PriorityOutOfRange> {
        Priority::new(p).ok_or(PriorityOutOfRange(p))
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
