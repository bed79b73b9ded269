//! [`domain::LmsAdapter`] implementations.
//!
//! `lti` speaks LTI Advantage to Canvas, Moodle and other LTI 1.3 platforms; `classroom`
//! speaks the Google Classroom API with teachers' offline grants.

mod classroom_adapter;
mod classroom_addon;
mod lti_adapter;

pub use classroom_adapter::{
    ClassroomAdapter, ClassroomGrants, CourseGrant, CourseWorkGrant, GradeField, RosterError,
    course_roster_url, map_error as classroom_delivery_error,
};
pub use classroom_addon::{AddOnGrant, AddOnGrants, AddOnTarget};
pub use lti_adapter::{LtiAdapter, SigningKeySource, roles as lti_roles};
