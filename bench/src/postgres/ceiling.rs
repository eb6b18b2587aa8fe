//! The server's own single-row commit rate: `INSERT` transactions of one
//! row each, committed one by one, from one connection and from several at
//! once (where the server flushes the WAL for several commits together).
//! The ceiling of anything that commits once per step. And the time of a
//! round trip, the floor of every statement.

use std::time::{Duration, Instant};

use super::Admin;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How long each rate is measured.
const WINDOW: Duration = Duration::from_secs(1);

/// Single-row commits per second from `connections` connections at once,
/// into a table of `schema`, for [`WINDOW`].
pub(crate) async fn commit_rate(admin: &Admin, schema: &str, connections: usize) -> Res<f64> {
    let table = format!("\"{schema}\".ceiling");
    admin
        .client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)"
        ))
        .await?;
    let sql = format!("INSERT INTO {table} (v) VALUES ('{{\"x\":1}}')");
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = admin.connect().await?;
        let insert = client.prepare(&sql).await?;
        clients.push((client, insert));
    }
    let began = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (client, insert) in clients {
        set.spawn(async move {
            let mut n = 0u32;
            // Each statement outside a transaction block commits on its own.
            while began.elapsed() < WINDOW {
                client.execute(&insert, &[]).await?;
                n += 1;
            }
            Ok::<_, tokio_postgres::Error>(n)
        });
    }
    let mut total = 0u32;
    while let Some(n) = set.join_next().await {
        total += n??;
    }
    Ok(f64::from(total) / began.elapsed().as_secs_f64())
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
