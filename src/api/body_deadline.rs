//! A deadline on reading a request body (`http.body_timeout`). actix-http
//! times the request head but not the body, so a client that sends headers
//! and then stalls would hold its connection (and a handler) open for as
//! long as it likes. The body stream is wrapped: past the deadline it ends
//! with an error, and the answer becomes a 408 that closes the connection.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures::Stream;
use tokio::time::Sleep;

use crate::api::error::ApiError;

/// The request body, cut off at a deadline.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<Sleep>>,
    /// Set when the deadline cut the body off; read by [`limit`].
    expired: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received in time",
            )))));
        }
        Poll::Pending
    }
}

/// `http.body_timeout`, as app data for [`limit`].
#[derive(Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// The middleware: wraps the body, and answers 408 if the deadline hit.
pub async fn limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let timeout = req.app_data::<BodyTimeout>().map_or(DEFAULT, |t| t.0);
    let expired = Rc::new(Cell::new(false));
    let body: BoxedBody = Box::pin(Deadline {
        inner: req.take_payload(),
        sleep: Box::pin(tokio::time::sleep(timeout)),
        expired: expired.clone(),
    });
    req.set_payload(Payload::from(body));
    let response = next.call(req).await?;
    if !expired.get() {
        return Ok(response.map_into_left_body());
    }
    let (request, _) = response.into_parts();
    let answer = ApiError::RequestTimeout(format!(
        "the request body did not arrive within {}s (http.body_timeout)",
        timeout.as_secs_f64()
    ));
    Ok(ServiceResponse::from_err(answer, request).map_into_right_body())
}

/// Used only if the server was built without a [`BodyTimeout`].
const DEFAULT: Duration = Duration::from_secs(10);

type BoxedBody = Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>;
