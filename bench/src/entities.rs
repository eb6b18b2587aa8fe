//! Workloads for durable entities: a flood of signals to one entity, and
//! signals spread over many, read against SQLite's own single-row commit
//! rate measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable::{entity, orchestrator, Context};
use serde::{Deserialize, Serialize};

use crate::workloads::{builder, db, sqlite_commit_rate};
use crate::{median, Settings};

type Res = Result<(), Box<dyn std::error::Error>>;

/// Signals in flight at once from the client.
const IN_FLIGHT: usize = 256;

/// A counter: the aggregator pattern's entity.
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[entity]
impl Counter {
    fn add(&mut self, by: u64) {
        self.n += by;
    }
}

/// Signals `n` additions to one counter, all from one turn.
#[orchestrator]
async fn spray(ctx: Context, n: u64) {
    for _ in 0..n {
        ctx.entity::<Counter>("c0").signal().add(1);
    }
}

/// 10,000 signals sent by one orchestration's turn to one entity: applied
/// operations per second from the start.
async fn from_a_turn(s: Settings, n: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (_dir, path) = db()?;
    let rt = builder(&path, s)
        .entity::<Counter>()
        .orchestrator(spray)
        .start()
        .await?;
    let t = Instant::now();
    rt.client().start(spray, n).await?;
    while reached(&path, n)? < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    rt.shutdown().await?;
    Ok(rate)
}

/// How many entities have reached `n`, read straight from the file.
fn reached(path: &std::path::Path, n: u64) -> Result<u64, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row(
        "SELECT count(*) FROM instances WHERE name = '@Counter' \
         AND json_extract(output, '$.state.n') = ?1",
        [n],
        |r| r.get(0),
    )
}

/// Sends `per` signals to each of `keys` entities (all in flight together,
/// [`IN_FLIGHT`] at a time), waits until every entity has applied them,
/// and returns operations applied per second.
async fn flood(s: Settings, keys: u64, per: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let (_dir, path) = db()?;
    let rt = builder(&path, s).entity::<Counter>().start().await?;
    let client = rt.client();
    let room = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let t = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for round in 0..per {
        for k in 0..keys {
            let (client, room) = (client.clone(), Arc::clone(&room));
            let permit = room.acquire_owned().await?;
            sends.spawn(async move {
                let _permit = permit;
                let key = format!("c{k}");
                client.entity::<Counter>(&key).signal().add(1).await?;
                let _ = round;
                Ok::<_, durable::Error>(())
            });
        }
    }
    while let Some(sent) = sends.join_next().await {
        sent??;
    }
    while reached(&path, per)? < keys {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = (keys * per) as f64 / t.elapsed().as_secs_f64();
    rt.shutdown().await?;
    Ok(rate)
}

/// 10,000 signals to one entity; 1,000 entities × 10 signals.
pub(crate) async fn entities(s: Settings) -> Res {
    let (mut one, mut many, mut turn, mut commits) = (vec![], vec![], vec![], vec![]);
    for _ in 0..s.runs {
        one.push(flood(s, 1, 10_000).await?);
        many.push(flood(s, 1_000, 10).await?);
        turn.push(from_a_turn(s, 10_000).await?);
        commits.push(sqlite_commit_rate(s)?);
    }
    let (one, many, turn) = (median(&mut one), median(&mut many), median(&mut turn));
    let commit = median(&mut commits);
    println!(
        "entities: 10,000 client signals to one entity: median {one:.0} operations applied/s; \
         1,000 entities x 10 client signals: {many:.0}/s; 10,000 signals from one orchestration \
         turn to one entity: {turn:.0}/s; SQLite alone {commit:.0} single-row commits/s; ratios \
         {:.1}, {:.1} and {:.1} (client signals from {IN_FLIGHT} tasks; runs: {})",
        one / commit,
        many / commit,
        turn / commit,
        s.runs
    );
    Ok(())
}
