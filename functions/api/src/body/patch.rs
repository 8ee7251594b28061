//! `PATCH /groups/{name}`: the policy patch (its rules are `spotkeeper::decisions::policy`).

use spotkeeper::decisions::policy::{self, Refusal};
use spotkeeper::domain::{Group, Policy, PolicyPatch};

use crate::reply::ApiError;

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
    use crate::body::strict::from_value;

    proptest! {
        #![proptest_config(fuzzing::config())]

        #[test]
        fn policy_patches_never_panic(value in json()) {
            let group = Group::new(
                GroupName::try_from("web".to_string()).unwrap(),
                GroupKind::Asg(AsgSpec { asg_name: "workers".into() }),
                chrono::Utc::now(),
            );
            match from_value::<PolicyPatch>(value) {
                Ok(patch) => {
                    if let Err(err) = apply(patch, &group) {
                        prop_assert!(explained(&err));
                    }
                }
                Err(err) => prop_assert!(explained(&err)),
            }
        }
    }
}
