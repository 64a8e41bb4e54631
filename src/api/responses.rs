//! The error answers operations share, as OpenAPI response sets, so each
//! operation's annotation lists every status it can give without repeating
//! a dozen lines. Every one has the [`ErrorBody`](crate::api::error::ErrorBody)
//! shape.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::IntoResponses;

type Responses = BTreeMap<String, RefOr<utoipa::openapi::Response>>;

fn errors(list: &[(&str, &str)]) -> Responses {
    list.iter()
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// Every operation behind the token: bad input, no token, wrong token.
pub struct Guarded;

impl IntoResponses for Guarded {
    fn responses() -> Responses {
        errors(&[
            (
                "400",
                "Malformed input: path, query or body (the message names the field)",
            ),
            ("401", "No token (`Authorization: Bearer <token>`)"),
            ("403", "Wrong token, or no http.api_token configured"),
        ])
    }
}

/// Every operation that reads a body.
pub struct WithBody;

impl IntoResponses for WithBody {
    fn responses() -> Responses {
        errors(&[
            (
                "408",
                "The body did not arrive within http.body_timeout; the connection is closed",
            ),
            (
                "413",
                "The body is over the limit (1 MiB of JSON; 256 KiB for /produce)",
            ),
        ])
    }
}

/// Operations on the dead-letter queue in Redis.
pub struct RedisBacked;

impl IntoResponses for RedisBacked {
    fn responses() -> Responses {
        errors(&[(
            "503",
            "Redis (or PostgreSQL, for the audit) does not answer, or the operation only partly happened (the message says which)",
        )])
    }
}

/// Operations that read PostgreSQL.
pub struct PostgresBacked;

impl IntoResponses for PostgresBacked {
    fn responses() -> Responses {
        errors(&[("503", "PostgreSQL does not answer")])
    }
}
