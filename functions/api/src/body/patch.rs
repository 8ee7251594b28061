//! `PATCH /groups/{name}`: the policy patch (its rules are `spotkeeper::decisions::policy`) and
//! the group's `kubernetes` block beside it.
//!
//! The block is not policy: it stays out of `PolicyPatch` (the policy's rules and its change
//! line know nothing of clusters) and is taken out of the body here, so `null` (remove it) can be
//! told from a body without it (leave it).

use serde_json::Value;
use spotkeeper::decisions::policy::{self, Refusal};
use spotkeeper::domain::{Group, KubernetesSpec, Policy, PolicyPatch};

use super::strict::{also_expected, from_value};
use crate::reply::ApiError;

/// A PATCH body: the policy fields to change, and the `kubernetes` block when given
/// (`Some(None)`: `null`, remove it).
#[derive(Debug)]
pub(crate) struct GroupPatch {
    pub policy: PolicyPatch,
    pub kubernetes: Option<Option<KubernetesSpec>>,
}

impl GroupPatch {
    pub(crate) fn from_json(mut value: Value) -> Result<Self, ApiError> {
        let kubernetes = match value.as_object_mut().and_then(|body| body.remove("kubernetes")) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(block) => Some(Some(from_value::<KubernetesSpec>(block).map_err(|err| {
                let field = match err.field.as_deref() {
                    None | Some("") => "kubernetes".to_string(),
                    Some(inner) => format!("kubernetes.{inner}"),
                };
                ApiError { field: Some(field), ..err }
            })?)),
        };
        let policy = from_value::<PolicyPatch>(value).map_err(|err| also_expected(err, "kubernetes", false))?;
        Ok(Self { policy, kubernetes })
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::invalid(refusal.field, refusal.message)
    }
}

/// The group's policy with the patch applied, or a 400 naming the field at fault.
pub(crate) fn apply(patch: PolicyPatch, group: &Group) -> Result<Policy, ApiError> {
    Ok(policy::apply(patch, group)?)
}

/// Bad policy patches, generated: applying never panics, and every refusal names what is wrong.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use spotkeeper::domain::GroupName;

    use spotkeeper::domain::{AsgSpec, GroupKind};

    use super::*;
    use crate::body::fuzzing::{self, explained, json};

    proptest! {
        #![proptest_config(fuzzing::config())]

        #[test]
        fn policy_patches_never_panic(value in json()) {
            let group = Group::new(
                GroupName::try_from("web".to_string()).unwrap(),
                GroupKind::Asg(AsgSpec { asg_name: "workers".into() }),
                chrono::Utc::now(),
            );
            match GroupPatch::from_json(value) {
                Ok(patch) => {
                    if let Err(err) = apply(patch.policy, &group) {
                        prop_assert!(explained(&err));
                    }
                }
                Err(err) => prop_assert!(explained(&err)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_kubernetes_block_is_set_removed_or_left() {
        let set = GroupPatch::from_json(json!({"fallback": false, "kubernetes": {"cluster": "prod"}})).unwrap();
        assert_eq!(set.kubernetes.unwrap().map(|k| k.cluster.to_string()).as_deref(), Some("prod"));
        assert_eq!(set.policy.fallback, Some(false));
        let removed = GroupPatch::from_json(json!({"kubernetes": null})).unwrap();
        assert_eq!(removed.kubernetes, Some(None));
        let left = GroupPatch::from_json(json!({"rebalance": "off"})).unwrap();
        assert_eq!(left.kubernetes, None);
    }

    #[test]
    fn a_bad_block_or_field_is_named() {
        for (body, field) in [
            (json!({"kubernetes": {"cluster": "prod", "rebalance": "evict"}}), "kubernetes.rebalance"),
            (json!({"kubernetes": {"cluster": "prod", "endpoint": "https://k.example"}}), "kubernetes"),
            (json!({"kubernetes": "prod"}), "kubernetes"),
            (json!({"kubernetes": {"cluster": "prod"}, "fallback": "yes"}), "fallback"),
        ] {
            let err = GroupPatch::from_json(body.clone()).unwrap_err();
            assert_eq!(
                (err.status, err.field.as_deref()),
                (StatusCode::BAD_REQUEST, Some(field)),
                "{body}: {}",
                err.message
            );
        }
        let err = GroupPatch::from_json(json!({"colour": "red"})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("colour"));
        assert!(err.message.starts_with("unknown field `colour`, expected one of `rebalance`"), "{}", err.message);
        assert!(err.message.ends_with("`on_demand_prices`, `kubernetes`"), "{}", err.message);
    }
}
