//! The command line's subcommands past `run`: `dlq` here (the dead-letter
//! operations from a terminal, calling the same functions as the HTTP API,
//! so a replay from here is published, audited and removed exactly as one
//! through `POST /replay`), `outbox`, `search`, `status`; `audit`,
//! `operator` and `approvals` in their own files, who runs a command in
//! `credential.rs`. Each command that reads or changes data declares the
//! least role it takes ([`DlqCommand::least`] and its kin).
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use custodian::config::Settings;
use custodian::dlq::replay::{DeadLetters, Request};
use custodian::dlq::store::Filter;
use custodian::kafka::client::replay_producer_config;
use custodian::store::pool;
use rdkafka::producer::FutureProducer;
use uuid::Uuid;

mod approvals;
mod audit;
mod credential;
mod flow;
mod operator;

pub use approvals::{approvals, ApprovalsCommand};
pub use audit::{audit, AuditCommand};
use custodian::operators::{Actor, Role};
pub use flow::{flow, FlowCommand};
pub use operator::{operator, OperatorCommand};

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List entries (oldest first), one per line; --json for whole entries.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print each entry as a JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Print one entry as JSON.
    Show { message_id: Uuid },
    /// Republish one entry (by id) or every entry matching --all's filter.
    Replay {
        /// The message to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_id: Option<Uuid>,
        /// Replay every entry that matches the filter (up to --limit); with
        /// no filter, every topic's.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        who: Who,
    },
    /// Remove one entry for good (audited MESSAGE_DISCARDED).
    Discard {
        message_id: Uuid,
        #[command(flatten)]
        who: Who,
    },
}

#[derive(Args)]
pub struct FilterArgs {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    error_kind: Option<String>,
    /// Last failure at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// Last failure before this time (RFC 3339).
    #[arg(long)]
    to: Option<DateTime<Utc>>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Self {
        Filter {
            topic: a.topic,
            error_kind: a.error_kind,
            from: a.from,
            to: a.to,
        }
    }
}

/// Why (who is the token's holder).
#[derive(Args)]
pub struct Who {
    /// Why (required; kept in the audit trail and the record's headers).
    #[arg(long)]
    pub reason: String,
}

impl Who {
    fn of(self, actor: Actor) -> Request {
        Request {
            actor,
            reason: self.reason,
            approver: None,
        }
    }
}

/// The dead-letter queue's operations, from the configuration.
fn dead_letters(settings: &Settings) -> anyhow::Result<Arc<DeadLetters>> {
    let redis = pool::redis(&settings.redis).context("redis.url")?;
    let postgres = pool::postgres(&settings.postgres);
    let producer: FutureProducer = replay_producer_config(&settings.kafka)
        .create()
        .context("cannot create the replay producer (check kafka.* settings)")?;
    let header_key = custodian::pipeline::steering::HeaderKey::configured(&settings.kafka);
    Ok(Arc::new(DeadLetters::new(
        redis,
        postgres,
        producer,
        header_key,
        &settings.dlq,
    )))
}

impl DlqCommand {
    /// The least role the command takes.
    pub fn least(&self) -> Role {
        match self {
            DlqCommand::List { .. } | DlqCommand::Show { .. } => Role::Viewer,
            DlqCommand::Replay { .. } | DlqCommand::Discard { .. } => Role::Operator,
        }
    }
}

pub async fn dlq(
    settings: Settings,
    token_file: Option<PathBuf>,
    command: DlqCommand,
) -> anyhow::Result<()> {
    let actor = credential::actor(
        &settings,
        token_file.as_deref(),
        command.least(),
        "dlq",
        false,
    )
    .await?;
    let dlq = dead_letters(&settings)?;
    match command {
        DlqCommand::List {
            filter,
            offset,
            limit,
            json,
        } => {
            let page = dlq.list(&filter.into(), offset, limit).await?;
            for e in &page.entries {
                if json {
                    println!("{}", serde_json::to_string(e)?);
                } else {
                    println!(
                        "{}  {}/{}@{}  {}  attempts={}  last_failed={}  {}",
                        e.message_id,
                        e.topic,
                        e.partition,
                        e.offset,
                        e.error_kind,
                        e.attempts,
                        e.last_failed_at.to_rfc3339(),
                        e.stage
                    );
                }
            }
            if let Some(next) = page.next_offset {
                eprintln!("more: --offset {next}");
            }
        }
        DlqCommand::Show { message_id } => {
            let entry = dlq.get(message_id).await?;
            println!("{}", serde_json::to_string_pretty(&entry)?);
        }
        DlqCommand::Replay {
            message_id,
            all,
            filter,
            limit,
            who,
        } => {
            let request = who.of(actor);
            match message_id {
                Some(id) if !all => {
                    let r = dlq.replay(id, &request).await?;
                    println!("{}", serde_json::to_string(&r)?);
                }
                _ => {
                    let filter: Filter = filter.into();
                    if approvals::gate_bulk_replay(&settings, &dlq, &filter, limit, &request)
                        .await?
                    {
                        return Ok(());
                    }
                    let report = dlq.replay_matching(&filter, true, limit, &request).await?;
                    println!("{}", serde_json::to_string(&report)?);
                    anyhow::ensure!(report.failed == 0, "{} replays failed", report.failed);
                }
            }
        }
        DlqCommand::Discard { message_id, who } => {
            let entry = dlq.discard(message_id, &who.of(actor)).await?;
            println!("discarded {} from {}", entry.message_id, entry.topic);
        }
    }
    Ok(())
}

