//! A process of the cross-process run (`durable_reliability::across`):
//! every process registers the relays, their children, their activities
//! and the ledger entity.
//!
//! `across --postgres <url> --schema <schema> [flags] <first|second|helper>
//! [stop-file]` (the flags are `durable_reliability::target`'s): `first`
//! starts the relays; `first` and `second` each signal their share of
//! numbers to the ledger, one after another. With a stop file the
//! process shuts down cleanly (its locks and leases given back) once the
//! file exists; without, it runs until every number is in the ledger and
//! every instance has finished.

use std::path::PathBuf;
use std::time::Duration;

use durable::Runtime;
use durable_reliability::across::{
    bump, leg, relay, relay_id, relay_input, senders, stamp, Ledger, CLIENT_BASE, CLIENT_SIGNALS,
    LEDGER, RELAYS,
};
use durable_reliability::target::{retrying, Target};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: across --postgres <url> --schema <schema> [flags] \
                 <first|second|helper> [stop-file]";
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let target = Target::from_args(&mut args).map_err(|e| format!("{e}\n{usage}"))?;
    let signals = match args.first().map(String::as_str) {
        Some("first") => Some(CLIENT_BASE[0]),
        Some("second") => Some(CLIENT_BASE[1]),
        Some("helper") => None,
        _ => return Err(usage.into()),
    };
    let stop = args.get(1).map(PathBuf::from);
    let builder = Runtime::builder()
        .entity::<Ledger>()
        .orchestrator(relay)
        .orchestrator(leg)
        .activity(stamp)
        .activity(bump)
        .poll_interval(Duration::from_millis(25));
    let runtime = target.configure(builder)?.start().await?;
    let client = runtime.client();
    if signals == Some(CLIENT_BASE[0]) {
        for r in 0..RELAYS {
            retrying(|| async {
                match client
                    .start_with_id(relay, &relay_id(r), relay_input(r))
                    .await
                {
                    Ok(_) | Err(durable::Error::InstanceExists { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await?;
        }
    }
    if let Some(base) = signals {
        for n in base..base + CLIENT_SIGNALS {
            client.entity::<Ledger>(LEDGER).signal().add(n).await?;
        }
    }
    let total: usize = senders().iter().map(Vec::len).sum();
    let mut conn = None;
    loop {
        if let Some(stop) = &stop {
            if stop.exists() {
                break;
            }
        } else {
            let ledger = client.entity::<Ledger>(LEDGER).state().await?;
            let full = ledger.is_some_and(|l| l.entries.len() >= total);
            if full && target.drained(&mut conn).await? {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await?;
    println!("stopped");
    Ok(())
}
