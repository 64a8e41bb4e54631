//! Every command that reads or changes data declares the least role it
//! takes, and is refused below it: with no token, and with the token of
//! the role just below, before it touches anything. The table covers every
//! subcommand `--help` lists (a new one must be added here).

use crate::support::process::Launch;
use crate::support::TestEnv;

const ROLES: [&str; 4] = ["viewer", "operator", "approver", "admin"];

/// Each command, with arguments that parse, and its least role (None: the
/// service's own or local commands, which act as custodian, not a person).
fn table(id: &str) -> Vec<(Vec<String>, Option<&'static str>)> {
    let s = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        (s(&["dlq", "list"]), Some("viewer")),
        (s(&["dlq", "show", id]), Some("viewer")),
        (s(&["dlq", "replay", id, "--reason", "r"]), Some("operator")),
        (
            s(&["dlq", "discard", id, "--reason", "r"]),
            Some("operator"),
        ),
        (s(&["audit", "verify"]), Some("viewer")),
        (s(&["audit", "reconcile", "--topic", "t"]), Some("viewer")),
        (s(&["audit", "partitions"]), Some("viewer")),
        (s(&["audit", "show", id]), Some("viewer")),
        (s(&["audit", "holds"]), Some("viewer")),
        (
            s(&["audit", "erase", "--id", id, "--reason", "r"]),
            Some("operator"),
        ),
        (
            s(&["audit", "hold", "--key", "k", "--reason", "r"]),
            Some("approver"),
        ),
        (
            s(&["audit", "release", "1", "--reason", "r"]),
            Some("approver"),
        ),
        (
            s(&["audit", "seal", "--before", "2000-01-01"]),
            Some("admin"),
        ),
        (s(&["audit", "archive"]), Some("admin")),
        (s(&["audit", "retain"]), Some("admin")),
        (s(&["audit", "keygen", "--out", "/dev/null"]), None),
        (
            s(&["operator", "add", "x", "--role", "viewer"]),
            Some("admin"),
        ),
        (s(&["operator", "list"]), Some("admin")),
        (s(&["operator", "rotate", "x"]), Some("admin")),
        (s(&["operator", "revoke", "x"]), Some("admin")),
        (s(&["approvals", "list"]), Some("viewer")),
        (
            s(&["approvals", "approve", "1", "--reason", "r"]),
            Some("approver"),
        ),
        (
            s(&["approvals", "reject", "1", "--reason", "r"]),
            Some("approver"),
        ),
        (s(&["search", "x"]), Some("viewer")),
        (s(&["flow", "list"]), Some("viewer")),
        (
            s(&["flow", "pause", "--topic", "t", "--reason", "r"]),
            Some("operator"),
        ),
        (
            s(&["flow", "resume", "--topic", "t", "--reason", "r"]),
            Some("operator"),
        ),
    ]
}

/// The subcommands `custodian <group> --help` lists.
fn listed(env: &TestEnv, group: &str) -> Vec<String> {
    let out = Launch::command(env, &[group, "--help"]).output();
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_command_is_refused_below_the_role_it_declares() {
    let env = TestEnv::new(1);
    let id = uuid::Uuid::new_v4().to_string();
    let table = table(&id);
    for group in ["dlq", "audit", "operator", "approvals", "flow"] {
        let commands = listed(&env, group);
        assert!(
            commands.len() >= 2,
            "custodian {group} --help lists {commands:?}"
        );
        for command in commands {
            assert!(
                table
                    .iter()
                    .any(|(args, _)| args[0] == group && args[1] == command),
                "custodian {group} {command} declares no role in this test's table"
            );
        }
    }
    let out = Launch::command(&env, &["migrate"]).output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    // An admin exists (so `operator add` is no bootstrap), and one token a role.
    let tokens: Vec<String> = ROLES
        .iter()
        .map(|role| {
            let out = Launch::command(
                &env,
                &["operator", "add", &format!("cli-{role}"), "--role", role],
            )
            .output();
            assert!(out.success, "{}{}", out.stdout, out.stderr);
            out.stdout.trim().to_owned()
        })
        .collect();
    for (args, least) in &table {
        let Some(least) = least else { continue };
        let rank = ROLES.iter().position(|r| r == least).expect("a role");
        let refusal = format!("takes the {least} role");
        let out = Launch::command(&env, args)
            .env("CUSTODIAN_TOKEN", "")
            .output();
        assert!(!out.success, "{args:?} ran with no token");
        assert!(out.stderr.contains(&refusal), "{args:?}: {}", out.stderr);
        if rank > 0 {
            let out = Launch::command(&env, args)
                .env("CUSTODIAN_TOKEN", &tokens[rank - 1])
                .output();
            assert!(!out.success, "{args:?} ran as a {}", ROLES[rank - 1]);
            assert!(out.stderr.contains(&refusal), "{args:?}: {}", out.stderr);
        }
    }
    // Nothing the refused commands name happened.
    assert_eq!(
        env.db()
            .count("SELECT count(*) AS n FROM audit_log WHERE status NOT IN ('OPERATOR_ADDED')"),
        0
    );
    // At its role, a reading command runs.
    let out = Launch::command(&env, &["dlq", "list"])
        .env("CUSTODIAN_TOKEN", &tokens[0])
        .output();
    assert!(out.success, "{}{}", out.stdout, out.stderr);
}
