//! [`Secret`]: a string that never leaves the process by accident.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every rendering of a [`Secret`] prints instead of its value.
pub const REDACTED: &str = "<redacted>";

/// A secret string (API key, JWT secret, Redis URL with its password).
///
/// `Debug`, `Display` and `Serialize` all print `<redacted>`, so a secret can sit inside
/// structs that are logged or printed (`check-config`) without leaking; the only way to the
/// value is the explicit [`Secret::expose`]. It deserializes from a plain string so it can be
/// written in the TOML file like any other value.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret value itself; call it only where the value is used, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Compares in time that depends only on the lengths, never on where the first difference
/// is, so an attacker who can make the gateway compare a guess with a secret learns nothing
/// from timing.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

/// Constant time in the contents (`subtle`); only the lengths may leak, and a secret's length
/// is no secret worth the name (they are configured, not guessed byte by byte).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.ct_eq(b))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_compares_whole_values() {
        let s = |v: &str| Secret::new(v.to_string());
        assert_eq!(s("abc"), s("abc"));
        assert_ne!(s("abc"), s("abd"));
        assert_ne!(s("abc"), s("abc\0"));
        assert_ne!(s("abc"), s("ab"));
        assert_ne!(s(""), s("a"));
        assert_eq!(s(""), s(""));
    }

    #[test]
    fn renderings_hide_the_value() {
        let s = Secret::new("hunter2-hunter2".to_string());
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(s.expose(), "hunter2-hunter2");
    }
}
