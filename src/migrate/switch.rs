//! Cutover and failback: move the applications' writes from one database of a sync
//! to the other, gate by gate, each reported and timed.
//!
//! Gates: every table of both databases replicated or excluded by name, fence the old
//! side (NOLOGIN + end sessions), drain both directions, install capture on the new
//! side, carry sequences, copy key-less tables whole, validate the constraints the
//! schema step created NOT VALID, verify, ANALYZE the new side, then switch: the new
//! side becomes the source with replication back to the old one left on, and logins
//! belt took from the new side earlier (a failback after a cutover) are given back. A
//! failed gate stops with the old side still authoritative and its logins restored.
//! Running a switch to the side that is authoritative already changes nothing.

use std::time::{Duration, Instant};

use super::WorkflowError;
use crate::capture::{self, TriggerMode};
use crate::catalog::{Catalog, DbPair, Member, Role};
use crate::copy::{copy_chunk, End, Range};
use crate::engine::echo::prepare_receiver;
use crate::engine::{sequences, Side};
use crate::migrate::constraints::{validate_like, ConstraintError};
use crate::migrate::logins::{application_roles, set_login, terminate};
use crate::pg::error::render;
use crate::pg::introspect::{all_sequences, TableName};
use crate::pg::KeyedTable;
use crate::pg::{connect, DbSpec};
use crate::verify::coverage::uncovered;
use crate::verify::{verify_table, Sides, VERIFY_CHUNK_ROWS};

/// What a switch tells as it goes.
#[derive(Debug)]
pub enum Progress {
    /// The gates start.
    Started { from: String, to: String },
    /// A gate ended.
    Gate {
        name: &'static str,
        ok: bool,
        took: Duration,
    },
}

/// How a switch ended.
#[derive(Debug)]
pub enum Outcome {
    /// `db` was authoritative already: nothing was done.
    Already { db: String },
    /// `to` is authoritative now; `from` keeps receiving every write, fenced.
    Switched { from: String, to: String },
    /// A gate stopped the switch: `from` is still authoritative, and `restored` says
    /// whether its fenced logins came back (how many roles).
    Stopped {
        from: String,
        error: WorkflowError,
        restored: Result<usize, WorkflowError>,
    },
}

