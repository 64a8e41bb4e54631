//! A Confluent-compatible schema registry (Confluent, Karapace, Apicurio,
//! Redpanda): schemas fetched by id once, kept in a bounded cache, each
//! compiled for its format; subjects registered for `produce`. An
//! unreachable registry is an outage (the caller waits); an id it does
//! not know is the record's fault (`unknown_schema`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::schema::{Compiled, Kind, Schema};

/// Why a schema could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The registry answered: no such id (the record's fault).
    #[error("schema id {0} is unknown to the registry")]
    Unknown(u32),
    /// The registry's schema does not compile (the record's fault: its id
    /// names a schema custodian cannot read).
    #[error("schema id {id} cannot be read: {reason}")]
    Unreadable { id: u32, reason: String },
    /// The registry answered: no such subject (a setting's fault).
    #[error("subject {0} has no schema in the registry")]
    NoSubject(String),
    /// Down, slow or answering 5xx: wait and ask again.
    #[error("the schema registry is unavailable: {0}")]
    Unavailable(String),
}

/// Where the registry is, and how to reach it.
#[derive(Clone)]
pub struct Endpoint {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub timeout: Duration,
}

impl Endpoint {
    /// The `schema_registry` section's registry, if it names one.
    pub fn configured(settings: &crate::config::SchemaRegistrySettings) -> Option<Endpoint> {
        Some(Endpoint {
            url: settings.url.clone()?,
            username: settings.username.clone(),
            password: settings.password.clone(),
            timeout: settings.timeout,
        })
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The registry's client and its cache of compiled schemas.
pub struct Registry {
    endpoint: Endpoint,
    client: reqwest::Client,
    cache: Mutex<Cache>,
}

/// Bounded: past `capacity` the oldest entry goes.
struct Cache {
    capacity: usize,
    by_id: HashMap<u32, Result<Arc<Schema>, FetchError>>,
    order: VecDeque<u32>,
}

impl Cache {
    fn insert(&mut self, id: u32, entry: Result<Arc<Schema>, FetchError>) {
        if self.by_id.insert(id, entry).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

#[derive(Deserialize)]
struct ById {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct SubjectVersion {
    subject: String,
    version: i32,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

impl Registry {
    pub fn new(endpoint: Endpoint, capacity: usize) -> Result<Registry, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout)
            .build()?;
        Ok(Registry {
            endpoint,
            client,
            cache: Mutex::new(Cache {
                capacity: capacity.max(1),
                by_id: HashMap::new(),
                order: VecDeque::new(),
            }),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.endpoint.url.trim_end_matches('/'));
        let request = self.client.request(method, url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        match &self.endpoint.username {
            Some(user) => request.basic_auth(
                user,
                self.endpoint.password.as_ref().map(|p| p.expose_secret()),
            ),
            None => request,
        }
    }

    /// The schema of `id` if it is cached (a miss, or an outage, is None).
    pub fn cached(&self, id: u32) -> Option<Result<Arc<Schema>, FetchError>> {
        let cache = self.cache.lock().ok()?;
        cache.by_id.get(&id).cloned()
    }

    /// The schema of `id`: cached, or fetched and compiled. An outage is
    /// not cached (the next call asks again); an unknown id is.
    pub async fn get(&self, id: u32) -> Result<Arc<Schema>, FetchError> {
        if let Some(found) = self.cached(id) {
            return found;
        }
        let fetched = self.fetch(id).await;
        if !matches!(fetched, Err(FetchError::Unavailable(_))) {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(id, fetched.clone());
            }
        }
        fetched
    }

    async fn fetch(&self, id: u32) -> Result<Arc<Schema>, FetchError> {
        let down = |e: reqwest::Error| FetchError::Unavailable(e.without_url().to_string());
        let response = self
            .request(reqwest::Method::GET, &format!("/schemas/ids/{id}"))
            .send()
            .await
            .map_err(down)?;
        match response.status().as_u16() {
            200 => {}
            404 | 422 => return Err(FetchError::Unknown(id)),
            status => {
                return Err(FetchError::Unavailable(format!(
                    "GET /schemas/ids/{id} answered {status}"
                )))
            }
        }
        let body: ById = response.json().await.map_err(down)?;
        let kind = Kind::from_registry(body.schema_type.as_deref()).ok_or_else(|| {
            FetchError::Unreadable {
                id,
                reason: format!("schema type {:?}", body.schema_type),
            }
        })?;
        let compiled = Compiled::compile(kind, &body.schema)
            .map_err(|reason| FetchError::Unreadable { id, reason })?;
        // Its subject and version, when the registry says (best effort).
        let named = async {
            let r = self
                .request(reqwest::Method::GET, &format!("/schemas/ids/{id}/versions"))
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.json::<Vec<SubjectVersion>>()
                .await
                .ok()?
                .into_iter()
                .next()
        };
        let named = named.await;
        Ok(Arc::new(Schema {
            id,
            kind,
            subject: named.as_ref().map(|n| n.subject.clone()),
            version: named.map(|n| n.version),
            compiled,
        }))
    }

    /// Registers `text` (of `kind`) under `subject`, or finds it there;
    /// its id.
    pub async fn register(&self, subject: &str, kind: Kind, text: &str) -> Result<u32, FetchError> {
        let mut body = serde_json::json!({ "schema": text });
        if let Some(t) = kind.registry_type() {
            body["schemaType"] = t.into();
        }
        let path = format!("/subjects/{}/versions", url_segment(subject));
        let response = self
            .request(reqwest::Method::POST, &path)
            .json(&body)
            .send()
            .await
            .map_err(|e| FetchError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(FetchError::Unavailable(format!(
                "POST {path} answered {status}: {text}"
            )));
        }
        let registered: Registered = response
            .json()
            .await
            .map_err(|e| FetchError::Unavailable(e.without_url().to_string()))?;
        Ok(registered.id)
    }

    /// The id of `subject`'s latest version.
    pub async fn latest(&self, subject: &str) -> Result<u32, FetchError> {
        let path = format!("/subjects/{}/versions/latest", url_segment(subject));
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(|e| FetchError::Unavailable(e.without_url().to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NoSubject(subject.to_owned()));
        }
        if !response.status().is_success() {
            return Err(FetchError::Unavailable(format!(
                "GET {path} answered {}",
                response.status()
            )));
        }
        let latest: Registered = response
            .json()
            .await
            .map_err(|e| FetchError::Unavailable(e.without_url().to_string()))?;
        Ok(latest.id)
    }

    /// Whether the registry answers now (`GET /subjects`), for `/ready`.
    pub async fn ping(&self) -> Result<(), String> {
        let response = self
            .request(reqwest::Method::GET, "/subjects")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("GET /subjects answered {}", response.status()))
        }
    }
}

/// A subject as one path segment (percent-encoded).
fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
