//! Reading a body or a query strictly: within the size limit, every refusal in the API's JSON
//! shape, naming the field that failed.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::reply::ApiError;

/// The largest body any route takes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The raw body, within the size limit, refused with the API's JSON errors (413 over it).
pub(crate) struct Raw(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(Raw).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::invalid("", rejection.body_text())
            }
        })
    }
}

/// A JSON body parsed strictly: the error names the field that failed.
pub(crate) struct Strict<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Strict<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Raw(bytes) = Raw::from_request(req, state).await?;
        parse(&bytes).map(Strict)
    }
}

/// Query parameters parsed strictly: an unknown or malformed one is a 400 in the API's shape.
pub(crate) struct StrictQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for StrictQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(StrictQuery).map_err(|e| {
            let message = e.inner().to_string();
            let field = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
                .unwrap_or_default()
                .to_string();
            ApiError::invalid(field, format!("bad query: {message}"))
        })
    }
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let message = e.inner().to_string();
    let path = e.path().to_string();
    // At the top level the path is "."; an unknown field there is named only in the message.
    let field = match message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
        _ if path != "." => path,
        Some(unknown) => unknown.to_string(),
        None => String::new(),
    };
    ApiError::invalid(field, message)
}

/// Parses JSON, naming the failing field in the error.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(field_error)?;
    de.end().map_err(|e| ApiError::invalid("", format!("trailing characters after the JSON body: {e}")))?;
    Ok(value)
}

/// A body read in parts (one of its fields taken out first) lists that field among those it
/// expects when it refuses an unknown one: `first` puts it at the head of the list, else at its end.
pub(super) fn also_expected(err: ApiError, field: &str, first: bool) -> ApiError {
    let Some((unknown, expected)) = err.message.split_once(", expected ") else { return err };
    if !unknown.starts_with("unknown field `") {
        return err;
    }
    let mut fields: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    if first {
        fields.insert(0, field);
    } else {
        fields.push(field);
    }
    let message = format!("{unknown}, expected one of `{}`", fields.join("`, `"));
    ApiError { message, ..err }
}

/// Reads an already parsed JSON value strictly, naming the failing field in the error.
pub(super) fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::AdoptBody;

    #[test]
    fn trailing_garbage_and_wrong_types_are_refused() {
        assert!(parse::<AdoptBody>(br#"{"instance_id": "i-0123abcd"} x"#).is_err());
        let err = parse::<AdoptBody>(br#"{"instance_id": 5}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("instance_id"));
    }
}

/// Bad bodies, generated: parsing never panics, and every refusal names what is wrong.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::body::fuzzing::explained;
    use crate::body::{AdoptBody, fuzzing};

    proptest! {
        #![proptest_config(fuzzing::config())]

        #[test]
        fn any_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Err(err) = parse::<Value>(&bytes) {
                prop_assert!(explained(&err));
            }
            if let Err(err) = parse::<AdoptBody>(&bytes) {
                prop_assert!(explained(&err));
            }
        }
    }
}
