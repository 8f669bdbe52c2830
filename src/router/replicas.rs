//! The `replicas` provider: no routing object. The shared `<name>` Service selects the pods
//! of both tracks, so the canary's share is its share of ready pods, which the plan sets
//! with [`crate::plan::canary_replicas`].

use super::TrafficRouter;
use crate::children::{Child, ChildError};
use crate::crd::RecommenderRelease;

/// Weight by replica counts behind the shared Service.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replicas;

impl TrafficRouter for Replicas {
    fn routes(
        &self,
        _release: &RecommenderRelease,
        _weight: i32,
    ) -> Result<Vec<Child>, ChildError> {
        Ok(Vec::new())
    }
}
