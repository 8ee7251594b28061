//! The bearer token an EKS cluster accepts, minted as `aws eks get-token` does: `k8s-aws-v1.` and
//! the base64url (no padding) of a presigned STS `GetCallerIdentity` URL whose signature covers the
//! header `x-k8s-aws-id: <cluster>`. EKS calls that URL to learn who is asking, so the token is
//! only a signature: no call to AWS is made here.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// The prefix EKS's authenticator looks for.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The signed header naming the cluster: a token for one cluster is refused by another.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// What `aws eks get-token` asks for; EKS ignores it and accepts the URL for 15 minutes anyway.
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);
/// How long EKS accepts a token after its signing time (`X-Amz-Date`).
pub const TOKEN_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);
/// EKS refuses longer tokens (a long session token can get near it).
pub const MAX_TOKEN_LEN: usize = 4096;

/// A minted token and when EKS stops accepting it.
#[derive(Clone, PartialEq, Eq)]
pub struct EksToken {
    pub value: String,
    /// Signing time + 15 minutes: re-mint before this.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for EksToken {
    // The token is a credential for its 15 minutes: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken").field("value", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0:?} is not an EKS cluster name (1-100 letters, digits, '-' or '_', starting with a letter or digit)")]
    ClusterName(String),
    #[error("{0:?} is not an AWS region name")]
    Region(String),
    #[error("the STS request for the EKS token could not be prepared")]
    Params(#[source] v4::signing_params::BuildError),
    #[error("the STS request for the EKS token could not be signed")]
    Sign(#[source] aws_sigv4::http_request::SigningError),
    #[error("the EKS token is {0} bytes long, over EKS's limit of {MAX_TOKEN_LEN} (a very long session token?)")]
    TooLong(usize),
}

/// Mints the token for `cluster` in `region` from `credentials`, signed at `at`.
pub fn mint_token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    at: DateTime<Utc>,
) -> Result<EksToken, TokenError> {
    if !valid_cluster_name(cluster) {
        return Err(TokenError::ClusterName(cluster.to_string()));
    }
    if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(TokenError::Region(region.to_string()));
    }
    let host = format!("sts.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(SystemTime::from(at))
        .settings(settings)
        .build()
        .map_err(TokenError::Params)?
        .into();
    let headers = [("host", host.as_str()), (CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new("GET", url.as_str(), headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(TokenError::Sign)?;
    let (instructions, _signature) = sign(request, &params).map_err(TokenError::Sign)?.into_parts();
    let mut presigned = url;
    for (name, value) in instructions.params() {
        presigned.push('&');
        presigned.push_str(name);
        presigned.push('=');
        presigned.push_str(&encode(value));
    }
    let value = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(presigned));
    if value.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(value.len()));
    }
    Ok(EksToken { value, expires_at: at + TOKEN_LIFETIME })
}

/// EKS's rule for cluster names.
fn valid_cluster_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 100
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Percent-encodes a query value as botocore does (RFC 3986: only unreserved characters kept).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn credentials(session: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session.map(str::to_string),
            None,
            "test",
        )
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").map(|t| t.to_utc()).unwrap_or_default()
    }

    /// The presigned URL inside a token, and its query parameters (decoded).
    fn open(token: &str) -> (String, HashMap<String, String>) {
        let encoded = token.strip_prefix(TOKEN_PREFIX).expect("the k8s-aws-v1. prefix");
        assert!(!encoded.contains('='), "no padding: {encoded}");
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("a UTF-8 URL");
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let params = form_pairs(query);
        (url, params)
    }

    fn form_pairs(query: &str) -> HashMap<String, String> {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect()
    }

    fn percent_decode(value: &str) -> String {
        let bytes = value.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).expect("a percent escape"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_token_is_a_presigned_get_caller_identity_for_the_cluster() {
        let token = mint_token(&credentials(None), "eu-west-1", "prod-workers", at()).expect("a token");
        let (url, params) = open(&token.value);
        assert!(url.starts_with("https://sts.eu-west-1.amazonaws.com/?"), "{url}");
        assert_eq!(params["Action"], "GetCallerIdentity");
        assert_eq!(params["Version"], "2011-06-15");
        assert_eq!(params["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(params["X-Amz-Credential"], "AKIDEXAMPLE/20261201/eu-west-1/sts/aws4_request");
        assert_eq!(params["X-Amz-Date"], "20261201T100000Z");
        assert_eq!(params["X-Amz-Expires"], "60");
        assert_eq!(params["X-Amz-SignedHeaders"], "host;x-k8s-aws-id");
        assert_eq!(params["X-Amz-Signature"].len(), 64, "a hex SHA-256 HMAC");
        assert!(!params.contains_key("X-Amz-Security-Token"), "no session token given");
        assert!(token.value.len() < MAX_TOKEN_LEN);
        assert_eq!(token.expires_at, at() + chrono::Duration::minutes(15));
        assert!(!format!("{token:?}").contains("k8s-aws-v1"), "the token stays out of logs");
    }

    #[test]
    fn the_signature_covers_the_cluster_the_time_and_the_session() {
        let one = mint_token(&credentials(None), "eu-west-1", "a", at()).expect("a token");
        let again = mint_token(&credentials(None), "eu-west-1", "a", at()).expect("a token");
        let other_cluster = mint_token(&credentials(None), "eu-west-1", "b", at()).expect("a token");
        let later =
            mint_token(&credentials(None), "eu-west-1", "a", at() + chrono::Duration::seconds(1)).expect("a token");
        assert_eq!(one, again, "signing is deterministic at a frozen time");
        let signature = |t: &EksToken| open(&t.value).1["X-Amz-Signature"].clone();
        assert_ne!(signature(&one), signature(&other_cluster));
        assert_ne!(signature(&one), signature(&later));

        let session = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJIMEYCIQ+/=";
        let with_session = mint_token(&credentials(Some(session)), "eu-west-1", "a", at()).expect("a token");
        let (url, params) = open(&with_session.value);
        assert_eq!(params["X-Amz-Security-Token"], session, "carried, encoded, in the URL");
        assert!(url.contains("%2F%2F") && url.contains("%2B") && url.contains("%3D"), "{url}");
        assert_ne!(signature(&one), signature(&with_session));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let c = credentials(None);
        assert!(matches!(mint_token(&c, "eu-west-1", "", at()), Err(TokenError::ClusterName(_))));
        assert!(matches!(mint_token(&c, "eu-west-1", "-leading", at()), Err(TokenError::ClusterName(_))));
        assert!(matches!(mint_token(&c, "eu-west-1", &"a".repeat(101), at()), Err(TokenError::ClusterName(_))));
        assert!(matches!(mint_token(&c, "eu-west-1", "has space", at()), Err(TokenError::ClusterName(_))));
        assert!(matches!(mint_token(&c, "", "a", at()), Err(TokenError::Region(_))));
        assert!(matches!(mint_token(&c, "eu-west-1.evil.com/", "a", at()), Err(TokenError::Region(_))));
        let huge = credentials(Some(&"x".repeat(4000)));
        assert!(matches!(mint_token(&huge, "eu-west-1", "a", at()), Err(TokenError::TooLong(n)) if n > MAX_TOKEN_LEN));
    }
}
