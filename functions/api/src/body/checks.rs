//! Field checks the bodies share.

use std::collections::HashSet;

use spotkeeper::domain::is_ec2_id;

use crate::reply::ApiError;

pub(super) fn id_like(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub(super) fn unique<'a>(field: &str, values: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for value in values {
        if !seen.insert(value) {
            return Err(ApiError::invalid(field, format!("{value} is listed twice")));
        }
    }
    Ok(())
}

/// An instance id from a body or a hook follows the one rule for instance ids (EC2's shape, as for
/// ids from events): it becomes a table key and an AWS call parameter.
pub(crate) fn check_instance_id(field: &str, id: &str) -> Result<(), ApiError> {
    if is_ec2_id(id, "i-") {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("{id:?} is not an instance id (i- and 8 or 17 hex digits)")))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn instance_ids_have_ec2_shape() {
        for good in ["i-0123abcd", "i-0b22a22eec53b9321"] {
            assert!(check_instance_id("instance_id", good).is_ok(), "{good}");
        }
        // Short, upper-case or overlong ids are not ids EC2 makes, whatever their prefix.
        for bad in ["i-1", "i-abc", "i-0123ABCD", "i-0123abcdx", "i-", "", "vol-0123abcd", "i-0123abcd; x"] {
            let err = check_instance_id("adopt", bad).unwrap_err();
            assert_eq!((err.status, err.field.as_deref()), (StatusCode::BAD_REQUEST, Some("adopt")), "{bad}");
            assert!(err.message.contains("is not an instance id"), "{}", err.message);
        }
    }
}