/// `custodian outbox …`: demo rows for the relay (seed 002's
/// `insertMessages.sql`).
#[derive(Subcommand)]
pub enum OutboxCommand {
    /// Insert one event into the `outbox` table, as an application would.
    Add {
        #[arg(long)]
        topic: String,
        /// The aggregate id: the Kafka key, and the unit of ordering.
        #[arg(long)]
        key: String,
        /// The event type.
        #[arg(long = "type")]
        event_type: String,
        /// The payload (UTF-8 text, usually JSON).
        #[arg(long)]
        payload: String,
        /// The aggregate type (default: the topic).
        #[arg(long)]
        aggregate_type: Option<String>,
    },
}

pub async fn outbox(settings: Settings, command: OutboxCommand) -> anyhow::Result<()> {
    use custodian::relay::outbox::{add, NewEvent};
    use diesel_async::AsyncConnection as _;
    use secrecy::ExposeSecret as _;
    let OutboxCommand::Add {
        topic,
        key,
        event_type,
        payload,
        aggregate_type,
    } = command;
    let mut conn =
        diesel_async::AsyncPgConnection::establish(settings.postgres.url.expose_secret())
            .await
            .context("cannot connect to postgres.url")?;
    let added = add(
        &mut conn,
        &NewEvent {
            aggregate_type: aggregate_type.as_deref().unwrap_or(&topic),
            aggregate_id: &key,
            event_type: &event_type,
            topic: &topic,
            payload: Some(payload.as_bytes()),
            headers: serde_json::json!({}),
        },
    )
    .await
    .context("cannot insert into outbox (run `custodian migrate` first?)")?;
    println!("outbox row {} event {}", added.id, added.event_id);
    Ok(())
}

/// `custodian search "q"`: the transaction search of
/// `GET /transactions/search`, from a terminal.
#[derive(Args)]
pub struct SearchArgs {
    /// Words, "a phrase", `or`, `-word`.
    q: String,
    #[arg(long)]
    user_id: Option<String>,
    #[arg(long = "type")]
    transaction_type: Option<String>,
    #[arg(long)]
    status: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Created before (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
    /// The `next_cursor` a previous page printed.
    #[arg(long)]
    cursor: Option<String>,
    /// Print the page as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn search(
    settings: Settings,
    token_file: Option<PathBuf>,
    args: SearchArgs,
) -> anyhow::Result<()> {
    credential::actor(
        &settings,
        token_file.as_deref(),
        Role::Viewer,
        "search",
        false,
    )
    .await?;
    use custodian::api::search::{parse, run, SearchQuery};
    use diesel_async::AsyncConnection as _;
    use secrecy::ExposeSecret as _;
    let wanted = parse(SearchQuery {
        q: args.q,
        user_id: args.user_id,
        transaction_type: args.transaction_type,
        status: args.status,
        from: args.from,
        to: args.to,
        limit: args.limit.map(|l| l.to_string()),
        cursor: args.cursor,
    })?;
    let mut conn =
        diesel_async::AsyncPgConnection::establish(settings.postgres.url.expose_secret())
            .await
            .context("cannot connect to postgres.url")?;
    let masking = custodian::masking::Masking::from_settings(&settings);
    let page = run(&mut conn, wanted, &masking).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    // Hits as the API shows them (masked): each field as text.
    let field = |hit: &serde_json::Value, name: &str| match &hit[name] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for hit in &page.results {
        println!(
            "{:.4}  {}  {} {} {} {}  v{}  {}",
            hit["rank"].as_f64().unwrap_or_default(),
            field(hit, "id"),
            field(hit, "transaction_type"),
            field(hit, "status"),
            field(hit, "amount"),
            field(hit, "currency"),
            field(hit, "version"),
            field(hit, "highlight")
                .replace("<mark>", "[")
                .replace("</mark>", "]")
        );
    }
    if let Some(next) = &page.next_cursor {
        eprintln!("more: --cursor {next}");
    }
    Ok(())
}

#[derive(Args)]
pub struct StatusArgs {
    /// The instance's base URL (default: from http.bind).
    #[arg(long)]
    url: Option<String>,
    /// Print the /status document as JSON.
    #[arg(long)]
    json: bool,
}

/// Reads `GET /status` with the command's token (else `http.api_token`);
/// the instance checks it (the viewer role).
pub async fn status(
    settings: Settings,
    token_file: Option<PathBuf>,
    args: StatusArgs,
) -> anyhow::Result<()> {
    use custodian::status::client;
    let base = args
        .url
        .unwrap_or_else(|| client::base_url(&settings.http.bind));
    let token = credential::token(token_file.as_deref())?
        .map(secrecy::SecretString::from)
        .or_else(|| settings.http.api_token.clone());
    let report = client::fetch(&base, token.as_ref(), std::time::Duration::from_secs(10)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", custodian::status::table::render(&report));
    }
    Ok(())
}
