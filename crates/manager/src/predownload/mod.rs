//! Pre-downloading a rollout's new images: before a workload updates its pods, ImagePullJobs
//! pull the update revision's new images onto the nodes of the pods still to update, in the
//! order the workload will reach them (OpenKruise's pre-download for in-place update, §5 of
//! the reference, extended to apps/v1 kinds).
//!
//! This module is the pure decision layer, no I/O:
//! - [`model`]: the one view of a rolling workload ([`Rollout`], [`Revision`], [`PodView`])
//!   and the label and annotation names;
//! - [`adapters`]: one adapter per kind, from the workload's JSON and its revisions (decoded
//!   by [`revisions`]) to a [`Rollout`], reading OpenKruise's kinds where their version keeps
//!   each field ([`layout`]);
//! - [`decide`](mod@decide): jobs to create and delete, and the mark for the update revision.
//!
//! And the I/O around it: [`store`] (what the watches decoded, indexed by controlling uid),
//! `watches` (the watches and CRD discovery), [`controller`] (reconciling what an event
//! touched) and `actions` (carrying out a workload's writes in a task of its own).

mod actions;
pub mod adapters;
pub mod controller;
pub mod decide;
mod fields;
pub mod layout;
pub mod model;
pub mod revisions;
pub mod store;
mod watches;

pub use adapters::{adapt, adapt_decoded, kind_of, AdapterError};
pub use decide::{
    decide, job_name, mark_patch, new_images, update_order, Decision, ExistingJob, Ignore, Mark,
    Outcome,
};
pub use model::{revision_label_value, Kind, PodView, Revision, Rollout};

#[cfg(test)]
mod tests;
