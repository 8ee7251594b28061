//! Webhook signatures, as Stripe signs its webhooks: the header
//! `Spotkeeper-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
//! Inbound webhooks are checked with it; outgoing ones are signed with it.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

pub const HEADER: &str = "Spotkeeper-Signature";
/// A signature older or newer than this is refused: a captured request cannot be replayed later.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the {HEADER} header is missing")]
    Missing,
    #[error("the {HEADER} header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature's timestamp is more than 5 minutes off: sign each request when you send it")]
    Stale,
    #[error("the signature does not match the body: sign \"<t>.<raw body>\" with the shared secret")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value that signs `body` at `at`.
pub fn sign(secret: &[u8], at: DateTime<Utc>, body: &[u8]) -> String {
    let t = at.timestamp();
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// Checks a header against the body, in constant time, within the tolerance of `now`.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8], now: DateTime<Utc>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let (Some(t), false) = (timestamp, signatures.is_empty()) else { return Err(SignatureError::Malformed) };
    if (now.timestamp() - t).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    // Several v1 values are allowed, so a secret can be rotated without downtime.
    if signatures.iter().any(|s| mac(secret, t, body).verify_slice(s).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_signed_body_verifies_and_nothing_else_does() {
        let now = Utc::now();
        let header = sign(b"s3cret", now, b"{\"a\":1}");
        assert_eq!(verify(b"s3cret", Some(&header), b"{\"a\":1}", now), Ok(()));
        assert_eq!(verify(b"s3cret", Some(&header), b"{\"a\":2}", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", Some(&header), b"{\"a\":1}", now), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(b"s3cret", Some(&header), b"{\"a\":1}", now + Duration::minutes(6)),
            Err(SignatureError::Stale)
        );
        assert_eq!(verify(b"s3cret", None, b"", now), Err(SignatureError::Missing));
        assert_eq!(verify(b"s3cret", Some("v1=zz"), b"", now), Err(SignatureError::Malformed));
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify(b"s3cret", Some(&rotated), b"{\"a\":1}", now), Ok(()), "any v1 may match");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.hello' | openssl dgst -sha256 -hmac key
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            sign(b"key", at, b"hello"),
            "t=1700000000,v1=4d583a269f4f276a3fa80ff31b5a01879a848096983222a17893d198418939aa"
        );
    }
}
