//! `fanout` and `latency` in one process, as on SQLite: the client and the
//! work in the same runtime.

use std::sync::Arc;
use std::time::Instant;

use durable::store::PostgresStore;
use durable::Runtime;

use super::procs::options;
use super::store::{BenchStore, Calls};
use super::wire::{through, RoundTrips, Wire};
use super::{on_schema, Admin, Res, FANOUT, LATENCY_RUNS};
use crate::workloads::{fan, one, register, start_to_result};

/// One instance fanning out [`FANOUT`] activities in one process: seconds
/// from start to result.
pub(super) async fn fanout_run(admin: &Admin) -> Res<f64> {
    on_schema(admin, async |schema| {
        let runtime = register(Runtime::builder())
            .postgres_with(admin.url.clone(), options(schema))
            .start()
            .await?;
        let began = Instant::now();
        let h = runtime.client().start(fan, FANOUT).await?;
        let out = h.result().await?;
        let secs = began.elapsed().as_secs_f64();
        if out != FANOUT * (FANOUT + 1) / 2 {
            return Err(format!("fanout: the sum came out {out}").into());
        }
        runtime.shutdown().await?;
        Ok(secs)
    })
    .await
}

/// Start to result of a one-activity instance in one process, ms.
pub(super) async fn latency_run(admin: &Admin) -> Res<Vec<f64>> {
    on_schema(admin, async |schema| {
        let runtime = register(Runtime::builder())
            .postgres_with(admin.url.clone(), options(schema))
            .start()
            .await?;
        let samples = start_to_result(&runtime.client(), LATENCY_RUNS).await?;
        runtime.shutdown().await?;
        Ok(samples)
    })
    .await
}

/// `latency` in one process whose store calls are timed, or counted in
/// round trips through `wire`: the samples, the calls and the round trips
/// of the measured instances.
pub(super) async fn latency_profiled(
    admin: &Admin,
    wire: Option<&Wire>,
) -> Res<(Vec<f64>, Vec<String>, RoundTrips)> {
    on_schema(admin, async |schema| {
        let url = match wire {
            Some(w) => through(&admin.url, w.port())?,
            None => admin.url.clone(),
        };
        let options = options(schema);
        let store =
            tokio::task::spawn_blocking(move || PostgresStore::connect_with(&url, &options))
                .await??;
        let calls = Arc::new(Calls::default());
        let runtime = register(Runtime::builder())
            .store(BenchStore::profiled(store, Arc::clone(&calls)))
            .start()
            .await?;
        let client = runtime.client();
        // Its warm-up runs only: the measured ones follow, counted alone.
        start_to_result(&client, 0).await?;
        calls.reset();
        if let Some(w) = wire {
            w.take();
        }
        let mut samples = Vec::with_capacity(LATENCY_RUNS as usize);
        for i in 0..LATENCY_RUNS {
            let began = Instant::now();
            let out = client.start(one, i).await?.result().await?;
            samples.push(crate::ms(began.elapsed()));
            if out != i + 1 {
                return Err(format!("latency: instance {i} returned {out}").into());
            }
        }
        let trips = wire.map(Wire::take).unwrap_or_default();
        runtime.shutdown().await?;
        Ok((samples, calls.lines(), trips))
    })
    .await
}
