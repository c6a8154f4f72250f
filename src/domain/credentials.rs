//! Provider credentials (PROVIDERS.md §1): write-only, sealed at rest with XChaCha20-Poly1305
//! under the server's secret key, shown masked (eight `•` and the last four characters).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// The variable that holds the key (base64 of 32 random bytes).
pub const SECRET_KEY_VARIABLE: &str = "OUTBOUND_SECRET_KEY";

/// The key that seals credentials.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from its base64 text; `None` unless it decodes to exactly 32 bytes.
    pub fn parse(text: &str) -> Option<SecretKey> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        Some(SecretKey(bytes.try_into().ok()?))
    }

    pub fn generate() -> SecretKey {
        SecretKey(rand::random())
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// A credential as stored: the sealed value and the four characters the mask shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// base64(24-byte nonce ‖ ciphertext ‖ tag).
    pub sealed: String,
    pub last4: String,
}

impl Sealed {
    pub fn seal(key: &SecretKey, plain: &str) -> Sealed {
        let nonce: [u8; 24] = rand::random();
        // Encryption with a valid key and nonce cannot fail for inputs of this size.
        let ciphertext = key.cipher().encrypt(XNonce::from_slice(&nonce), plain.as_bytes()).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        let chars: Vec<char> = plain.chars().collect();
        Sealed { sealed: STANDARD.encode(out), last4: chars[chars.len().saturating_sub(4)..].iter().collect() }
    }

    /// The plain credential; `None` when another key sealed it (or the text was altered).
    pub fn open(&self, key: &SecretKey) -> Option<String> {
        let bytes = STANDARD.decode(&self.sealed).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plain = key.cipher().decrypt(XNonce::from_slice(nonce), ciphertext).ok()?;
        String::from_utf8(plain).ok()
    }

    /// What responses show: exactly eight `•` then the last four characters.
    pub fn masked(&self) -> String {
        format!("••••••••{}", self.last4)
    }
}

/// A credential field of a provider config: given in plain by the client, sealed before it is
/// stored; absent on a PATCH that keeps the stored one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credential {
    #[default]
    Absent,
    Plain(String),
    Sealed(Sealed),
}

impl Credential {
    /// Seals a plain credential; others are returned as they are.
    pub fn seal(self, key: &SecretKey) -> Credential {
        match self {
            Credential::Plain(plain) => Credential::Sealed(Sealed::seal(key, &plain)),
            other => other,
        }
    }

    pub fn is_plain(&self) -> bool {
        matches!(self, Credential::Plain(_))
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Credential::Absent)
    }

    /// The plain value: given, or opened with `key`.
    pub fn reveal(&self, key: Option<&SecretKey>) -> Option<String> {
        match self {
            Credential::Absent => None,
            Credential::Plain(plain) => Some(plain.clone()),
            Credential::Sealed(sealed) => sealed.open(key?),
        }
    }

    pub fn masked(&self) -> Option<String> {
        match self {
            Credential::Absent => None,
            Credential::Plain(plain) => Some(Sealed { sealed: String::new(), last4: last4(plain) }.masked()),
            Credential::Sealed(sealed) => Some(sealed.masked()),
        }
    }
}

fn last4(plain: &str) -> String {
    let chars: Vec<char> = plain.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Stored as the sealed object; a plain value is never written (configs are sealed first).
impl Serialize for Credential {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Credential::Sealed(sealed) => sealed.serialize(serializer),
            Credential::Absent | Credential::Plain(_) => serializer.serialize_none(),
        }
    }
}

/// Read from a client (a string) or from the store (the sealed object).
impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Plain(String),
            Sealed(Sealed),
        }
        Ok(match Option::<Form>::deserialize(deserializer)? {
            None => Credential::Absent,
            Some(Form::Plain(plain)) => Credential::Plain(plain),
            Some(Form::Sealed(sealed)) => Credential::Sealed(sealed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_with_their_key_and_mask_to_the_last_four() {
        let key = SecretKey::generate();
        let sealed = Sealed::seal(&key, "token-abcd1234");
        assert_eq!(sealed.open(&key).as_deref(), Some("token-abcd1234"));
        assert_eq!(sealed.open(&SecretKey::generate()), None);
        assert_eq!(sealed.masked(), "••••••••1234");
        assert!(!sealed.sealed.contains("abcd"));
        // Two seals of one value differ (fresh nonce each time).
        assert_ne!(Sealed::seal(&key, "same").sealed, Sealed::seal(&key, "same").sealed);
        assert_eq!(Sealed::seal(&key, "ab").masked(), "••••••••ab");
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let key = SecretKey::generate();
        assert!(SecretKey::parse(&key.to_base64()).is_some());
        assert!(SecretKey::parse(&STANDARD.encode([0u8; 31])).is_none());
        assert!(SecretKey::parse("not base64!").is_none());
    }

    #[test]
    fn credentials_read_from_clients_and_from_the_store() {
        let key = SecretKey::generate();
        let plain: Credential = serde_json::from_str("\"secret1234\"").expect("a string");
        let stored = serde_json::to_value(plain.clone().seal(&key)).expect("serializes");
        let back: Credential = serde_json::from_value(stored).expect("the sealed form");
        assert_eq!(back.reveal(Some(&key)).as_deref(), Some("secret1234"));
        assert_eq!(back.reveal(None), None);
        assert_eq!(plain.masked().as_deref(), Some("••••••••1234"));
    }
}
