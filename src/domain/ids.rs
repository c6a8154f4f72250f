//! Generated identifiers and secrets: API keys, integration ids, signing secrets.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::campaign::Channel;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| BASE62[rng.random_range(0..BASE62.len())] as char).collect()
}

fn is_base62(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub const API_KEY_PREFIX_LEN: usize = 8;
const API_KEY_SECRET_LEN: usize = 32;

/// A freshly made API key: `ob_<8-char prefix>_<32 base62 chars>`. Only its hash is stored.
pub struct NewApiKey {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

impl NewApiKey {
    pub fn generate() -> Self {
        let prefix = random_base62(API_KEY_PREFIX_LEN);
        let key = format!("ob_{prefix}_{}", random_base62(API_KEY_SECRET_LEN));
        let hash = hash_api_key(&key);
        NewApiKey { key, prefix, hash }
    }
}

/// The hash stored for a key. Keys carry 190 bits of randomness, so a plain SHA-256 is enough
/// (a slow password hash would only cost latency on every request).
pub fn hash_api_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut text = String::with_capacity(64);
    for byte in digest {
        text.push(HEX[usize::from(byte >> 4)] as char);
        text.push(HEX[usize::from(byte & 0xf)] as char);
    }
    text
}

/// The prefix of a well-formed key, or `None` when the text cannot be one of our keys.
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("ob_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == API_KEY_PREFIX_LEN && secret.len() == API_KEY_SECRET_LEN && is_base62(prefix) && is_base62(secret)).then_some(prefix)
}

/// The public prefix of an API key ([`API_KEY_PREFIX_LEN`] base62 characters), kept by value so
/// that the authenticated request carries it (the do-not-contact history names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPrefix([u8; API_KEY_PREFIX_LEN]);

impl KeyPrefix {
    /// The prefix of a well-formed key (see [`api_key_prefix`]).
    pub fn of_key(key: &str) -> Option<KeyPrefix> {
        api_key_prefix(key)?.as_bytes().try_into().ok().map(KeyPrefix)
    }

    pub fn as_str(&self) -> &str {
        // Base62 by construction, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Accepts a key prefix as printed by `keys list` (`Ab3dE6gH`) or with its `ob_` marker.
pub fn normalize_key_prefix(text: &str) -> Option<&str> {
    let prefix = text.strip_prefix("ob_").unwrap_or(text);
    (prefix.len() == API_KEY_PREFIX_LEN && is_base62(prefix)).then_some(prefix)
}

/// An organization's public id, `project_id` in webhook events (§8.3): `prj_` + 20 base62.
pub fn new_project_id() -> String {
    format!("prj_{}", random_base62(20))
}

/// `iph_` (phone) or `iwa_` (WhatsApp) followed by 20 base62 characters.
pub fn new_integration_id(channel: Channel) -> String {
    let marker = match channel {
        Channel::PhoneCall => "iph_",
        Channel::Whatsapp => "iwa_",
    };
    format!("{marker}{}", random_base62(20))
}

/// Whether `text` has the shape of an integration id: what is looked up must be one (a path
/// segment can hold anything, U+0000 included, which PostgreSQL refuses to compare).
pub fn is_integration_id(text: &str) -> bool {
    text.strip_prefix("iph_").or_else(|| text.strip_prefix("iwa_")).is_some_and(|rest| rest.len() == 20 && is_base62(rest))
}

/// 32 random bytes, base64: the HMAC key shared with a provider.
pub fn new_signing_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `X-Outbound-Signature` of a body (§5.4): base64(HMAC-SHA256(base64-decoded secret, body)).
/// `None` when the stored secret is not base64 (never the case for secrets Outbound made).
pub fn sign(secret: &str, body: &[u8]) -> Option<String> {
    use hmac::Mac;
    let key = base64::engine::general_purpose::STANDARD.decode(secret).ok()?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(body);
    Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Checks a signature in constant time.
pub fn verify_signature(secret: &str, body: &[u8], signature: &str) -> bool {
    use hmac::Mac;
    let (Ok(key), Ok(claimed)) =
        (base64::engine::general_purpose::STANDARD.decode(secret), base64::engine::general_purpose::STANDARD.decode(signature.trim()))
    else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else { return false };
    mac.update(body);
    mac.verify_slice(&claimed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_ids_are_a_channel_marker_and_20_base62_characters() {
        for channel in [Channel::PhoneCall, Channel::Whatsapp] {
            assert!(is_integration_id(&new_integration_id(channel)));
        }
        for bad in
            ["", "iph_", "iph_0123456789abcdefghi", "iph_0123456789abcdefghijk", "ixx_0123456789abcdefghij", "iph_0123456789abcdefgh\0j"]
        {
            assert!(!is_integration_id(bad), "{bad:?}");
        }
        assert!(is_integration_id("iwa_0123456789abcdefghij"));
    }

    #[test]
    fn signatures_verify_only_for_the_same_secret_and_body() {
        let secret = new_signing_secret();
        let signature = sign(&secret, b"{}").expect("base64 secret");
        assert!(verify_signature(&secret, b"{}", &signature));
        assert!(!verify_signature(&secret, b"{ }", &signature));
        assert!(!verify_signature(&new_signing_secret(), b"{}", &signature));
        assert!(!verify_signature(&secret, b"{}", "not base64!"));
    }

    #[test]
    fn generated_keys_parse_back_to_their_prefix() {
        let key = NewApiKey::generate();
        assert_eq!(key.key.len(), 3 + 8 + 1 + 32);
        assert_eq!(api_key_prefix(&key.key), Some(key.prefix.as_str()));
        assert_eq!(hash_api_key(&key.key), key.hash);
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        for bad in ["", "ob_", "ob_abcdefgh", "xx_abcdefgh_0123456789abcdef0123456789abcdef", "ob_abcdefg_0123456789abcdef0123456789abcdef"]
        {
            assert_eq!(api_key_prefix(bad), None, "{bad}");
        }
        assert_eq!(normalize_key_prefix("ob_Ab3dE6gH"), Some("Ab3dE6gH"));
        assert_eq!(normalize_key_prefix("Ab3dE6g"), None);
    }

    #[test]
    fn integration_ids_have_the_contract_shape() {
        let id = new_integration_id(Channel::Whatsapp);
        assert!(id.starts_with("iwa_") && id.len() == 24 && is_base62(&id[4..]));
    }
}
