//! A wire proxy that counts round trips per statement: the server has no
//! `pg_stat_statements` loaded, and loading it needs a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Round trips counted by a [`Wire`] proxy: per statement (schema names
/// left out), and in all.
#[derive(Default)]
pub(crate) struct RoundTrips {
    pub(crate) by_statement: BTreeMap<String, u64>,
    pub(crate) total: u64,
}

/// A TCP proxy in front of the server that counts the client's round
/// trips: every `Sync` (the end of an extended-protocol exchange, which the
/// driver sends after each prepare and each execute) and every simple
/// `Query` (`BEGIN`, `COMMIT`), each put down to its statement's text.
pub(crate) struct Wire {
    port: u16,
    counts: Arc<Mutex<RoundTrips>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Wire {
    /// Listens on a free local port and forwards every connection to
    /// `upstream` (`host:port`).
    pub(crate) async fn start(upstream: String) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let counts = Arc::new(Mutex::new(RoundTrips::default()));
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counts) = (upstream.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = forward(client, server, &counts).await;
                    }
                });
            }
        });
        Ok(Self { port, counts, task })
    }

    /// The local port to connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The round trips counted so far, and resets the count.
    pub(crate) fn take(&self) -> RoundTrips {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Copies both ways until either side closes, parsing what the client
/// sends.
async fn forward(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    counts: &Mutex<RoundTrips>,
) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let down = tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
    let mut parser = Frontend::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from_client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        to_server.write_all(&buf[..n]).await?;
        parser.feed(&buf[..n], counts);
    }
    down.abort();
    Ok(())
}

/// The state of one connection's frontend message stream.
#[derive(Default)]
struct Frontend {
    pending: Vec<u8>,
    started: bool,
    /// TLS or GSS was asked for: the rest cannot be read.
    opaque: bool,
    /// Prepared statements' text, by name.
    statements: HashMap<String, String>,
    /// What the next `Sync` completes.
    exchange: Option<String>,
}

/// The NUL-terminated string at the start of `b`, and the rest.
fn cstr(b: &[u8]) -> (String, &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    (
        String::from_utf8_lossy(&b[..end]).into_owned(),
        b.get(end + 1..).unwrap_or_default(),
    )
}

/// A statement's text as one short line without the schema's prefix.
fn short(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    // `"any_schema".table` -> `table`
    while let Some(q) = rest.find('"') {
        out.push_str(&rest[..q]);
        let after = &rest[q + 1..];
        match after.find("\".") {
            Some(end) if !after[..end].contains(' ') => rest = &after[end + 2..],
            _ => {
                out.push('"');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let line = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(90) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

impl Frontend {
    fn feed(&mut self, bytes: &[u8], counts: &Mutex<RoundTrips>) {
        if self.opaque {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if !self.started {
                // The startup message (or a TLS request) has no type byte.
                let Some(len) = rest.get(..4).map(|l| be(l) as usize) else {
                    break;
                };
                if rest.len() < len {
                    break;
                }
                let code = rest.get(4..8).map_or(0, be);
                if code == 80_877_103 || code == 80_877_104 {
                    self.opaque = true;
                    return;
                }
                self.started = true;
                at += len;
                continue;
            }
            let Some(len) = rest.get(1..5).map(|l| be(l) as usize) else {
                break;
            };
            if rest.len() < 1 + len {
                break;
            }
            let (kind, body) = (rest[0], &rest[5..=len]);
            let counted = match kind {
                b'Q' => Some(cstr(body).0),
                b'P' => {
                    let (name, rest) = cstr(body);
                    let (sql, _) = cstr(rest);
                    self.exchange = Some(format!("(prepare) {}", short(&sql)));
                    self.statements.insert(name, short(&sql));
                    None
                }
                b'B' => {
                    let (_portal, rest) = cstr(body);
                    let (name, _) = cstr(rest);
                    self.exchange = self.statements.get(&name).cloned();
                    None
                }
                b'S' => Some(self.exchange.take().unwrap_or_else(|| "(sync)".to_owned())),
                _ => None,
            };
            if let Some(what) = counted {
                let mut c = counts.lock().unwrap_or_else(PoisonError::into_inner);
                c.total += 1;
                *c.by_statement.entry(short(&what)).or_default() += 1;
            }
            at += 1 + len;
        }
        self.pending.drain(..at);
    }
}

fn be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The connection string of `url` pointed at a local proxy on `port`.
pub(super) fn through(url: &str, port: u16) -> Res<String> {
    let config: tokio_postgres::Config = url.parse()?;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut out = format!("host=127.0.0.1 port={port}");
    if let Some(user) = config.get_user() {
        out += &format!(" user={}", quote(user));
    }
    if let Some(db) = config.get_dbname() {
        out += &format!(" dbname={}", quote(db));
    }
    if let Some(password) = config.get_password() {
        out += &format!(" password={}", quote(&String::from_utf8_lossy(password)));
    }
    Ok(out)
}

/// The server's `host:port`, for a proxy.
pub(super) fn upstream(url: &str) -> Res<String> {
    let config: tokio_postgres::Config = url.parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed frontend message.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend(body);
        m
    }

    #[test]
    fn counts_a_round_trip_per_sync_and_per_simple_query_under_its_statement() {
        let mut stream = Vec::new();
        // Startup: length, protocol 3.0, no parameters.
        stream.extend(9u32.to_be_bytes());
        stream.extend(196_608u32.to_be_bytes());
        stream.push(0);
        stream.extend(message(b'Q', b"BEGIN\0"));
        stream.extend(message(b'P', b"s0\0SELECT 1 FROM \"bench_1\".t\0\0\0"));
        stream.extend(message(b'D', b"Ss0\0"));
        stream.extend(message(b'S', b""));
        for _ in 0..2 {
            stream.extend(message(b'B', b"\0s0\0\0\0\0\0\0\0"));
            stream.extend(message(b'E', b"\0\0\0\0\0"));
            stream.extend(message(b'S', b""));
        }
        stream.extend(message(b'Q', b"COMMIT\0"));
        let counts = Mutex::new(RoundTrips::default());
        let mut parser = Frontend::default();
        // In pieces that split messages, as reads do.
        for piece in stream.chunks(3) {
            parser.feed(piece, &counts);
        }
        let counts = counts.into_inner().unwrap();
        assert_eq!(counts.total, 5);
        let by: Vec<(&str, u64)> = counts
            .by_statement
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            by,
            [
                ("(prepare) SELECT 1 FROM t", 1),
                ("BEGIN", 1),
                ("COMMIT", 1),
                ("SELECT 1 FROM t", 2)
            ]
        );
    }
}
