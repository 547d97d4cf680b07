//! The migration workflow around replication: checks before it starts (and, with the
//! cutover issue, the cutover and failback themselves).

pub mod always;
pub mod constraints;
pub mod logins;
pub mod precheck;
pub mod privileges;
pub mod roles;
