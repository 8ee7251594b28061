//! The end-to-end tests: one binary (one link step), a module per feature. Each test starts its
//! own emulator (moto on a free loopback port) through `spotkeeper_tests::Harness`.

mod binaries;
mod burst;
mod dashboard;
mod faults;
mod images;
mod instance_state;
mod interruption;
mod openapi;
mod recovery;
mod registration;
mod savings;
mod secrets;
mod store;
mod volumes;
mod webhooks;
