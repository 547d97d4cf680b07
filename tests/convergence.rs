//! Randomized convergence: a seeded generator interleaves inserts, updates, deletes
//! and key updates on both sources of a sync, with rounds in between, over a small key
//! space so that the same keys collide. After every case both databases must equal a
//! latest-wins oracle computed from the generated history.
//!
//! Replay one case: `BELT_SEED=<seed> cargo test randomized`. `BELT_CASES` sets the
//! number of cases (default 200).

use std::collections::{BTreeMap, HashMap};

use belt::engine::Strategy;
use tokio_postgres::Client;

use crate::multimaster::Both;

const KEYS: i32 = 12;
const BASE_SEED: u64 = 0x5eed_2026;

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The oracle: what each side holds, and when each key last changed there.
#[derive(Default)]
struct Model {
    rows: [BTreeMap<i32, String>; 2],
    changed: [HashMap<i32, u64>; 2],
    tick: u64,
}

impl Model {
    fn touch(&mut self, side: usize, key: i32) {
        self.tick += 1;
        self.changed[side].insert(key, self.tick);
    }

    /// A round: per key, the side with the later change wins on both sides.
    fn round(&mut self) {
        let keys: Vec<i32> = self.changed[0]
            .keys()
            .chain(self.changed[1].keys())
            .copied()
            .collect();
        for k in keys {
            let (a, b) = (self.changed[0].get(&k), self.changed[1].get(&k));
            let winner = match (a, b) {
                (Some(x), Some(y)) => usize::from(y > x),
                (Some(_), None) => 0,
                _ => 1,
            };
            match self.rows[winner].get(&k).cloned() {
                Some(v) => {
                    self.rows[1 - winner].insert(k, v);
                }
                None => {
                    self.rows[1 - winner].remove(&k);
                }
            }
        }
        self.changed = Default::default();
    }
}

async fn run_case(both: &mut Both, seed: u64, case: i32) -> Result<(), String> {
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let base = case * 100;
    let ops = 10 + rng.below(30);
    for op in 0..ops {
        let side = rng.below(2) as usize;
        let client = if side == 0 { &both.a } else { &both.b };
        let key = base + rng.below(KEYS as u64) as i32;
        let value = format!("s{side}-op{op}");
        let present = model.rows[side].contains_key(&key);
        match (rng.below(4), present) {
            (0, false) | (1, false) => {
                exec(client, &format!("insert into t values ({key}, '{value}')")).await;
                model.rows[side].insert(key, value);
                model.touch(side, key);
            }
            (0, true) | (1, true) => {
                exec(client, &format!("update t set v = '{value}' where id = {key}")).await;
                model.rows[side].insert(key, value);
                model.touch(side, key);
            }
            (2, true) => {
                exec(client, &format!("delete from t where id = {key}")).await;
                model.rows[side].remove(&key);
                model.touch(side, key);
            }
            (3, true) => {
                let to = base + rng.below(KEYS as u64) as i32;
                if !model.rows[side].contains_key(&to) {
                    exec(client, &format!("update t set id = {to} where id = {key}")).await;
                    let v = model.rows[side].remove(&key).expect("present");
                    model.rows[side].insert(to, v);
                    model.touch(side, key);
                    model.touch(side, to);
                }
            }
            _ => {}
        }
        if rng.below(6) == 0 {
            both.round().await;
            model.round();
        }
    }
    both.settle().await;
    model.round();
    let want: Vec<String> = model.rows[0].iter().map(|(k, v)| format!("({k},{v})")).collect();
    if model.rows[0] != model.rows[1] {
        return Err("oracle sides differ (test bug)".into());
    }
    for (name, client) in [("a", &both.a), ("b", &both.b)] {
        let got = range(client, base).await;
        if got != want {
            return Err(format!("database {name}: got {got:?}, oracle {want:?}"));
        }
    }
    Ok(())
}

async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn range(client: &Client, base: i32) -> Vec<String> {
    client
        .query(
            "select t::text from t where id >= $1 and id < $1 + 100 order by id",
            &[&base],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn randomized_histories_converge_to_latest_wins() {
    let mut both = Both::new(
        "create table t (id int primary key, v text)",
        &["t"],
        Strategy::Latest,
    )
    .await;
    let replay = std::env::var("BELT_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let cases: u64 = std::env::var("BELT_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let seeds: Vec<u64> = match replay {
        Some(seed) => vec![seed],
        None => (0..cases).map(|i| BASE_SEED + i).collect(),
    };
    for (case, seed) in seeds.into_iter().enumerate() {
        if let Err(e) = run_case(&mut both, seed, case as i32).await {
            panic!("seed {seed} failed: {e}\nreplay: BELT_SEED={seed} cargo test randomized");
        }
    }
    let (a, b) = both.pending_deltas("t").await;
    assert_eq!((a, b), (0, 0), "delta tables are empty once settled");
}
