//! One module per command, each with its arguments and its `run`. The embedded
//! cluster (`run`, `inspect`), the cluster's processes (`cluster_init`, `jobmanager`,
//! `taskmanager`), the REST clients (`submit`, `list`, `status`, `cancel`,
//! `savepoint`, `swap`, `logs`, `deploy`), the admin's `tenant`, the project scaffold (`new`)
//! and the seed job's input (`clicks`).

pub mod cancel;
pub mod clicks;
pub mod cluster_init;
pub mod deploy;
pub mod inspect;
pub mod jobmanager;
pub mod list;
pub mod logs;
pub mod new;
pub mod run;
pub mod savepoint;
pub mod status;
pub mod submit;
pub mod swap;
pub mod taskmanager;
pub mod tenant;
