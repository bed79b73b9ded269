//! Secrets: values that must never reach a log line, an error message or a page.
//!
//! Each type prints `[redacted]` under `Debug`, has no `Display`, and gives its value only
//! through an explicit `.secret()`.

use std::fmt;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself, for the one place that must send or store it.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// The OAuth client secret of our Google Cloud project.
    ClientSecret
);
secret_type!(
    /// A long-lived refresh token: offline access to one teacher's Classroom data.
    RefreshToken
);
secret_type!(
    /// A short-lived bearer token for the Classroom API.
    AccessToken
);
secret_type!(
    /// The one-time authorization code the consent redirect carries (RFC 6749 §4.1.2).
    AuthorizationCode
);
secret_type!(
    /// The PKCE `code_verifier` (RFC 7636 §4.1), kept by us between the redirect and the code
    /// exchange.
    PkceVerifier
);
secret_type!(
    /// The CSRF `state` bound to one authorization request (RFC 6749 §10.12).
    CsrfState
);
secret_type!(
    /// The `addOnToken` Classroom appends to an add-on iframe URL: it authorises calls about
    /// that one post for a short while.
    AddOnToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let t = RefreshToken::new("1//0g-very-secret");
        assert_eq!(format!("{t:?}"), "RefreshToken([redacted])");
        assert!(!format!("{:?}", ClientSecret::new("GOCSPX-abc")).contains("GOCSPX"));
        assert_eq!(t.secret(), "1//0g-very-secret");
    }
}
