//! `custodian operator …`: operators' own tokens.

use clap::Subcommand;
use custodian::config::Settings;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Add an operator; prints their token once (only its hash is kept).
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: custodian::operators::Role,
    },
    /// List operators (never their tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Replace an operator's token; prints the new one once.
    Rotate { name: String },
    /// Revoke an operator's token, at once.
    Revoke { name: String },
}

/// Every operator command takes the admin role; with no token and no
/// active admin yet, `operator add` runs as the local user (`bootstrap:`),
/// to add the first admin.
pub async fn operator(
    settings: Settings,
    token_file: Option<std::path::PathBuf>,
    command: OperatorCommand,
) -> anyhow::Result<()> {
    use custodian::operators;
    let bootstrap = matches!(command, OperatorCommand::Add { .. });
    let by = super::credential::actor(
        &settings,
        token_file.as_deref(),
        operators::Role::Admin,
        "operator",
        bootstrap,
    )
    .await?;
    let mut conn = super::credential::connect(&settings).await?;
    match command {
        OperatorCommand::Add { name, role } => {
            let token = operators::add(&mut conn, &name, role, &by).await?;
            eprintln!("operator {name} added as {role}; their token (shown only now):");
            println!("{token}");
        }
        OperatorCommand::Rotate { name } => {
            let token = operators::rotate(&mut conn, &name, &by).await?;
            eprintln!(
                "operator {name}: the old token no longer works; the new one (shown only now):"
            );
            println!("{token}");
        }
        OperatorCommand::Revoke { name } => {
            operators::revoke(&mut conn, &name, &by).await?;
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
