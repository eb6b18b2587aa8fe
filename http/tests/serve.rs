//! The ready server: it answers plain HTTP/1.1 on a loopback port, and
//! refuses to serve beyond loopback without a token.

mod common;

use std::net::SocketAddr;

use common::{api, within};
use durable_http::{serve, ApiOptions, ServeError};
use serde_json::Value;
use tokio::net::TcpStream;

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) to
/// `addr` and returns the status code, the head and the body.
async fn exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let stream = within(TcpStream::connect(addr)).await.expect("connects");
    let mut sent = 0;
    let bytes = request.as_bytes();
    while sent < bytes.len() {
        within(stream.writable()).await.expect("writable");
        match stream.try_write(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("write: {e}"),
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        within(stream.readable()).await.expect("readable");
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
    let answer = String::from_utf8(answer).expect("a UTF-8 answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// The header `name` in an answer's `head`, or `""`.
fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("", |(_, v)| v.trim())
}

/// A body as JSON; a chunked body is not expected of these small answers.
fn json(head: &str, body: &str) -> Value {
    assert!(
        !header(head, "transfer-encoding").contains("chunked"),
        "{head}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {body:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_http_on_a_loopback_port() {
    let api = api().await;
    let server = serve(
        api.client.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ApiOptions::default(),
    )
    .await
    .expect("serves on loopback without a token");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0, "the port chosen");

    let input = r#"{"customer": "Ada", "quantity": 4}"#;
    let (status, head, body) = exchange(
        addr,
        &format!(
            "POST /orchestrations/price_order?id=tcp-1 HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{input}",
            input.len()
        ),
    )
    .await;
    assert_eq!(status, 202, "{head}\n{body}");
    assert_eq!(header(&head, "location"), "/instances/tcp-1");
    assert_eq!(json(&head, &body)["id"], "tcp-1");

    let done = common::until("the instance to finish over TCP", || async {
        let (status, head, body) = exchange(
            addr,
            "GET /instances/tcp-1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        (status == 200).then(|| json(&head, &body))
    })
    .await;
    assert_eq!(done["output"], "Ada pays 1000");

    let (status, head, body) = exchange(
        addr,
        "GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(json(&head, &body)["error"], "no_route");

    within(server.shutdown()).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_checks_the_token_it_is_given() {
    let api = api().await;
    let server = serve(
        api.client.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ApiOptions::with_token("s3cret"),
    )
    .await
    .expect("serves");
    let addr = server.local_addr();
    let (status, head, _) = exchange(
        addr,
        "GET /instances HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(header(&head, "www-authenticate"), "Bearer");
    let (status, head, body) = exchange(
        addr,
        "GET /instances HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cret\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert_eq!(json(&head, &body)["instances"], serde_json::json!([]));
    within(server.shutdown()).await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_network_address_without_a_token() {
    let api = api().await;
    for (addr, options) in [
        ("0.0.0.0:0", ApiOptions::default()),
        ("[::]:0", ApiOptions::default()),
        ("0.0.0.0:0", ApiOptions::with_token("")),
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        match serve(api.client.clone(), addr, options).await {
            Err(ServeError::TokenRequired { addr: refused }) => assert_eq!(refused, addr),
            Err(other) => panic!("{addr}: the wrong refusal: {other}"),
            Ok(server) => {
                let listening = server.local_addr();
                server.shutdown().await;
                panic!("{addr}: served unauthenticated on {listening}");
            }
        }
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_an_address_it_cannot_bind() {
    let api = api().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = taken.local_addr().unwrap();
    match serve(api.client.clone(), addr, ApiOptions::default()).await {
        Err(ServeError::Bind { addr: refused, .. }) => assert_eq!(refused, addr),
        Err(other) => panic!("the wrong error: {other}"),
        Ok(server) => {
            server.shutdown().await;
            panic!("bound {addr} twice");
        }
    }
    drop(taken);
    api.stop().await;
}
