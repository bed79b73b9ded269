//! Test kit for lmsbridge: a simulated LMS, a simulated Google Classroom, and a scripted
//! browser.
//!
//! [`SimulatedLms`] is an LTI 1.3 platform with Assignment and Grade Services and Names and
//! Role Provisioning Services that signs, verifies and checks for real, so that a tool that
//! works against it has done every step a real platform demands. [`Browser`] walks a launch
//! through it the way a person's browser would. Integration tests use both over loopback;
//! the `lmsbridge demo` command mounts the LMS next to the tool. [`SimulatedClassroom`] is a
//! Google Classroom API and OAuth server that refuses any request Google's published discovery
//! document does not allow.

pub mod browser;
pub mod classroom;
pub mod html;
pub mod moodle_ws;
mod platform;

pub use browser::{Browser, BrowserError, Page};
pub use classroom::{SimulatedClassroom, SpawnedClassroom};
pub use html::{Form, Link};
pub use moodle_ws::SpawnedMoodleWs;
pub use platform::{
    CanvasBucket, FaultKind, Faults, GradebookEntry, LmsBehaviour, LmsConfig, LmsError, RateLimit,
    RecordedScore, RegistrationStyle, RejectReason, ScoreRequestRecord, SimCourse, SimLineItem,
    SimResource, SimUser, SimulatedLms, SpawnedLms, Stats, ToolRegistration,
};
