//! The mock providers' own signatures (`tests/kit/providers_mock.rs`) against the providers'
//! published vectors, so that the provider scenarios check the server independently; and its
//! window counts used for pacing.

use std::time::{Duration, Instant};

use crate::kit::providers_mock::{creates_within, hub_signature, most_within, retell_signature, twilio_signature};

/// Twilio's own vectors (`reference/providers.md` §1.7).
#[test]
fn twilio_signature_matches_twilios_vectors() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    let params = |caller: &str| -> Vec<(String, String)> {
        [("To", "+18005551212"), ("From", caller), ("Digits", "1234"), ("Caller", caller), ("CallSid", "CA1234567890ABCDE")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(twilio_signature("12345", url, &params("+14158675309")), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_eq!(twilio_signature("12345", url, &params("+12349013030")), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
}

/// The worked example of `reference/providers.md` §2.8.
#[test]
fn hub_signature_matches_the_worked_example() {
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    assert_eq!(hub_signature("app_secret_123", body), "sha256=02fe0c96d28c59ddb7cf81eff0ca05809b360ba73b63c28210b5906a0a107d1f");
    assert_eq!(hub_signature("secret", b"test"), "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914");
}

/// The worked example of `reference/providers.md` §4.7.
#[test]
fn retell_signature_matches_the_worked_example() {
    let body = br#"{"event":"call_ended","call":{"call_id":"Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6"}}"#;
    assert_eq!(
        retell_signature("key_test_123", body, 1703302428855),
        "v=1703302428855,d=60ce5b87c0ca48b22f40b9f237ab5ac8591787810b40fe4f66b3e228900f33fd"
    );
}

#[test]
fn windows_count_creates() {
    let start = Instant::now();
    let times: Vec<Instant> = (0..10).map(|i| start + Duration::from_millis(i * 100)).collect();
    assert_eq!(creates_within(&times, start + Duration::from_millis(250), Duration::from_millis(500)), 5);
    assert_eq!(most_within(&times, Duration::from_millis(300)), 3);
}
