//! The end-to-end tests: one binary (one link step), a module per feature. Each test starts its
//! own emulator (moto on a free loopback port) through `spotkeeper_tests::Harness`. The two load
//! tests, `burst` and `faults`, are binaries of their own: they run alone, not beside these.

mod binaries;
mod dashboard;
mod drain;
mod failover;
mod failover_api;
mod fargate;
mod images;
mod instance_state;
mod interruption;
mod kubectl;
mod kubernetes;
mod kubernetes_api;
mod openapi;
mod recovery;
mod registration;
mod savings;
mod secrets;
mod store;
mod template;
mod volumes;
mod webhooks;
