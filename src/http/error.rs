//! HTTP errors in one place: each variant maps to a status and a JSON body
//! `{"error": kind, "message": …}`. Causes are logged, not echoed.

use actix_web::http::StatusCode;
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
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::Incomplete(_) => "incomplete",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests(_) => "too_many_requests",
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
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Incomplete(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
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

/// Malformed paths, queries and bodies answer 400 with the same JSON shape.
pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(1 << 20)
        .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into())
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into())
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into())
}
