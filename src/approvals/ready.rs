//! An approved request made ready to run: its action decoded into what
//! the dead-letter queue or the trail takes, attributed to both people.
//! The API and the command line each run it their way (a job; to its end).

use crate::dlq::replay::Request;
use crate::dlq::store::Filter;
use crate::identity::Actor;
use crate::trail::erase::{Asked, Selector};

use super::{Action, Approval};

/// What an approved request runs.
pub enum Ready {
    Replay {
        filter: Filter,
        all: bool,
        limit: usize,
        request: Request,
    },
    Erase {
        selector: Selector,
        requester: Actor,
        reason: String,
    },
}

/// The request as it runs, approved by `approver`; or why it cannot.
pub fn ready(approval: &Approval, approver: &Actor) -> Result<Ready, String> {
    let (Some(action), Some(requester)) = (approval.action(), approval.requester()) else {
        return Err("the request no longer names its action".into());
    };
    Ok(match action {
        Action::Replay {
            topic,
            error_kind,
            from,
            to,
            all,
            limit,
        } => Ready::Replay {
            filter: Filter {
                topic,
                error_kind,
                from,
                to,
            },
            all,
            limit,
            request: Request {
                actor: requester,
                reason: approval.reason.clone(),
                approver: Some(approver.clone()),
            },
        },
        Action::Erase { key, message_id } => Ready::Erase {
            selector: match (key, message_id) {
                (Some(k), _) => Selector::Key(k),
                (None, Some(id)) => Selector::Message(id),
                (None, None) => return Err("no key or message_id".into()),
            },
            requester,
            reason: approval.reason.clone(),
        },
    })
}

/// Runs an approved erasure to its end: its result, or why it failed.
pub async fn erase(
    access: &crate::trail::Access,
    selector: &Selector,
    requester: &Actor,
    approver: &Actor,
    reason: &str,
) -> Result<serde_json::Value, String> {
    let asked = Asked {
        actor: requester,
        approver: Some(approver),
    };
    let erased = access
        .erase(selector, &asked, reason)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::to_value(erased).map_err(|e| e.to_string())
}
