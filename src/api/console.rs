//! The dead-letter console at `/ui`: one self-contained page (no build step,
//! no network beyond custodian's own API). It lists dead letters with
//! filters, shows a message's lifecycle, replays and discards (with the
//! operator's token and a reason), searches transactions, and shows live
//! counters from `/metrics`.

use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("assets/console.html");

/// The paths served here (for the `Allow` table).
pub const PATHS: &[&str] = &["/ui"];

pub fn serve(cfg: &mut web::ServiceConfig) {
    cfg.route(
        PATHS[0],
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                // The page only talks to this origin.
                .insert_header((
                    "Content-Security-Policy",
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
                ))
                .body(PAGE)
        }),
    );
}
