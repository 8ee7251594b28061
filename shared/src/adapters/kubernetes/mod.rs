//! Kubernetes (EKS): what spotkeeper needs to talk to a cluster's API server from outside it.

pub mod client;
pub mod cluster;
pub mod limit;
pub mod token;
pub mod workloads;

pub use client::{Cordon, DeleteOutcome, EvictionOutcome, INTERRUPTED_TAINT, KubeClient, KubeError, ReadNode};
pub use cluster::{Clusters, ConnectError};
pub use limit::Limiter;
pub use token::{EksToken, TokenError, mint_token};
pub use workloads::Patched;
