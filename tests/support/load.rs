//! An application writing to both databases while faults are injected, and a
//! record of what it committed, so a test can tell a lost write from a doubled one.
//!
//! Each writer owns a key range (inserts, updates, deletes of its own rows) and
//! also updates the shared hot rows 1..=HOT, which makes conflicts. The writers run
//! on a thread of their own, so that a test blocked in a `beltctl` call does not
//! pause the load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use belt::pg::{connect, DbSpec};

use super::{assert_same, Pair, DST, SRC};

/// Table the load writes: `create table` statement for both databases.
pub const SCHEMA: &str =
    "create table t (id bigint primary key, owner text not null, n int not null, v text); \
     insert into t select g, 'seed', 0, '' from generate_series(1, 10) g";
/// Rows 1..=HOT exist on both sides and are updated by every writer.
const HOT: i64 = 10;

/// The final state of one writer's own rows: id → n, as it committed them.
pub type Model = BTreeMap<i64, i32>;

/// Writers running against the databases.
pub struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(i64, Model)>>>,
}

impl Load {
    /// Starts one writer per `(database, first key)`, each committing about
    /// `per_second` transactions a second, `hot_percent` of them updates of the
    /// shared hot rows, with a seed for its choices.
    pub fn start(writers: Vec<(DbSpec, i64)>, per_second: u32, hot_percent: u64, seed: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (i, (spec, base)) in writers.into_iter().enumerate() {
                    let stop = flag.clone();
                    let seed = seed.wrapping_add(i as u64 * 7919);
                    let mix = (per_second, hot_percent);
                    tasks.push(tokio::spawn(write(spec, base, mix, seed, stop)));
                }
                let mut models = Vec::new();
                for t in tasks {
                    models.push(t.await.expect("writer panicked"));
                }
                models
            })
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writers; each writer's first key and model.
    pub fn finish(mut self) -> Vec<(i64, Model)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("load thread")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A small deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn write(
    spec: DbSpec,
    base: i64,
    (per_second, hot_percent): (u32, u64),
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (i64, Model) {
    let client = connect(&spec).await.expect("writer connects");
    client
        .batch_execute("set search_path = public; reset row_security")
        .await
        .unwrap();
    let owner = spec.name.clone();
    let pause = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let mut rng = Rng(seed | 1);
    let mut model = Model::new();
    let mut next = base;
    while !stop.load(Ordering::SeqCst) {
        let own: Vec<i64> = model.keys().copied().collect();
        let pick = |rng: &mut Rng| own[rng.below(own.len() as u64) as usize];
        let choice = if rng.below(100) < hot_percent {
            9
        } else {
            rng.below(8)
        };
        match choice {
            0..=4 => {
                client
                    .execute(
                        "insert into t values ($1, $2, 0, md5($1::bigint::text))",
                        &[&next, &owner],
                    )
                    .await
                    .unwrap();
                model.insert(next, 0);
                next += 1;
            }
            5..=6 if !own.is_empty() => {
                let id = pick(&mut rng);
                client
                    .execute("update t set n = n + 1 where id = $1", &[&id])
                    .await
                    .unwrap();
                *model.get_mut(&id).unwrap() += 1;
            }
            7 if !own.is_empty() => {
                let id = pick(&mut rng);
                client
                    .execute("delete from t where id = $1", &[&id])
                    .await
                    .unwrap();
                model.remove(&id);
            }
            _ => {
                let hot = 1 + rng.below(HOT as u64) as i64;
                client
                    .execute(
                        "update t set v = $2, n = n + 1 where id = $1",
                        &[&hot, &format!("{owner}:{next}")],
                    )
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(pause).await;
    }
    (base, model)
}

/// Waits for a clean round after the load stopped and checks the outcome: nothing
/// pending, both databases equal row by row, each writer's rows as it left them.
pub async fn assert_converged(pair: &Pair, models: &[(i64, Model)]) {
    pair.kick_wait();
    let status = pair.status();
    assert_eq!(status["pending_rows"], 0, "{status}");
    assert_same(pair, "t").await;
    for &(base, ref model) in models {
        for db in [SRC, DST] {
            let rows = pair
                .connect(db)
                .await
                .query(
                    "select id, n from t where id >= $1 and id < $1 + 1000000 order by id",
                    &[&base],
                )
                .await
                .unwrap();
            let found: Model = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            assert_eq!(
                found.len(),
                model.len(),
                "{db}: rows of the writer from {base}: lost or doubled"
            );
            assert!(
                found == *model,
                "{db}: rows of the writer from {base} differ from what it committed"
            );
        }
    }
}
