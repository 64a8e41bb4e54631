//! Who a request or a command acts as: the role a credential carries, the
//! caller it names, and who did an operator action, how and from where
//! (taken from the credential and the connection, never from a request
//! body; every operator entry carries one in its chained `detail`). A leaf:
//! the operators' store and the trail both build on it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an operator may do. Each role includes those before it: an
/// operator reads as a viewer does, an approver acts as an operator, an
/// admin approves too.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Approver, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

impl Caller {
    /// The credential's role (the shared token: admin).
    pub fn role(&self) -> Role {
        match self {
            Caller::Shared => Role::Admin,
            Caller::Operator { role, .. } => *role,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request, from its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The shared `http.api_token`: one admin, name unknown.
    Shared,
    Operator {
        id: i64,
        name: String,
        role: Role,
    },
}

/// The name recorded for the shared `http.api_token`, which names no one.
pub const SHARED_NAME: &str = "shared-token";

/// How the action reached custodian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Api,
    Cli,
    Console,
    /// custodian's own timers.
    Service,
}

/// Who, how and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The operator's name ([`SHARED_NAME`] for the shared token).
    pub name: String,
    /// The credential's id (`operators.id`); null for the shared token.
    pub credential: Option<i64>,
    pub role: Role,
    pub channel: Channel,
    /// The client's address (HTTP), or `user@host` (CLI).
    pub client: Option<String>,
    /// The request's id (`X-Request-Id`, echoed in the answer).
    pub request_id: Option<String>,
}

impl Actor {
    pub fn new(
        caller: &Caller,
        channel: Channel,
        client: Option<String>,
        request_id: Option<String>,
    ) -> Actor {
        let (name, credential) = match caller {
            Caller::Shared => (SHARED_NAME.to_owned(), None),
            Caller::Operator { id, name, .. } => (name.clone(), Some(*id)),
        };
        Actor {
            name,
            credential,
            role: caller.role(),
            channel,
            client,
            request_id,
        }
    }

    /// The same person, whatever credential they used: two credentials
    /// under one name are one person (so no one approves their own
    /// request with a second token).
    pub fn same_person(&self, other: &Actor) -> bool {
        self.name == other.name
            || (self.credential.is_some() && self.credential == other.credential)
    }

    /// For the operator entry's `detail`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// custodian itself (a timer, not a person: retention run by `run`).
    pub fn service(task: &str) -> Actor {
        Actor {
            name: format!("custodian:{task}"),
            credential: None,
            role: Role::Admin,
            channel: Channel::Service,
            client: None,
            request_id: None,
        }
    }
}

/// The `detail` fields that say who: `requested_by` (the name), `operator`
/// (who, how and where) and, after four-eyes approval, `approved_by`.
pub fn who(by: &Actor, approver: Option<&Actor>) -> serde_json::Value {
    let mut detail = serde_json::json!({
        "requested_by": by.name,
        "operator": by.to_json(),
    });
    if let Some(approver) = approver {
        detail["approved_by"] = approver.to_json();
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_is_one_person_whatever_the_credential() {
        let erin = |id| {
            Actor::new(
                &Caller::Operator {
                    id,
                    name: "erin".into(),
                    role: Role::Approver,
                },
                Channel::Api,
                None,
                None,
            )
        };
        assert!(erin(1).same_person(&erin(2)));
        let shared = Actor::new(&Caller::Shared, Channel::Cli, None, None);
        assert!(!erin(1).same_person(&shared));
        assert!(shared.same_person(&shared.clone()));
        assert_eq!(shared.role, Role::Admin);
        assert_eq!(erin(1).to_json()["channel"], "api");
    }
}
