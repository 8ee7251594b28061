//! Adapters: thin wrappers over what lies outside — AWS, the table, SNS and Slack, outgoing HTTP.
//! They translate, classify errors and retry transport faults; they decide nothing, and import
//! only the domain.

pub mod aws;
pub mod kubernetes;
pub mod notify;
pub mod outbound;
pub mod store;
pub mod webhooks;
