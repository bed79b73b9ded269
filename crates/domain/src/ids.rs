//! Identifier newtypes, so that a `PersonId` can never be passed where a `ContextId` belongs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered identifier.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            /// Wraps an identifier read from storage or from a request.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// The underlying UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A customer of lmsbridge: one product installation, its platforms and its data.
    TenantId
);
id_type!(
    /// One registration with an LMS: an LTI (issuer, client_id) pair or a Google OAuth client.
    PlatformId
);
id_type!(
    /// An LTI deployment of a registration (Canvas creates one per install).
    DeploymentId
);
id_type!(
    /// A person as known to one platform of one tenant.
    PersonId
);
id_type!(
    /// A course or other context in which people are enrolled.
    ContextId
);
id_type!(
    /// An activity placed in a context (an LTI resource link, a Classroom attachment).
    ResourceId
);
id_type!(
    /// A gradebook column: an AGS line item or a Classroom courseWork.
    GradeTargetId
);
id_type!(
    /// A score accepted by the product API and queued for delivery.
    ScoreId
);
id_type!(
    /// One validated launch, handed to the product.
    LaunchId
);
