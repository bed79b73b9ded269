//! Google Classroom: the Classroom API v1 and Google OAuth 2.0 for web server apps.
//!
//! This crate speaks to Google only. It knows the Classroom API as Google's discovery
//! document (`classroom.v1.json`) defines it, the OAuth 2.0 authorization code flow with PKCE
//! (RFC 6749, RFC 7636) and refresh and revocation (RFC 7009), and Classroom's error shapes.
//! It holds no web framework and no database: the caller keeps refresh tokens, states and
//! verifiers, and schedules retries from the typed errors.
//!
//! - [`oauth`]: authorization URL, callback, code exchange, refresh, revocation, userinfo.
//! - [`scopes`]: the fewest scopes each feature needs.
//! - [`token`]: the access-token cache with one refresh in flight per refresh token.
//! - [`client`]: courses, rosters, courseWork, grades, add-ons, push registrations.
//! - [`error`]: Google's error answers as typed errors.
//! - [`grade`]: a score scaled to a courseWork's `maxPoints`.

pub mod client;
pub mod error;
pub mod grade;
pub mod ids;
pub mod model;
pub mod oauth;
pub mod scopes;
pub mod secret;
pub mod token;

pub use client::{ClassroomClient, CourseQuery};
pub use error::{ApiError, GoogleError, RpcStatus};
pub use ids::{
    AttachmentId, ClientId, CourseId, CourseWorkId, RegistrationId, SubmissionId, UserId,
};
pub use oauth::{GoogleEndpoints, OAuthClient, OAuthConfig, OAuthError};
pub use secret::{
    AccessToken, AddOnToken, AuthorizationCode, ClientSecret, CsrfState, PkceVerifier, RefreshToken,
};
pub use token::{Credentials, TokenCache};