/// Makes database `to_index` (0 or 1) of `sync` authoritative. `exclude` names
/// tables (`schema.table`, or `table` in public) deliberately left behind.
pub async fn switch(
    catalog: &mut Catalog,
    sync: &str,
    to_index: usize,
    timeout: Duration,
    exclude: &[String],
    report: &mut dyn FnMut(Progress),
) -> Result<Outcome, WorkflowError> {
    let def = catalog.require_sync(sync)?;
    let DbPair { members, specs } = catalog.db_pair(&def)?;
    let (to_db, from_db) = (members[to_index].db.clone(), members[1 - to_index].db.clone());
    let (authority, switching) = catalog.authority(&def.name)?;
    let current = authority.unwrap_or_else(|| members[0].db.clone());
    if current == to_db && !switching {
        return Ok(Outcome::Already { db: to_db });
    }
    let [first, second] = specs;
    let (from, to) = if to_index == 0 {
        (second, first)
    } else {
        (first, second)
    };
    let mut s = Switch {
        from,
        to,
        catalog,
        sync: def.name.clone(),
        members: def.members.clone(),
        timeout,
        exclude: exclude
            .iter()
            .map(|t| TableName::parse(t, "public"))
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect(),
    };
    s.catalog.set_switching(&s.sync, true)?;
    report(Progress::Started {
        from: from_db.clone(),
        to: to_db.clone(),
    });
    match s.gates(report).await {
        Ok(()) => {
            s.catalog.set_authority(&s.sync, &to_db)?;
            Ok(Outcome::Switched {
                from: from_db,
                to: to_db,
            })
        }
        Err(error) => {
            let restored = s.restore_logins(&from_db).await;
            s.catalog.set_switching(&s.sync, false)?;
            Ok(Outcome::Stopped {
                from: from_db,
                error,
                restored,
            })
        }
    }
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

impl Switch<'_> {
    async fn gates(&mut self, report: &mut dyn FnMut(Progress)) -> Result<(), WorkflowError> {
        gate(report, "tables", self.coverage()).await?;
        gate(report, "fence", self.fence()).await?;
        gate(report, "drain", self.drain()).await?;
        gate(report, "capture on the new side", self.capture()).await?;
        gate(report, "sequences", self.sequences()).await?;
        gate(report, "key-less tables", self.keyless()).await?;
        gate(report, "constraints", self.constraints()).await?;
        gate(report, "verify", self.verify()).await?;
        gate(report, "analyze", self.analyze()).await?;
        gate(report, "switch", self.switch_roles()).await
    }

    /// Every table of both databases is replicated by a sync between them, or
    /// excluded by name: a switch must not leave a table behind unsaid.
    async fn coverage(&mut self) -> Result<(), WorkflowError> {
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
        Err(WorkflowError::Gate(format!(
            "{}; add it to a sync, or name it with --exclude TABLE when it stays behind on purpose",
            list.join("; ")
        )))
    }

    async fn fence(&mut self) -> Result<(), WorkflowError> {
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
    async fn drain(&mut self) -> Result<(), WorkflowError> {
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
                    return Err(WorkflowError::Gate(format!(
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

    fn tables(&self) -> Result<Vec<crate::pg::introspect::TableInfo>, WorkflowError> {
        Ok(self.catalog.relations(&self.sync)?)
    }

    async fn capture(&mut self) -> Result<(), WorkflowError> {
        let tables = self.tables()?;
        let mut c = connect(&self.to).await?;
        capture::install(&mut c, &self.to.name, &tables, TriggerMode::Statement).await?;
        Ok(())
    }

    /// Moves the new side's sequences past the old side's. With two sources they are
    /// interleaved already (each side draws its own values), and carrying a value
    /// across would break that.
    async fn sequences(&mut self) -> Result<(), WorkflowError> {
        if self.members.iter().all(|m| m.role == Role::Source) {
            return Ok(());
        }
        let from = Side::new(self.from.name.clone(), connect(&self.from).await?, true);
        let to = Side::new(self.to.name.clone(), connect(&self.to).await?, false);
        let seqs = all_sequences(&from.client, &from.db).await?;
        sequences::carry(&from, &to, &seqs).await?;
        Ok(())
    }

    async fn keyless(&mut self) -> Result<(), WorkflowError> {
        let mut from = connect(&self.from).await?;
        let mut to = connect(&self.to).await?;
        prepare_receiver(&to, &self.to.name).await?;
        for t in self.tables()?.iter().filter(|t| t.key.is_none()) {
            let plan = KeyedTable::new(t);
            let range = Range {
                after: None,
                upper: None,
            };
            copy_chunk(
                End {
                    db: &self.from.name,
                    client: &mut from,
                    fence: "",
                },
                End {
                    db: &self.to.name,
                    client: &mut to,
                    fence: "",
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
    async fn constraints(&mut self) -> Result<(), WorkflowError> {
        let (from, to) = (connect(&self.from).await?, connect(&self.to).await?);
        validate_like(&from, &self.from.name, &to, &self.to.name)
            .await
            .map_err(|e| match e {
                ConstraintError::Db(e) => WorkflowError::Db(e),
                other => WorkflowError::Gate(other.to_string()),
            })?;
        Ok(())
    }

    async fn verify(&mut self) -> Result<(), WorkflowError> {
        let (from, to) = (connect(&self.from).await?, connect(&self.to).await?);
        let sides = Sides {
            source: &from,
            target: &to,
            source_db: &self.from.name,
            target_db: &self.to.name,
        };
        let mut differing = Vec::new();
        for t in self.tables()? {
            let verdict = verify_table(&sides, &KeyedTable::new(&t), VERIFY_CHUNK_ROWS).await?;
            if !verdict.equal {
                differing.push(verdict.table);
            }
        }
        if differing.is_empty() {
            return Ok(());
        }
        Err(WorkflowError::Gate(format!(
            "tables differ: {}; see beltctl verify {}",
            differing.join(", "),
            self.sync
        )))
    }

    async fn analyze(&mut self) -> Result<(), WorkflowError> {
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
    async fn switch_roles(&mut self) -> Result<(), WorkflowError> {
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
    async fn restore_logins(&mut self, db: &str) -> Result<usize, WorkflowError> {
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

/// Runs a gate and reports its outcome and time; a failure names the gate.
async fn gate(
    report: &mut dyn FnMut(Progress),
    name: &'static str,
    step: impl std::future::Future<Output = Result<(), WorkflowError>>,
) -> Result<(), WorkflowError> {
    let started = Instant::now();
    let result = step.await;
    report(Progress::Gate {
        name,
        ok: result.is_ok(),
        took: started.elapsed(),
    });
    result.map_err(|e| WorkflowError::Gate(format!("gate '{name}' failed: {}", render(&e))))
}
