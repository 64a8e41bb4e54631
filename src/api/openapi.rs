//! The API contract: an OpenAPI 3 document collected from the handlers'
//! `#[utoipa::path]` annotations as they are registered (see `server`),
//! served at `/openapi.json`, with Swagger UI at `/docs`. The UI's files
//! are vendored (`assets/swagger-ui`), so the page needs no network.

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};

use crate::api::error::ErrorBody;

/// Title, version and the bearer scheme; paths are added by registration.
pub fn base() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("custodian")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Auditable Kafka stream processor: audit trail, dead letters, replay, read API.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                // Named by the shared error response sets (`responses.rs`).
                .schema_from::<ErrorBody>()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                )
                .build(),
        ))
        .build()
}

const BUNDLE: &[u8] = include_bytes!("assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("assets/swagger-ui/swagger-ui.css");
const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>custodian API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({ url: "/openapi.json", dom_id: "#ui" });</script>
</body></html>"##;

/// The paths served here (for the `Allow` table).
pub const PATHS: &[&str] = &[
    "/openapi.json",
    "/docs",
    "/docs/swagger-ui-bundle.js",
    "/docs/swagger-ui.css",
];

/// Routes for the document and the UI.
pub fn serve(api: OpenApi) -> impl FnOnce(&mut web::ServiceConfig) {
    let json = api
        .to_pretty_json()
        .unwrap_or_else(|e| format!(r#"{{"error": "cannot render the document: {e}"}}"#));
    move |cfg: &mut web::ServiceConfig| {
        cfg.route(
            PATHS[0],
            web::get().to(move || {
                let json = json.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(json)
                }
            }),
        )
        .route(
            PATHS[1],
            web::get().to(|| async { HttpResponse::Ok().content_type("text/html").body(PAGE) }),
        )
        .route(
            PATHS[2],
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/javascript")
                    .body(BUNDLE)
            }),
        )
        .route(
            PATHS[3],
            web::get().to(|| async { HttpResponse::Ok().content_type("text/css").body(CSS) }),
        );
    }
}
