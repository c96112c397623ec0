//! Applying updates to the managed program: versions side by side, a journaled apply
//! procedure, health checks and automatic rollback, operator policy.
//!
//! One owner: the [`actor::ApplyActor`] owns the installed state, the journal, the history
//! and the supervised program; everyone else holds an [`actor::ApplyHandle`].
//!
//! Every step is recorded durably in the journal BEFORE it is carried out, and every step
//! can be carried out again, so a daemon killed at any point finishes the transition on its
//! next start (see [`transition`] for the rules).
//!
//! Nothing outside `apply` writes the install record, the journal or the history, or starts or
//! stops the managed program: the core and the API ask through `ApplyHandle` (the core also reads
//! the policy and the `versions::dir` paths).

pub mod actor;
pub mod backup;
pub mod chain_home;
pub mod command;
pub mod cosmovisor;
pub mod error;
mod fault;
pub mod health;
pub mod policy;
pub mod record;
pub mod supervisor;
mod transition;
pub mod versions;

pub use actor::{ApplyActor, ApplyHandle, ApplySettings, Target, TransitionRequest};
pub use error::ApplyError;
pub use record::{
    ApplyEvent, ApplyView, Applying, HistoryEntry, Installed, Kind, Origin, Outcome, Step,
    VersionRef,
};
