//! The migration workflow around replication: checks before it starts, and the
//! cutover and failback themselves (`switch`).

pub mod add_sync;
pub mod always;
pub mod constraints;
pub mod logins;
pub mod precheck;
pub mod privileges;
pub mod roles;
pub mod switch;
