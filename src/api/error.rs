//! HTTP errors in one place: each variant maps to a status and a JSON body
//! `{"error": kind, "message": …}`. Causes are logged, not echoed.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// The path exists, the method does not; carries the `Allow` list.
    #[error("this endpoint answers {0}")]
    MethodNotAllowed(String),
    /// The client did not send its body within `http.body_timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request conflicts with work in progress.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but the stored data cannot be used.
    #[error("{0}")]
    Unprocessable(String),
    /// A dependency answered with a failure (Kafka refused a publish).
    #[error("{0}")]
    BadGateway(String),
    /// Part of an operation happened; the message says which (503).
    #[error("{0}")]
    Incomplete(String),
    /// A dependency (PostgreSQL, Redis) does not answer; try again later.
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// Too many requests of this kind at once; try again shortly (429).
    #[error("{0}")]
    TooManyRequests(String),
    /// The request target is longer than any endpoint reads (414).
    #[error("{0}")]
    UriTooLong(String),
    /// The request's headers are larger than any endpoint reads (431).
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable kind: `bad_request`, `unauthorized`, `not_found`, …
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    fn kind(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::Incomplete(_) => "incomplete",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::HeadersTooLarge(_) => "request_header_fields_too_large",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Incomplete(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                response.insert_header((header::ALLOW, allow.as_str()));
            }
            // The rest of the body may still be on its way: do not wait for
            // it on this connection.
            ApiError::RequestTimeout(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UriTooLong(_)
            | ApiError::HeadersTooLarge(_) => {
                response.force_close();
            }
            _ => {}
        }
        if matches!(self, ApiError::TooManyRequests(_)) {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(serde_json::json!({ "error": self.kind(), "message": self.to_string() }))
    }
}

impl From<crate::dlq::replay::DlqError> for ApiError {
    fn from(e: crate::dlq::replay::DlqError) -> Self {
        use crate::dlq::replay::DlqError as D;
        match e {
            D::NotFound(_) => ApiError::NotFound(e.to_string()),
            D::Busy(_) | D::Changed(_) => ApiError::Conflict(e.to_string()),
            D::Invalid(_) => ApiError::BadRequest(e.to_string()),
            D::Corrupt { .. } => ApiError::Unprocessable(e.to_string()),
            D::Publish(_) => ApiError::BadGateway(e.to_string()),
            D::Incomplete(_) => ApiError::Incomplete(e.to_string()),
            D::Overloaded => ApiError::TooManyRequests(e.to_string()),
            D::AuditRefused(ref cause) => {
                ApiError::Internal(anyhow::anyhow!("audit row refused: {cause}"))
            }
            D::Unavailable {
                dependency,
                ref error,
            } => {
                tracing::warn!(dependency, error = %error, "request could not complete");
                ApiError::Unavailable(dependency)
            }
        }
    }
}

/// Largest JSON body the operator endpoints take.
pub const JSON_LIMIT: usize = 1 << 20;

/// Malformed paths, queries and bodies answer 400 with the same JSON shape;
/// a body over [`JSON_LIMIT`] answers 413.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(JSON_LIMIT)
        .error_handler(|err, _| {
            match err {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Payload(PayloadError::Overflow) => {
                    ApiError::PayloadTooLarge(err.to_string())
                }
                _ => ApiError::BadRequest(err.to_string()),
            }
            .into()
        })
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into())
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into())
}

/// Answers that actix itself makes (a raw body over its limit, a broken
/// chunked encoding) come as text; this gives every 4xx and 5xx the JSON
/// shape above, keeping the status and its headers (`Allow`, …).
pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let response = next.call(req).await?;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(response.map_into_left_body());
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let kind = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    // A client error's text says what was wrong with the request; a server
    // error's text may say things about the server, so it is not echoed.
    let message = match response.response().error() {
        Some(e) if status.is_client_error() => e.to_string(),
        _ => reason.to_owned(),
    };
    let body = serde_json::json!({ "error": kind, "message": message }).to_string();
    Ok(response.map_body(|head, _| {
        head.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        EitherBody::right(BoxBody::new(body))
    }))
}

/// Longest request target (path and query) custodian reads: every
/// endpoint's is far shorter. actix itself refuses one of 64 KiB or more
/// (the `http` crate's limit) with a bare 400 before any of this code runs.
pub const MAX_URI_BYTES: usize = 16 << 10;
/// Largest header section (names and values) custodian reads. actix itself
/// refuses a request head of 128 KiB or more, or of more than 96 headers,
/// with a bare 431 before any of this code runs.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// Refuses a request head larger than any endpoint reads with 414 or 431 in
/// the JSON shape, well below the limits where actix answers on its own
/// with an empty body (see [`MAX_URI_BYTES`], [`MAX_HEADER_BYTES`]).
pub async fn head_limits(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let refused = if uri > MAX_URI_BYTES {
        Some(ApiError::UriTooLong(format!(
            "the request target is {uri} bytes, over {MAX_URI_BYTES}"
        )))
    } else if headers > MAX_HEADER_BYTES {
        Some(ApiError::HeadersTooLarge(format!(
            "the headers are {headers} bytes, over {MAX_HEADER_BYTES}"
        )))
    } else {
        None
    };
    match refused {
        Some(error) => Ok(req.error_response(error).map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}
