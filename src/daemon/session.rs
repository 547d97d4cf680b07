//! A connected sync: sessions on both databases, capture installed on each source,
//! replica mode on each receiver, and the plan of every captured table.

use std::time::Duration;

use tokio::sync::mpsc;

use super::error::SyncError;
use crate::capture::{self, doorbell, syncs, TriggerMode};
use crate::engine::echo::prepare_receiver;
use crate::engine::{interleave, Side, TablePlan};
use crate::pg::introspect::{all_sequences, TableName};
use crate::pg::{connect, connect_listening, DbError, DbSpec};
use crate::tables::{self, Selection};

/// Live sessions of one sync.
pub struct Session {
    /// The sync's databases, in the sync's order (the first wins conflict ties).
    pub sides: [Side; 2],
    /// NOTIFYs on the sources' kick channel.
    pub notifications: mpsc::UnboundedReceiver<String>,
    pub plans: Vec<TablePlan>,
    /// Every sequence of the first source that the other database has too, owned by
    /// a column or not: carried forward one way each round (rule 7).
    pub sequences: Vec<TableName>,
    /// The sources do not LISTEN ([`Session::listen`]): rounds follow one another.
    deaf: bool,
    /// The sync's name: its row in `belt.listeners` while it waits.
    sync: String,
    /// How long that row counts without being renewed ([`doorbell::renew`]).
    lease: Duration,
}

/// The sequences of `from` that `to` has as well.
pub async fn shared_sequences(from: &Side, to: &Side) -> Result<Vec<TableName>, DbError> {
    let there = all_sequences(&to.client, &to.db).await?;
    Ok(all_sequences(&from.client, &from.db)
        .await?
        .into_iter()
        .filter(|s| there.contains(s))
        .collect())
}

impl Session {
    /// Connects both databases, fences `sync` (see [`Session::fence`]), checks the
    /// tables, sets receivers to replica mode, installs capture on the sources (and
    /// removes it from a database that is no longer a source) and LISTENs.
    pub async fn open(
        sync: &str,
        specs: [&DbSpec; 2],
        sources: [bool; 2],
        tables: &[TableName],
        stall: Duration,
        lease: Duration,
    ) -> Result<Session, SyncError> {
        let (notify, notifications) = mpsc::unbounded_channel();
        let mut clients = Vec::with_capacity(2);
        for i in 0..2 {
            clients.push(if sources[i] {
                connect_listening(specs[i], notify.clone()).await?
            } else {
                connect(specs[i]).await?
            });
        }
        let [a, b]: [_; 2] = clients.try_into().unwrap_or_else(|_| unreachable!("two clients"));
        let mut sides = [
            Side::new(specs[0].name.clone(), a, sources[0]),
            Side::new(specs[1].name.clone(), b, sources[1]),
        ];
        Session::fence(sync, &mut sides).await?;
        for i in 0..2 {
            settle(&sides[i], sources[1 - i], stall).await?;
        }
        let first = crate::catalog::first_source(sources);
        let (s, o) = (&sides[first], &sides[1 - first]);
        let infos = tables::resolve(
            &s.client,
            &s.db,
            &o.client,
            &o.db,
            &Selection::Listed(tables.to_vec()),
            false,
        )
        .await?;
        let mut captured = Vec::new();
        for side in sides.iter_mut() {
            if side.source {
                // Installed by the fence already; this adds the tables' triggers.
                captured =
                    capture::install(&mut side.client, &side.db, &infos, TriggerMode::Statement).await?;
                doorbell::wait(&side.client, &side.db, sync, true, lease).await?;
            } else {
                capture::uninstall_tables(&side.client, &side.db, &infos).await?;
            }
        }
        let mut plans: Vec<TablePlan> = captured
            .iter()
            .map(|c| TablePlan::new(&c.table, &c.delta))
            .collect();
        crate::engine::width::estimate(&sides[first].client, &sides[first].db, &mut plans).await?;
        let sequences = shared_sequences(&sides[first], &sides[1 - first]).await?;
        let pair = [
            (&sides[0].client, sides[0].db.as_str()),
            (&sides[1].client, sides[1].db.as_str()),
        ];
        if sources == [true, true] {
            let n = interleave::interleave(&sides, &sequences).await?;
            if n > 0 {
                tracing::info!(
                    sequences = n,
                    "sequences interleaved: each source draws its own values"
                );
            }
        } else if interleave::put_back(pair).await? > 0 {
            tracing::info!("interleaved sequences put back: one source now");
        }
        Ok(Session {
            sides,
            notifications,
            plans,
            sequences,
            deaf: false,
            sync: sync.to_string(),
            lease,
        })
    }

