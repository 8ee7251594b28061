//! Request bodies: strict (an unknown field is an error naming it) and checked for range before
//! anything is looked up or written.

mod checks;
#[cfg(test)]
mod fuzzing;
mod patch;
mod register;
mod strict;

pub(crate) use checks::check_instance_id;
pub(crate) use patch::{GroupPatch, apply as apply_patch};
pub(crate) use register::{AdoptBody, Registration};
pub(crate) use strict::{MAX_BODY, Raw, Strict, StrictQuery, parse};
