//! The checkout workflow behind the HTTP API: start orders with `curl`,
//! poll them, approve them, read the result (the README shows the whole
//! exchange).
//!
//! Run: `cargo run --release -p durable-examples --example http_api --
//! [--port N] [--db PATH]` (port 8080 unless given; `--port 0` takes a
//! free one; the database is `http_api.db` unless given). It prints the
//! address it listens on, `http://127.0.0.1:PORT`, and serves until
//! Ctrl-C. It listens on 127.0.0.1 only; with `DURABLE_TOKEN` set, every
//! request must carry `Authorization: Bearer $DURABLE_TOKEN`.

use std::net::SocketAddr;

use durable::Runtime;
use durable_examples::order;
use durable_http::{serve, ApiOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: http_api [--port N] [--db PATH]";
    let (mut port, mut db) = (8080u16, "http_api.db".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or(format!("--port takes a port number\n{usage}"))?;
            }
            "--db" => db = args.next().ok_or(format!("--db takes a path\n{usage}"))?,
            other => return Err(format!("unknown argument `{other}`\n{usage}").into()),
        }
    }
    let runtime = order::register(Runtime::builder().sqlite(&db))
        .start()
        .await?;
    let options = match std::env::var("DURABLE_TOKEN") {
        Ok(token) if !token.is_empty() => ApiOptions::with_token(token),
        _ => ApiOptions::default(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let server = serve(runtime.client(), addr, options).await?;
    println!("store: {db} (SQLite)");
    println!("listening on http://{}", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    runtime.shutdown().await?;
    Ok(())
}
