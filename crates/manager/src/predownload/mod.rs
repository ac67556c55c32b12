//! Pre-downloading a rollout's new images: before a workload updates its pods, ImagePullJobs
//! pull the update revision's new images onto the nodes of the pods still to update, in the
//! order the workload will reach them (OpenKruise's pre-download for in-place update, §5 of
//! the reference, extended to apps/v1 kinds).
//!
//! This module is the pure decision layer, no I/O:
//! - [`model`]: the one view of a rolling workload ([`Rollout`], [`Revision`], [`PodView`])
//!   and the label and annotation names;
//! - [`adapters`]: one adapter per kind, from the workload's and its revisions' JSON to a
//!   [`Rollout`], reading OpenKruise's kinds where their version keeps each field ([`layout`]);
//! - [`decide`](mod@decide): jobs to create and delete, and the mark for the update revision.
//!
//! And the I/O around it: [`store`] (the watched objects, indexed by controlling uid) and
//! [`controller`] (watches, CRD discovery, reconciling what an event touched, writes).

pub mod adapters;
pub mod controller;
pub mod decide;
mod fields;
pub mod layout;
pub mod model;
pub mod store;

pub use adapters::{adapt, kind_of, AdapterError};
pub use decide::{
    decide, job_name, mark_patch, new_images, update_order, Decision, ExistingJob, Ignore, Mark,
    Outcome,
};
pub use model::{revision_label_value, Kind, PodView, Revision, Rollout};

#[cfg(test)]
mod tests;
