//! `movrek retrain`: the retraining loop a `CronJob` runs (issue 12). Decisions are pure and
//! carry the tests: [`merge`] appends the events to the previous data set and holds out new
//! ratings, [`gate`] judges the data and then the candidate against stable, [`score`]
//! measures one model per group, [`state`] is what a published version records so the next
//! run knows where to start; [`report`] prints a published fairness report. [`handoff`]
//! gives the version to the release: a server-side apply, or a Git commit ([`gitops`]) of
//! the manifest edited in place ([`manifest`]).

pub mod cli;
pub mod events;
pub mod gate;
pub mod gitops;
pub mod handoff;
pub mod manifest;
pub mod merge;
pub mod notify;
pub mod report;
pub mod score;
pub mod state;
