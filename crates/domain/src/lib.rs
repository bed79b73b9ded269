//! The platform abstraction of lmsbridge.
//!
//! Everything the product sees is expressed here, in terms that do not depend on which LMS a
//! school runs: tenants own platforms (a Canvas developer key, a Moodle tool registration, a
//! Google Classroom OAuth client), people, contexts (courses), resources (activities),
//! enrolments and grade targets. Scores carry the actor who set them. The [`LmsAdapter`] trait
//! is the one seam through which grades and rosters cross to a platform; LTI Advantage and
//! Google Classroom each implement it. This crate performs no I/O.

mod adapter;
mod ids;
mod model;
mod score;

pub use adapter::{
    DeliveryError, DeliveryReceipt, LmsAdapter, PlatformEndpoints, RosterMember, RosterPage,
    RosterRequest, ScoreDelivery, TargetLocation,
};
pub use adapter::{
    GradebookAdapter, LineItemChanges, LineItemFields, LineItemsRequest, PlatformLineItem,
    PlatformResult, ResultsPage, ResultsRequest,
};
pub use ids::*;
pub use model::*;
pub use score::*;
