//! `ramrod members list|add|remove`: the cluster's membership, through a
//! node's admin API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use ramrod::Members;

use crate::node_cmd::{Target, client_runtime, node_client, token_or_env};

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// List the voters and learners.
    List(Target),
    /// Add a node (started with `join = true`): it catches up as a learner,
    /// then votes. Waits until it does.
    Add {
        #[command(flatten)]
        target: Target,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Where the others reach it (host:port).
        #[arg(long)]
        addr: String,
        /// How long to wait for it to catch up, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Remove a node (the leader hands leadership over first).
    Remove {
        #[command(flatten)]
        target: Target,
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
}

pub fn run(cmd: MembersCommand) -> Result<ExitCode> {
    let (target, what) = match &cmd {
        MembersCommand::List(t) => (t, "list"),
        MembersCommand::Add { target, .. } => (target, "add"),
        MembersCommand::Remove { target, .. } => (target, "remove"),
    };
    let token = token_or_env(target.token.clone())?;
    let json = target.json;
    let client = node_client(&target.node)?.with_token(token);
    client_runtime()?.block_on(async {
        let members = match cmd {
            MembersCommand::List(_) => client.members().await?,
            MembersCommand::Add {
                id, addr, timeout, ..
            } => {
                client
                    .with_timeout(Duration::from_secs(timeout))
                    .add_member(id, &addr)
                    .await?
            }
            MembersCommand::Remove { id, .. } => client.remove_member(id).await?,
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&members)?);
        } else {
            if what != "list" {
                println!("{what}: done");
            }
            print(&members);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print(m: &Members) {
    let leader = m
        .leader
        .map_or_else(|| "unknown".to_string(), |l| l.to_string());
    println!("leader   {leader}");
    for v in &m.voters {
        println!("voter    {} {}", v.id, v.addr);
    }
    for l in &m.learners {
        println!("learner  {} {}", l.id, l.addr);
    }
    if m.changing {
        println!("(a membership change is in progress)");
    }
}
