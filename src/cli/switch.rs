//! `beltctl cutover` and `beltctl failback`: move the applications' writes from one
//! database of a sync to the other, gate by gate, each reported and timed.
//!
//! Gates: every table of both databases replicated or excluded by name, fence the old side (NOLOGIN + end sessions), drain both directions, install
//! capture on the new side, carry sequences, copy key-less tables whole, validate the
//! constraints the schema step created NOT VALID, verify,
//! ANALYZE the new side, then switch: the new side becomes the source with
//! replication back to the old one left on, and logins belt took from the new side
//! earlier (a failback after a cutover) are given back. A failed gate stops with the
//! old side still authoritative and its logins restored. Cutover makes the sync's
//! second database authoritative, failback the first; running either when it is
//! already so changes nothing.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::CliError;
use crate::capture::{self, TriggerMode};
use crate::catalog::{Catalog, Member, Role};
use crate::copy::{copy_chunk, End, Range};
use crate::engine::echo::prepare_receiver;
use crate::engine::{sequences, Side, TablePlan};
use crate::migrate::constraints::{validate_like, ConstraintError};
use crate::migrate::logins::{application_roles, set_login, terminate};
use crate::pg::error::render;
use crate::pg::introspect::{all_sequences, TableName};
use crate::pg::{connect, DbSpec};
use crate::verify::coverage::uncovered;
use crate::verify::{verify_table, Sides, VERIFY_CHUNK_ROWS};

/// Arguments of `beltctl cutover` and `beltctl failback`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The sync.
    pub name: String,
    /// How long to wait for both directions to drain: `90s`, `5m`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A table of either database that is deliberately not replicated (`schema.table`,
    /// or `table` in public); repeat for several. Any other such table stops the switch.
    #[arg(long = "exclude", value_name = "TABLE")]
    pub exclude: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90s or 5m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("'{text}' is not a duration like 90s or 5m")),
    }
}

/// Makes the sync's second database authoritative.
pub async fn cutover(catalog: &mut Catalog, args: SwitchArgs) -> Result<ExitCode, CliError> {
    switch(catalog, args, 1).await
}

/// Makes the sync's first database authoritative again.
pub async fn failback(catalog: &mut Catalog, args: SwitchArgs) -> Result<ExitCode, CliError> {
    switch(catalog, args, 0).await
}

/// The state a switch works with.
struct Switch<'a> {
    catalog: &'a mut Catalog,
    sync: String,
    from: DbSpec,
    to: DbSpec,
    members: Vec<Member>,
    timeout: Duration,
    exclude: Vec<String>,
}

