//! Every request's id: the client's `X-Request-Id` when it is a sane one
//! (1 to 64 of A-Z a-z 0-9 - _ .), else a new UUID; echoed in the answer
//! and recorded in the operator entries the request writes.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

const HEADER: &str = "x-request-id";

#[derive(Clone)]
struct RequestId(String);

fn sane(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The middleware: assigns the id and echoes it.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    Ok(response)
}

/// The request's id, once [`assign`] ran.
pub fn of(req: &HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_sane_ids_are_taken() {
        assert!(super::sane("req-42_a.b"));
        assert!(!super::sane(""));
        assert!(!super::sane("a b"));
        assert!(!super::sane("x\u{7f}"));
        assert!(!super::sane(&"x".repeat(65)));
    }
}
