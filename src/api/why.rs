//! The body of an operator action carries why (`reason`), never who: the
//! operator is the holder of the request's token, so a `requested_by` is
//! refused with a 400 that says so.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::dlq::replay::Request;
use crate::identity::Actor;

/// Why a `requested_by` is refused.
pub const NOT_FROM_THE_BODY: &str = "requested_by: not accepted; who asks is the holder of the \
    token this request carries, and their name, credential, channel, address and request id \
    are recorded from it";

/// Refuses a body that names who asks.
pub fn no_requested_by(requested_by: &Option<IgnoredAny>) -> Result<(), ApiError> {
    match requested_by {
        Some(_) => Err(ApiError::BadRequest(NOT_FROM_THE_BODY.into())),
        None => Ok(()),
    }
}

/// `{"reason": …}`: why; recorded in the audit trail.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Why {
    /// Why; recorded in the audit trail. Not blank; no control characters
    /// but line breaks and tabs.
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub reason: String,
    /// Refused (400): who asks comes from the token.
    #[serde(default)]
    #[schema(ignore)]
    pub requested_by: Option<IgnoredAny>,
}

impl Why {
    /// The request of `actor`, the token's holder.
    pub fn of(self, actor: Actor) -> Result<Request, ApiError> {
        no_requested_by(&self.requested_by)?;
        Ok(Request {
            actor,
            reason: self.reason,
            approver: None,
        })
    }
}
