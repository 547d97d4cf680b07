//! Integration tests against real PostgreSQL clusters started by `support`.
//! One test binary for every area keeps link time down.

mod support;

mod atomic;
mod bad_input;
mod batches;
mod capture;
mod convergence;
mod copy;
mod crash;
mod cross_version;
mod cutover;
mod daemon;
mod deploy;
mod drift;
mod faults;
mod fence;
mod fleet;
mod least_privilege;
mod multimaster;
mod operator;
mod partitions;
mod pickup;
mod plan;
mod precheck;
mod roles;
mod roundtrip;
mod secrets;
mod sequences;
mod service;
mod setup;
mod table_errors;
mod takeover;
mod tls;
mod truncate;
mod verify;
mod wide_rows;
