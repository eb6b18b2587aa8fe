//! A small WebDriver client over chromedriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them): plain HTTP and JSON, so
//! the dashboard's tests drive a real headless Chromium with no other
//! dependency.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long anything in the browser may take before a test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// A browser session, closed (with its driver) when dropped.
pub(crate) struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Where screenshots go.
    pub(crate) shots: PathBuf,
}

fn find(env: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "{} not found: install Debian's `chromium` and `chromium-driver` (.ci/run does), or set {env}",
        names[0]
    );
}

/// One HTTP/1.1 exchange with the driver (or with any server on
/// `127.0.0.1` that answers JSON, such as the API under test).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // The driver may keep the connection open: read the head, then as
    // many bytes as it announces (or chunks up to the last one).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("the driver closed the connection"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let got = raw.len() - head_end;
        let done = match length {
            Some(n) => got >= n,
            None if chunked => raw.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked { dechunk(&rest) } else { rest };
    serde_json::from_str(&body).map_err(std::io::Error::other)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a laptop's window.
    pub(crate) fn start(shots: PathBuf) -> Self {
        let chromedriver = find("CHROMEDRIVER", &["chromedriver"]);
        let chromium = find("CHROMIUM", &["chromium", "chromium-browser", "chrome"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            shots,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            match http(port, "GET", "/status", None) {
                Ok(v) if v["value"]["ready"] == true => break,
                _ => {}
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1366,900"],
            },
        } } });
        let created = http(port, "POST", "/session", Some(&caps)).expect("a session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        std::fs::create_dir_all(&browser.shots).expect("the screenshots' directory");
        browser
    }

    fn call(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        let reply =
            http(self.port, method, &path, body).unwrap_or_else(|e| panic!("{method} {what}: {e}"));
        if reply["value"]["error"].is_string() {
            panic!("{method} {what}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    /// Opens `url`.
    pub(crate) fn open(&self, url: &str) {
        self.call("POST", "url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub(crate) fn run(&self, script: &str, args: &[Value]) -> Value {
        self.call(
            "POST",
            "execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` until it returns something other than `null` or
    /// `false`, and returns that.
    pub(crate) fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let v = self.run(script, &[]);
            if !v.is_null() && v != false {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot("timed-out");
                panic!(
                    "waited {PATIENCE:?} in the browser for {what}; the page: {}",
                    self.run("return document.getElementById('main').innerText", &[])
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a screenshot as `<name>.png` among the test's artifacts.
    pub(crate) fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", "screenshot", None);
        let bytes = base64(png.as_str().unwrap_or_default());
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("the screenshot is written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
