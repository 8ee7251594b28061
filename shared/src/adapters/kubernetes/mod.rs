//! Kubernetes (EKS): what spotkeeper needs to talk to a cluster's API server from outside it.

pub mod token;

pub use token::{EksToken, TokenError, mint_token};
