//! `custodian flow …`: pausing and resuming a topic, a partition or an http
//! route from a terminal, and listing the pauses in force. Written to
//! PostgreSQL with a chained operator entry, like `POST /flow/pause`;
//! every running instance honours it within `flow.poll_interval`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use custodian::config::Settings;
use custodian::flow::pauses::{self, Pause, Target};
use custodian::operators::Role;

use super::credential;

/// What to pause or resume.
#[derive(Args)]
pub struct FlowTarget {
    /// A topic of kafka.topics (alone: all its partitions).
    #[arg(long)]
    topic: Option<String>,
    /// With --topic: only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// An http route, by its URL as `flow list` shows it.
    #[arg(long)]
    route: Option<String>,
    /// Why; recorded in the audit trail.
    #[arg(long)]
    reason: String,
}

#[derive(Subcommand)]
pub enum FlowCommand {
    /// The pauses in force, and the http routes that may be paused.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Pause a topic, a partition or an http route on every instance.
    Pause(FlowTarget),
    /// Resume it: what it held continues where it stopped.
    Resume(FlowTarget),
}

impl FlowCommand {
    /// The least role the command takes.
    pub fn least(&self) -> Role {
        match self {
            FlowCommand::List { .. } => Role::Viewer,
            FlowCommand::Pause(_) | FlowCommand::Resume(_) => Role::Operator,
        }
    }
}

fn print(p: &Pause) {
    let by = p.paused_by["name"].as_str().unwrap_or("?");
    println!(
        "pause {}  {}  by {by} at {}: {}",
        p.id,
        p.target().describe(),
        p.paused_at,
        p.reason
    );
}

pub async fn flow(
    settings: Settings,
    token_file: Option<PathBuf>,
    command: FlowCommand,
) -> anyhow::Result<()> {
    let actor = credential::actor(
        &settings,
        token_file.as_deref(),
        command.least(),
        "flow",
        false,
    )
    .await?;
    let mut conn = credential::connect(&settings).await?;
    let routes = settings.http_route_labels();
    let labels: Vec<&str> = routes.iter().map(String::as_str).collect();
    let checked = |t: FlowTarget| -> anyhow::Result<(Target, String)> {
        let target = Target::checked(
            t.topic,
            t.partition,
            t.route,
            &settings.kafka.topics,
            &labels,
        )
        .map_err(|e| anyhow::anyhow!(e))?;
        Ok((target, t.reason))
    };
    match command {
        FlowCommand::List { json } => {
            let active = pauses::active(&mut conn).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&active)?);
            } else {
                active.iter().for_each(print);
                println!("{} pause(s) in force", active.len());
                for route in &routes {
                    println!("http route: {route}");
                }
            }
        }
        FlowCommand::Pause(t) => {
            let (target, reason) = checked(t)?;
            let paused = pauses::pause(&mut conn, &target, &reason, &actor).await?;
            print(&paused);
            println!(
                "every instance holds it within flow.poll_interval ({:?})",
                settings.flow.poll_interval
            );
        }
        FlowCommand::Resume(t) => {
            let (target, reason) = checked(t)?;
            let resumed = pauses::resume(&mut conn, &target, &reason, &actor).await?;
            println!("resumed {} (pause {})", target.describe(), resumed.id);
        }
    }
    Ok(())
}
