//! Bearer tokens checked as EKS checks them: a `k8s-aws-v1.` token is a presigned STS
//! `GetCallerIdentity` URL; EKS's authenticator checks its shape and expiry, then has STS check
//! the signature with the header `x-k8s-aws-id` set to its own cluster's name, so a token signed
//! for another cluster fails. The fake plays STS too: it knows the test credentials and checks
//! the SigV4 signature itself (written here apart from `aws-sigv4`, so the library's tokens are
//! checked by a second implementation).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The query parameters EKS's authenticator lets through; any other is refused.
const ALLOWED_PARAMS: &[&str] = &[
    "Action",
    "Version",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
    "X-Amz-SignedHeaders",
];

/// Checks `token` for `cluster` at `now` against the known credentials (access key → secret);
/// `Err` says why it is refused (the client only ever sees "Unauthorized", as from EKS).
pub fn verify(
    token: &str,
    cluster: &str,
    now: DateTime<Utc>,
    secrets: &HashMap<String, String>,
) -> Result<String, String> {
    let encoded = token.strip_prefix("k8s-aws-v1.").ok_or("not a k8s-aws-v1. token")?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|e| format!("not base64url: {e}"))?;
    let url = String::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let rest = url.strip_prefix("https://").ok_or("not an https URL")?;
    let (host, path_query) = rest.split_once('/').ok_or("no path")?;
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    if !(host == "sts.amazonaws.com" || (host.starts_with("sts.") && host.ends_with(".amazonaws.com"))) {
        return Err(format!("unexpected hostname {host:?} in pre-signed URL"));
    }
    if !path.is_empty() {
        return Err(format!("unexpected path \"/{path}\" in pre-signed URL"));
    }
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if !ALLOWED_PARAMS.contains(&k.as_ref()) {
            return Err(format!("non-allowlisted query parameter {k:?}"));
        }
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("query parameter {k:?} given twice"));
        }
    }
    let get = |k: &str| params.get(k).map(String::as_str).ok_or(format!("no {k}"));
    if get("Action")? != "GetCallerIdentity" {
        return Err("unexpected action parameter in pre-signed URL".into());
    }
    let signed_headers: Vec<&str> = get("X-Amz-SignedHeaders")?.split(';').collect();
    if !signed_headers.contains(&"x-k8s-aws-id") {
        return Err("client did not sign the x-k8s-aws-id header in the pre-signed URL".into());
    }
    let expires: i64 = get("X-Amz-Expires")?.parse().map_err(|_| "X-Amz-Expires is not a number")?;
    if !(0..=900).contains(&expires) {
        return Err(format!("X-Amz-Expires parameter out of range: {expires}"));
    }
    let date =
        NaiveDateTime::parse_from_str(get("X-Amz-Date")?, "%Y%m%dT%H%M%SZ").map_err(|_| "bad X-Amz-Date")?.and_utc();
    if now > date + chrono::Duration::minutes(15) {
        return Err(format!("token expired (signed {date}, now {now})"));
    }

    // STS's part: the signature, with the server's own cluster name in x-k8s-aws-id.
    let credential = get("X-Amz-Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, day, region, service, terminator] = scope[..] else {
        return Err("bad X-Amz-Credential".into());
    };
    if service != "sts" || terminator != "aws4_request" || get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err("bad credential scope".into());
    }
    let secret = secrets.get(access_key).ok_or(format!("unknown access key {access_key}"))?;
    let mut canonical_headers = String::new();
    for name in &signed_headers {
        let value = match *name {
            "host" => host,
            "x-k8s-aws-id" => cluster,
            other => return Err(format!("a signed header the server cannot know: {other}")),
        };
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_query = params
        .iter()
        .filter(|(k, _)| k.as_str() != "X-Amz-Signature")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let empty_hash = hex::encode(Sha256::digest(b""));
    let canonical_request =
        format!("GET\n/\n{canonical_query}\n{canonical_headers}\n{}\n{empty_hash}", signed_headers.join(";"));
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{day}/{region}/sts/aws4_request\n{}",
        get("X-Amz-Date")?,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, "sts", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    if expected != get("X-Amz-Signature")? {
        return Err("SignatureDoesNotMatch (tampered, or signed for another cluster)".into());
    }
    Ok(access_key.to_string())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; the else cannot run.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else { return Vec::new() };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
