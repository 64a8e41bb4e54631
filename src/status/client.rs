//! `custodian status` asks a running instance for its `/status` (with the
//! configured API token) and says plainly why when it cannot.

use secrecy::{ExposeSecret, SecretString};

use super::report::StatusReport;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no http.api_token is configured (set it, or CUSTODIAN_HTTP__API_TOKEN)")]
    NoToken,
    #[error("cannot reach custodian at {url}: is it running? ({reason})")]
    Unreachable { url: String, reason: String },
    #[error("custodian at {url} refused the token (HTTP {status}): check http.api_token / CUSTODIAN_HTTP__API_TOKEN")]
    Refused { url: String, status: u16 },
    #[error("custodian at {url} answered HTTP {status}: {body}")]
    Failed {
        url: String,
        status: u16,
        body: String,
    },
    #[error("custodian at {url} answered something that is not a status document: {reason}")]
    Malformed { url: String, reason: String },
}

/// The base URL for `http.bind`: a wildcard address means this host.
pub fn base_url(bind: &str) -> String {
    let bind = bind
        .replacen("0.0.0.0:", "127.0.0.1:", 1)
        .replacen("[::]:", "[::1]:", 1);
    format!("http://{bind}")
}

/// `GET {base}/status`, bounded by `timeout`.
pub async fn fetch(
    base: &str,
    token: Option<&SecretString>,
    timeout: std::time::Duration,
) -> Result<StatusReport, ClientError> {
    let token = token.ok_or(ClientError::NoToken)?;
    let url = format!("{}/status", base.trim_end_matches('/'));
    let unreachable = |e: reqwest::Error| ClientError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(unreachable)?;
    let response = client
        .get(&url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(unreachable)?;
    match status {
        200 => serde_json::from_str(&body).map_err(|e| ClientError::Malformed {
            url,
            reason: e.to_string(),
        }),
        401 | 403 => Err(ClientError::Refused { url, status }),
        _ => Err(ClientError::Failed {
            url,
            status,
            body: crate::text::clip(&body).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wildcard_bind_means_this_host() {
        assert_eq!(super::base_url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(super::base_url("[::]:80"), "http://[::1]:80");
        assert_eq!(super::base_url("10.0.0.5:80"), "http://10.0.0.5:80");
    }
}
