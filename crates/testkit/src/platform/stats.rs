//! Counters of what the simulated LMS was asked and what it refused, so a test can assert
//! "the tool asked for one token, not twenty" or "the stale score was refused as stale".

use serde::Serialize;
use std::collections::BTreeMap;

/// Why the simulated LMS refused a request. Each variant is one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectReason {
    // The launch link a student clicks.
    UnknownUser,
    UnknownResource,
    // The OIDC authentication request (Security Framework §5.1.1.2).
    UnknownClient,
    RedirectUriMismatch,
    DuplicateParameter,
    ScopeNotOpenid,
    ResponseTypeNotIdToken,
    ResponseModeNotFormPost,
    PromptNotNone,
    NonceMissing,
    StateMissing,
    MessageHintUnknown,
    LoginHintMismatch,
    // The token endpoint (Security Framework §4.1, RFC 7523).
    TokenContentType,
    GrantType,
    AssertionMissing,
    AssertionType,
    AssertionMalformed,
    AssertionKey,
    AssertionSignature,
    AssertionIssuer,
    AssertionAudience,
    AssertionExpired,
    AssertionIssuedInFuture,
    AssertionReplayed,
    NoScopeGranted,
    // Bearer tokens on service calls (RFC 6750).
    TokenMissing,
    TokenUnknown,
    TokenExpired,
    InsufficientScope,
    // Assignment and Grade Services and NRPS requests.
    UnknownCourse,
    UnknownLineItem,
    MediaType,
    NotAcceptable,
    MalformedBody,
    InvalidLineItem,
    InvalidPaging,
    UserIdMissing,
    UserNotLearner,
    InvalidTimestamp,
    InvalidProgress,
    InvalidScoreValues,
    StaleTimestamp,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Requests to the token endpoint, granted or not.
    pub token_requests: u64,
    pub tokens_issued: u64,
    /// Score posts received, including the ones failed by fault injection.
    pub score_posts: u64,
    pub scores_accepted: u64,
    pub nrps_requests: u64,
    /// Responses replaced by an injected fault.
    pub faults_injected: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl Stats {
    /// How many requests were refused for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }

    /// How many requests were refused for any reason.
    pub fn total_rejections(&self) -> u64 {
        self.rejected.values().sum()
    }
}
