//! `custodian approvals …`: four-eyes approval from a terminal. Also the
//! gates the other commands pass: a bulk replay over the threshold, and
//! every erasure, become pending requests here.

use std::path::PathBuf;

use clap::Subcommand;
use custodian::approvals::ready::{erase, ready, Ready};
use custodian::approvals::{self, Action, Approval};
use custodian::config::Settings;
use custodian::dlq::replay::{DeadLetters, Request};
use custodian::dlq::store::Filter;
use custodian::operators::{Actor, Role};

use super::credential;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Pending requests, newest first (`--all`: decided ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Approve a request someone else made, and run it here.
    Approve {
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Reject a request someone else made: nothing runs.
    Reject {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

impl ApprovalsCommand {
    /// The least role the command takes.
    pub fn least(&self) -> Role {
        match self {
            ApprovalsCommand::List { .. } => Role::Viewer,
            ApprovalsCommand::Approve { .. } | ApprovalsCommand::Reject { .. } => Role::Approver,
        }
    }
}

fn print(a: &Approval) {
    let by = a.requested_by["name"].as_str().unwrap_or("?");
    println!(
        "request {}  {}  {} entries  {}  by {by} at {}  expires {}: {}",
        a.id, a.kind, a.entries, a.state, a.created_at, a.expires_at, a.reason
    );
}

pub async fn approvals(
    settings: Settings,
    token_file: Option<PathBuf>,
    command: ApprovalsCommand,
) -> anyhow::Result<()> {
    let actor = credential::actor(
        &settings,
        token_file.as_deref(),
        command.least(),
        "approvals",
        false,
    )
    .await?;
    let mut conn = credential::connect(&settings).await?;
    match command {
        ApprovalsCommand::List { all, json } => {
            let mut listed = approvals::list(&mut conn, !all, 200).await?;
            if actor.role < Role::Approver {
                listed = listed.into_iter().map(Approval::without_key).collect();
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                listed.iter().for_each(print);
                println!("{} request(s)", listed.len());
            }
        }
        ApprovalsCommand::Reject { id, reason } => {
            approvals::decide(&mut conn, id, &actor, false, &reason).await?;
            println!("request {id} rejected");
        }
        ApprovalsCommand::Approve { id, reason } => {
            let decided = approvals::decide(&mut conn, id, &actor, true, &reason).await?;
            println!("request {id} approved; running it");
            let outcome = run(&settings, &decided.request, &actor).await;
            approvals::record_outcome(&mut conn, id, &outcome).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            if let Some(error) = outcome.get("error") {
                anyhow::bail!("request {id} was approved but did not run to its end: {error}");
            }
        }
    }
    Ok(())
}

/// Runs an approved request here, to its end.
async fn run(settings: &Settings, request: &Approval, approver: &Actor) -> serde_json::Value {
    let done = match ready(request, approver) {
        Err(e) => Err(e),
        Ok(Ready::Replay {
            filter,
            all,
            limit,
            request,
        }) => match super::dead_letters(settings) {
            Ok(dlq) => dlq
                .replay_matching(&filter, all, limit, &request)
                .await
                .map_err(|e| e.public_message())
                .and_then(|r| serde_json::to_value(r).map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        },
        Ok(Ready::Erase {
            selector,
            requester,
            reason,
        }) => match custodian::trail::Access::from_settings(settings) {
            Ok(access) => erase(&access, &selector, &requester, approver, &reason).await,
            Err(e) => Err(e.to_string()),
        },
    };
    match done {
        Ok(value) => serde_json::json!({ "done": value }),
        Err(error) => serde_json::json!({ "error": error }),
    }
}

/// A bulk replay over `operators.four_eyes_threshold` entries becomes a
/// pending request (printed); true when it did.
pub async fn gate_bulk_replay(
    settings: &Settings,
    dlq: &DeadLetters,
    filter: &Filter,
    limit: usize,
    request: &Request,
) -> anyhow::Result<bool> {
    let gate = approvals::bulk_replay_gate(
        dlq,
        (filter, true, limit),
        request,
        settings.operators.four_eyes_threshold,
    )
    .await?;
    let Some((action, entries)) = gate else {
        return Ok(false);
    };
    make(settings, &action, entries, &request.reason, &request.actor).await?;
    Ok(true)
}

/// Makes a pending request and says how to approve it.
pub async fn make(
    settings: &Settings,
    action: &Action,
    entries: u64,
    reason: &str,
    by: &Actor,
) -> anyhow::Result<Approval> {
    let mut conn = credential::connect(settings).await?;
    let made = approvals::create(
        &mut conn,
        action,
        entries,
        reason,
        by,
        settings.operators.approval_ttl,
    )
    .await?;
    eprintln!(
        "four-eyes: request {} waits for a second person's approval \
         (`custodian approvals approve {} --reason …`, by an approver other than {})",
        made.id, made.id, by.name
    );
    println!("request {}", made.id);
    Ok(made)
}
