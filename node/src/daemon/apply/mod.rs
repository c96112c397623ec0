//! Applying updates to the managed program: versions side by side, a journaled apply
//! procedure, health checks and automatic rollback, operator policy.
//!
//! Every step is recorded durably in the journal BEFORE it is carried out, and every step
//! can be carried out again, so a daemon killed at any point resumes (or rolls back) to a
//! consistent state on its next start (see [`updater::Updater::recover`]).

pub mod backup;
pub mod health;
pub mod policy;
pub mod supervisor;
pub mod updater;
pub mod versions;
