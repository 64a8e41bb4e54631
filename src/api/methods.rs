//! Methods at the edge of routing: `HEAD` is answered wherever `GET` is, and
//! a known path asked with a method it does not take answers 405 with an
//! `Allow` header (an unknown path stays a 404). The table of paths and
//! methods is read from the OpenAPI document, which registration builds, plus
//! the few undocumented GET pages (console, docs), so it cannot drift.

use actix_web::body::MessageBody;
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::OpenApi;

use crate::api::error::ApiError;

/// Every routed path pattern and the methods it answers.
pub struct Allowed(Vec<(ResourceDef, Vec<&'static str>)>);

impl Allowed {
    /// From the document's operations, plus `get_only` paths.
    pub fn new(api: &OpenApi, get_only: &[&str]) -> Allowed {
        let mut table: Vec<(ResourceDef, Vec<&'static str>)> = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, present)| present.then_some(m))
                .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        table.extend(
            get_only
                .iter()
                .map(|path| (ResourceDef::new(*path), vec!["GET"])),
        );
        Allowed(table)
    }

    /// The `Allow` value for `path` (with HEAD beside GET), if it is routed.
    fn allow(&self, path: &str) -> Option<String> {
        let mut methods: Vec<&str> = self
            .0
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        if methods.is_empty() {
            return None;
        }
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.sort_unstable();
        methods.dedup();
        Some(methods.join(", "))
    }
}

/// What answers when no route matched: 405 with `Allow` for a known path,
/// otherwise a JSON 404.
pub async fn unrouted(
    req: HttpRequest,
    allowed: web::Data<Allowed>,
) -> Result<HttpResponse, ApiError> {
    match allowed.allow(req.path()) {
        Some(allow) => Err(ApiError::MethodNotAllowed(allow)),
        None => Err(ApiError::NotFound("no such endpoint".into())),
    }
}

/// Routes a `HEAD` as its `GET`. The HTTP/1 codec remembers the request was
/// a `HEAD` and sends the headers (with the body's length) but no body.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
    use utoipa::openapi::OpenApiBuilder;

    #[test]
    fn allow_lists_every_method_of_a_matching_path() {
        let op = || OperationBuilder::new().build();
        let mut item = PathItem::new(HttpMethod::Get, op());
        item.delete = Some(op());
        let api = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path("/dlq/{message_id}", item)
                    .path("/replay", PathItem::new(HttpMethod::Post, op())),
            )
            .build();
        let allowed = Allowed::new(&api, &["/ui"]);
        assert_eq!(
            allowed.allow("/dlq/abc").as_deref(),
            Some("DELETE, GET, HEAD")
        );
        assert_eq!(allowed.allow("/replay").as_deref(), Some("POST"));
        assert_eq!(allowed.allow("/ui").as_deref(), Some("GET, HEAD"));
        assert_eq!(allowed.allow("/dlq/abc/more"), None);
        assert_eq!(allowed.allow("/nowhere"), None);
    }
}