async fn switch(catalog: &mut Catalog, args: SwitchArgs, to_index: usize) -> Result<ExitCode, CliError> {
    let def = catalog.require_sync(&args.name)?;
    let pair = def.pair().map_err(CliError::Usage)?;
    let (to_db, from_db) = (pair[to_index].db.clone(), pair[1 - to_index].db.clone());
    let (authority, switching) = catalog.authority(&def.name)?;
    let current = authority.unwrap_or_else(|| pair[0].db.clone());
    if current == to_db && !switching {
        println!("'{to_db}' is authoritative already: nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = Switch {
        from: catalog.require_db(&from_db)?,
        to: catalog.require_db(&to_db)?,
        catalog,
        sync: def.name.clone(),
        members: def.members.clone(),
        timeout: args.timeout,
        exclude: args
            .exclude
            .iter()
            .map(|t| TableName::parse(t, "public"))
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect(),
    };
    s.catalog.set_switching(&s.sync, true)?;
    println!(
        "moving the writes of sync '{}' from '{from_db}' to '{to_db}'",
        s.sync
    );
    match s.gates().await {
        Ok(()) => {
            s.catalog.set_authority(&s.sync, &to_db)?;
            println!("done: point the applications at '{to_db}'; '{from_db}' keeps receiving every write and stays fenced");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let restored = s.restore_logins(&from_db).await;
            s.catalog.set_switching(&s.sync, false)?;
            eprintln!("stopped: {}", render(&e));
            match restored {
                Ok(n) => eprintln!("'{from_db}' is still authoritative; its {n} fenced role(s) can log in again"),
                Err(r) => eprintln!("'{from_db}' is still authoritative, but its logins could not be restored: {}; run beltctl restore-logins {} --db {from_db}", render(&r), s.sync),
            }
            eprintln!("fix the cause, then run the same command again");
            Ok(ExitCode::FAILURE)
        }
    }
}

impl Switch<'_> {
    async fn gates(&mut self) -> Result<(), CliError> {
        let t = Instant::now();
        gate("tables", t, self.coverage().await)?;
        let t = Instant::now();
        gate("fence", t, self.fence().await)?;
        let t = Instant::now();
        gate("drain", t, self.drain().await)?;
        let t = Instant::now();
        gate("capture on the new side", t, self.capture().await)?;
        let t = Instant::now();
        gate("sequences", t, self.sequences().await)?;
        let t = Instant::now();
        gate("key-less tables", t, self.keyless().await)?;
        let t = Instant::now();
        gate("constraints", t, self.constraints().await)?;
        let t = Instant::now();
        gate("verify", t, self.verify().await)?;
        let t = Instant::now();
        gate("analyze", t, self.analyze().await)?;
        let t = Instant::now();
        gate("switch", t, self.switch_roles().await)
    }

    /// Every table of both databases is replicated by a sync between them, or
    /// excluded by name: a switch must not leave a table behind unsaid.
    async fn coverage(&mut self) -> Result<(), CliError> {
        let (from, to) = (connect(&self.from).await?, connect(&self.to).await?);
        let replicated = self.catalog.replicated_between(&self.from.name, &self.to.name)?;
        let missing = uncovered(
            [(&from, self.from.name.as_str()), (&to, self.to.name.as_str())],
            &replicated,
            &self.exclude,
        )
        .await?;
        if missing.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = missing.iter().map(|u| u.describe()).collect();
        Err(CliError::Failed(format!(
            "{}; add it to a sync, or name it with --exclude TABLE when it stays behind on purpose",
            list.join("; ")
        )))
    }

    async fn fence(&mut self) -> Result<(), CliError> {
        let c = connect(&self.from).await?;
        let roles = application_roles(&c, &self.from.name, &[]).await?;
        for role in &roles {
            self.catalog.record_revoked(&self.sync, &self.from.name, role)?;
            set_login(&c, &self.from.name, role, false).await?;
        }
        terminate(&c, &self.from.name, &roles).await?;
        Ok(())
    }

    /// Waits for a round, started after the fence, that leaves nothing pending.
    async fn drain(&mut self) -> Result<(), CliError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let seq = self.catalog.kick(&self.sync)?;
            loop {
                let status = self.catalog.status(&self.sync)?;
                if status.kick_done >= seq {
                    if status.pending_rows == 0 {
                        return Ok(());
                    }
                    break;
                }
                if Instant::now() > deadline {
                    return Err(CliError::Failed(format!(
                        "not drained after {}s ({} rows pending, state {}); is belt-syncd running?",
                        self.timeout.as_secs(),
                        status.pending_rows,
                        status.state
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn tables(&self) -> Result<Vec<crate::pg::introspect::TableInfo>, CliError> {
        Ok(self.catalog.relations(&self.sync)?)
    }

    async fn capture(&mut self) -> Result<(), CliError> {
        let tables = self.tables()?;
        let mut c = connect(&self.to).await?;
        capture::install(&mut c, &self.to.name, &tables, TriggerMode::Statement).await?;
        Ok(())
    }

    /// Moves the new side's sequences past the old side's. With two sources they are
    /// interleaved already (each side draws its own values), and carrying a value
    /// across would break that.
    async fn sequences(&mut self) -> Result<(), CliError> {
        if self.members.iter().all(|m| m.role == Role::Source) {
            return Ok(());
        }
        let from = Side {
            db: self.from.name.clone(),
            client: connect(&self.from).await?,
            source: true,
        };
        let to = Side {
            db: self.to.name.clone(),
            client: connect(&self.to).await?,
            source: false,
        };
        let seqs = all_sequences(&from.client, &from.db).await?;
        sequences::carry(&from, &to, &seqs).await?;
        Ok(())
    }

    async fn keyless(&mut self) -> Result<(), CliError> {
        let mut from = connect(&self.from).await?;
        let mut to = connect(&self.to).await?;
        prepare_receiver(&to, &self.to.name).await?;
        for t in self.tables()?.iter().filter(|t| t.key.is_none()) {
            let plan = TablePlan::new(t, "");
            let range = Range {
                after: None,
                upper: None,
            };
            copy_chunk(
                End {
                    db: &self.from.name,
                    client: &mut from,
                },
                End {
                    db: &self.to.name,
                    client: &mut to,
                },
                &plan,
                range,
                i64::MAX,
            )
            .await?;
        }
        Ok(())
    }

    /// Validates on the new side what the schema step created NOT VALID.
    async fn constraints(&mut self) -> Result<(), CliError> {
        let (from, to) = (connect(&self.from).await?, connect(&self.to).await?);
        validate_like(&from, &self.from.name, &to, &self.to.name)
            .await
            .map_err(|e| match e {
                ConstraintError::Db(e) => CliError::Db(e),
                other => CliError::Failed(other.to_string()),
            })?;
        Ok(())
    }

    async fn verify(&mut self) -> Result<(), CliError> {
        let (from, to) = (connect(&self.from).await?, connect(&self.to).await?);
        let sides = Sides {
            source: &from,
            target: &to,
            source_db: &self.from.name,
            target_db: &self.to.name,
        };
        let mut differing = Vec::new();
        for t in self.tables()? {
            let verdict = verify_table(&sides, &TablePlan::new(&t, ""), VERIFY_CHUNK_ROWS).await?;
            if !verdict.equal {
                differing.push(verdict.table);
            }
        }
        if differing.is_empty() {
            return Ok(());
        }
        Err(CliError::Failed(format!(
            "tables differ: {}; see beltctl verify {}",
            differing.join(", "),
            self.sync
        )))
    }

    async fn analyze(&mut self) -> Result<(), CliError> {
        let to = connect(&self.to).await?;
        for t in self.tables()? {
            to.batch_execute(&format!("analyze {}", t.qualified()))
                .await
                .map_err(|e| {
                    crate::pg::DbError::query(&self.to.name, format!("analyze {}", t.display_name()), e)
                })?;
        }
        Ok(())
    }

    /// The new side becomes a source; a one-way sync turns around, a two-way sync
    /// stays as it is. Logins belt took from the new side earlier come back.
    async fn switch_roles(&mut self) -> Result<(), CliError> {
        let one_way = self.members.iter().any(|m| m.role == Role::Target);
        if one_way {
            let members: Vec<Member> = self
                .members
                .iter()
                .map(|m| Member {
                    db: m.db.clone(),
                    role: if m.db == self.to.name {
                        Role::Source
                    } else {
                        Role::Target
                    },
                })
                .collect();
            self.catalog.set_members(&self.sync, &members)?;
        }
        let to = self.to.name.clone();
        self.restore_logins(&to).await?;
        Ok(())
    }

    /// Gives back the logins belt revoked on `db` for this sync.
    async fn restore_logins(&mut self, db: &str) -> Result<usize, CliError> {
        let roles = self.catalog.revoked(&self.sync, db)?;
        if roles.is_empty() {
            return Ok(0);
        }
        let spec = self.catalog.require_db(db)?;
        let c = connect(&spec).await?;
        for role in &roles {
            set_login(&c, db, role, true).await?;
            self.catalog.forget_revoked(&self.sync, db, role)?;
        }
        Ok(roles.len())
    }
}

/// Reports a gate's outcome and time; a failure names the gate.
fn gate(name: &str, started: Instant, result: Result<(), CliError>) -> Result<(), CliError> {
    let mark = if result.is_ok() { "ok" } else { "FAILED" };
    println!("  {name:<26} {mark:<7} {:>7.2}s", started.elapsed().as_secs_f64());
    result.map_err(|e| CliError::Failed(format!("gate '{name}' failed: {}", render(&e))))
}
