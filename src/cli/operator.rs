//! `custodian operator …`: operators' own tokens.

use anyhow::Context as _;
use clap::Subcommand;
use custodian::config::Settings;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Add an operator; prints their token once (only its hash is kept).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: custodian::operators::Role,
        /// Who adds them (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// List operators (never their tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replace an operator's token; prints the new one once.
    Rotate {
        name: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Revoke an operator's token, at once.
    Revoke {
        name: String,
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn operator(settings: Settings, command: OperatorCommand) -> anyhow::Result<()> {
    use custodian::operators;
    use diesel_async::AsyncConnection as _;
    use secrecy::ExposeSecret as _;
    let mut conn =
        diesel_async::AsyncPgConnection::establish(settings.postgres.url.expose_secret())
            .await
            .context("cannot connect to postgres.url")?;
    let who = |by: Option<String>| {
        by.or_else(|| std::env::var("USER").ok())
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "cli".into())
    };
    match command {
        OperatorCommand::Add { name, role, by } => {
            let token = operators::add(&mut conn, &name, role, &who(by)).await?;
            eprintln!("operator {name} added as {role}; their token (shown only now):");
            println!("{token}");
        }
        OperatorCommand::Rotate { name, by } => {
            let token = operators::rotate(&mut conn, &name, &who(by)).await?;
            eprintln!(
                "operator {name}: the old token no longer works; the new one (shown only now):"
            );
            println!("{token}");
        }
        OperatorCommand::Revoke { name, by } => {
            operators::revoke(&mut conn, &name, &who(by)).await?;
            println!("operator {name}: token revoked");
        }
        OperatorCommand::List { json } => {
            let all = operators::list(&mut conn).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for o in &all {
                    println!(
                        "{:<24} {:<9} added by {} at {}{}",
                        o.name,
                        o.role,
                        o.added_by,
                        o.added_at,
                        o.revoked_at
                            .map(|t| format!("  REVOKED at {t}"))
                            .unwrap_or_default()
                    );
                }
                println!("{} operator(s)", all.len());
            }
        }
    }
    Ok(())
}