    /// Whether the sources wait for the capture triggers' NOTIFY ([`doorbell`]).
    /// Under sustained load the next round comes from the gap between rounds, and a
    /// notification per commit would serialize the application's commits for
    /// nothing: after a round that moved changes the sync stops waiting, and after
    /// one that found none it waits again. Returns whether it started waiting again:
    /// a transaction that committed before, or whose trigger ran before, notified
    /// nobody, and the caller looks for its changes ([`Session::has_changes`]).
    pub async fn listen(&mut self, on: bool) -> Result<bool, DbError> {
        if self.deaf != on {
            return Ok(false);
        }
        for side in self.sides.iter().filter(|s| s.source) {
            doorbell::wait(&side.client, &side.db, &self.sync, on, self.lease).await?;
        }
        self.deaf = !on;
        Ok(on)
    }

    /// Whether a source has changes waiting: one cheap query per source.
    pub async fn has_changes(&self) -> Result<bool, DbError> {
        for side in self.sides.iter().filter(|s| s.source) {
            if has_changes(side, &self.plans).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Makes this daemon the only one that writes for `sync`: it takes the sync's
    /// advisory lock on its first source (held while this session lives; a killed
    /// daemon's lock goes with its connection), then a new epoch in `belt.syncs` on
    /// both databases, which every write transaction checks ([`Side::fence`]). A sync
    /// another daemon holds is [`SyncError::Standby`].
    async fn fence(sync: &str, sides: &mut [Side; 2]) -> Result<(), SyncError> {
        // On the first source: a source's connection stays open while the sync is
        // idle (it listens), a receiver's is closed (`Session::park`).
        let lock = &sides[crate::catalog::first_source([sides[0].source, sides[1].source])];
        if !syncs::try_lock(&lock.client, &lock.db, sync).await? {
            let owner = syncs::owner(&lock.client, &lock.db, sync).await?;
            return Err(SyncError::Standby {
                sync: sync.to_string(),
                db: lock.db.clone(),
                owner: owner.unwrap_or_else(|| "another belt-syncd".into()),
            });
        }
        let me = crate::config::owner_name();
        for side in sides.iter_mut() {
            capture::install_schema(&mut side.client, &side.db).await?;
            let epoch = syncs::take_over(&side.client, &side.db, sync, &me).await?;
            side.fence = syncs::fence_sql(sync, epoch);
        }
        Ok(())
    }

    /// Closes the receiver's connection of a one-way sync (`specs`: the sync's two
    /// databases' settings, in order); a sync with two sources keeps both, each
    /// listening.
    pub fn park(self, specs: &[DbSpec; 2], stall: Duration) -> Idle {
        let Some(r) = self.sides.iter().position(|s| !s.source) else {
            return Idle::Awake(self);
        };
        let receiver = &specs[r];
        let [a, b] = self.sides;
        let (source, gone) = if r == 0 { (b, a) } else { (a, b) };
        Idle::Parked(Parked {
            source,
            receiver: (r, receiver.clone(), gone.fence),
            stall,
            notifications: self.notifications,
            plans: self.plans,
            sequences: self.sequences,
            sync: self.sync,
            lease: self.lease,
        })
    }
}

/// The per-session settings of one side: a bound on transactions left idle, and on a
/// receiver, replica mode (no echo, rule 3).
async fn settle(side: &Side, receives: bool, stall: Duration) -> Result<(), DbError> {
    // A transaction left open by a session belt gave up on (a network outage
    // mid-chunk) must not hold the application's rows locked for long.
    let limit = stall.as_millis() * 2;
    side.client
        .batch_execute(&format!("set idle_in_transaction_session_timeout = {limit}"))
        .await
        .map_err(|e| DbError::query(&side.db, "limit idle transactions", e))?;
    if receives {
        prepare_receiver(&side.client, &side.db).await?;
    }
    Ok(())
}

/// Whether `side` (a source) has changes waiting in any of `plans`' delta tables or a
/// TRUNCATE logged: one cheap query, so that an idle sync need not run a round to
/// find out.
async fn has_changes(side: &Side, plans: &[TablePlan]) -> Result<bool, DbError> {
    let mut sql = String::from("select exists (select 1 from belt.truncates)");
    for p in plans {
        sql.push_str(&format!(
            " or exists (select 1 from belt.{})",
            crate::pg::quote::ident(&p.delta)
        ));
    }
    Ok(side
        .client
        .query_typed_one(&sql, &[])
        .await
        .map_err(|e| DbError::query(&side.db, "look for changes", e))?
        .get(0))
}

/// An idle sync's connections: all of them, or the sources' only.
pub enum Idle {
    Awake(Session),
    Parked(Parked),
}

impl Idle {
    /// The sync's source sides and its tables' plans.
    pub fn sources(&mut self) -> (Vec<&mut Side>, &[TablePlan]) {
        match self {
            Idle::Awake(s) => (s.sides.iter_mut().filter(|s| s.source).collect(), &s.plans),
            Idle::Parked(p) => (vec![&mut p.source], &p.plans),
        }
    }

    /// Whether a source of the sync has changes waiting. Renews the sync's wait on
    /// each source first ([`doorbell::renew`]): its lease outlives the waits between
    /// these looks.
    pub async fn has_changes(&self) -> Result<bool, DbError> {
        match self {
            Idle::Awake(s) => {
                for side in s.sides.iter().filter(|s| s.source) {
                    doorbell::renew(&side.client, &side.db, &s.sync, s.lease).await?;
                }
                s.has_changes().await
            }
            Idle::Parked(p) => {
                doorbell::renew(&p.source.client, &p.source.db, &p.sync, p.lease).await?;
                has_changes(&p.source, &p.plans).await
            }
        }
    }
}

/// A one-way sync's session while it has nothing to do: the source's connection
/// (LISTEN, the sync's lock) stays, the receiver's is closed, so that an idle sync
/// holds one connection. [`Parked::unpark`] opens the receiver's again.
pub struct Parked {
    source: Side,
    /// The receiver's index in the sync's order, settings, and fence.
    receiver: (usize, DbSpec, String),
    stall: Duration,
    pub notifications: mpsc::UnboundedReceiver<String>,
    plans: Vec<TablePlan>,
    sequences: Vec<TableName>,
    sync: String,
    lease: Duration,
}

impl Parked {
    /// The settings of the receiver whose connection is closed.
    pub fn receiver_spec(&self) -> &DbSpec {
        &self.receiver.1
    }

    /// Opens the receiver's connection again, as [`Session::open`] did.
    pub async fn unpark(self) -> Result<Session, SyncError> {
        let (r, spec, fence) = self.receiver;
        let mut receiver = Side::new(spec.name.clone(), connect(&spec).await?, false);
        receiver.fence = fence;
        settle(&receiver, true, self.stall).await?;
        let sides = if r == 0 {
            [receiver, self.source]
        } else {
            [self.source, receiver]
        };
        Ok(Session {
            sides,
            notifications: self.notifications,
            plans: self.plans,
            sequences: self.sequences,
            deaf: false,
            sync: self.sync,
            lease: self.lease,
        })
    }
}
