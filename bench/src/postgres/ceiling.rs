//! The server's own single-row commit rate: `INSERT` transactions of one
//! row each, committed one by one, from one connection and from several at
//! once (where the server flushes the WAL for several commits together).
//! The ceiling of anything that commits once per step. The same with a
//! `NOTIFY` in each transaction, as the store's commits that queue work
//! have: PostgreSQL serializes notifying commits on one lock held through
//! the WAL flush, so they cannot share one. And the time of a round trip,
//! the floor of every statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Admin;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How long one window of a commit rate lasts.
const WINDOW: Duration = Duration::from_millis(250);

/// Windows of each kind per rate: plain and notifying ones alternate, so
/// that both meet the same disk (which other work on the machine shares).
const WINDOWS: u32 = 4;

/// A connection and its prepared `INSERT`.
type Conn = Arc<(tokio_postgres::Client, tokio_postgres::Statement)>;

/// Single-row commits per second from `connections` connections at once,
/// into a table of `schema`: plain, and with a notification in each
/// transaction (one round trip all the same).
pub(crate) async fn commit_rates(
    admin: &Admin,
    schema: &str,
    connections: usize,
) -> Res<(f64, f64)> {
    let table = format!("\"{schema}\".ceiling");
    admin
        .client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)"
        ))
        .await?;
    let sql = format!("INSERT INTO {table} (v) VALUES ('{{\"x\":1}}')");
    // Two statements in one simple query: one implicit transaction.
    let notifying: Arc<str> = format!("{sql}; SELECT pg_notify('{schema}', '')").into();
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = admin.connect().await?;
        let insert = client.prepare(&sql).await?;
        conns.push(Arc::new((client, insert)));
    }
    let (mut plain, mut notified) = ((0, 0.0), (0, 0.0));
    for w in 0..2 * WINDOWS {
        let notify = w % 2 == 1;
        let (n, secs) = window(&conns, notify.then(|| Arc::clone(&notifying))).await?;
        let sum = if notify { &mut notified } else { &mut plain };
        sum.0 += n;
        sum.1 += secs;
    }
    Ok((
        f64::from(plain.0) / plain.1,
        f64::from(notified.0) / notified.1,
    ))
}

/// Commits in one [`WINDOW`] on every connection at once, and its length
/// in seconds: the prepared `INSERT`, or `notifying` when given.
async fn window(conns: &[Conn], notifying: Option<Arc<str>>) -> Res<(u32, f64)> {
    let began = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for conn in conns {
        let (conn, notifying) = (Arc::clone(conn), notifying.clone());
        set.spawn(async move {
            let (client, insert) = &*conn;
            let mut n = 0u32;
            // Outside a transaction block each commits on its own.
            while began.elapsed() < WINDOW {
                match &notifying {
                    Some(sql) => client.batch_execute(sql).await?,
                    None => client.execute(insert, &[]).await.map(drop)?,
                }
                n += 1;
            }
            Ok::<_, tokio_postgres::Error>(n)
        });
    }
    let mut total = 0u32;
    while let Some(n) = set.join_next().await {
        total += n??;
    }
    Ok((total, began.elapsed().as_secs_f64()))
}

/// The median time of a `SELECT 1` round trip on one connection, in µs,
/// over 1,000: what every statement of a store call costs at least.
pub(crate) async fn round_trip(admin: &Admin) -> Res<f64> {
    let client = admin.connect().await?;
    let select = client.prepare("SELECT 1").await?;
    let mut samples = Vec::with_capacity(1_000);
    for _ in 0..1_000 {
        let began = Instant::now();
        client.query_one(&select, &[]).await?;
        samples.push(began.elapsed().as_secs_f64() * 1e6);
    }
    Ok(crate::median(&mut samples))
}
