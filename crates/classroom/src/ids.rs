//! Identifiers of Classroom resources (Classroom API v1 resource names) as newtypes, so that
//! a course id cannot be passed where a courseWork id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }
    };
}

id_type!(
    /// A course (`Course.id`).
    CourseId
);
id_type!(
    /// A courseWork item (`CourseWork.id`); also the `itemId` of add-on calls on courseWork.
    CourseWorkId
);
id_type!(
    /// A student's submission for one courseWork (`StudentSubmission.id`). Add-on attachment
    /// submissions are addressed by the same id.
    SubmissionId
);
id_type!(
    /// A Google user: `UserProfile.id`, which is also the OpenID Connect `sub`.
    UserId
);
id_type!(
    /// An add-on attachment (`AddOnAttachment.id`).
    AttachmentId
);
id_type!(
    /// A push-notification registration (`Registration.registrationId`).
    RegistrationId
);
id_type!(
    /// The OAuth client id of our Google Cloud project (`….apps.googleusercontent.com`).
    ClientId
);
