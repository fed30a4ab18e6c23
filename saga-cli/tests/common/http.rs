//! `saga serve` as a user runs it, and a minimal HTTP/1.1 client over `TcpStream`
//! (one request per connection, `Connection: close`): enough to check statuses,
//! headers and bodies without an HTTP client dependency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::saga_command;

/// A running `saga serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `saga <args> serve --listen 127.0.0.1:0 <serve_args>` and waits for its
/// `listening on http://ADDR` line.
pub fn serve(args: &[&str], serve_args: &[&str]) -> Server {
    let mut child = saga_command()
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(serve_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run saga serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the first line");
    let addr = match line.trim().strip_prefix("listening on http://") {
        Some(addr) => addr.to_owned(),
        None => {
            let _ = child.kill();
            panic!(
                "saga serve did not start: {line:?} (exit {:?})",
                child.wait()
            );
        }
    };
    Server { child, addr }
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, `name: value`, names in lower case.
    pub headers: Vec<String>,
    pub body: String,
}

impl Response {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "not JSON: {self:#?}"
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }

    /// A failure's body: asserts `status` and the error `code`, returns the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self:#?}");
        let v = self.json();
        assert_eq!(v["code"], code, "{self:#?}");
        v["message"].as_str().expect("a message").to_owned()
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(&format!("{name}: ")))
    }
}

impl Server {
    /// Sends SIGTERM (to this child, by its pid) and returns how it exited.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        self.child.wait().expect("wait for saga serve")
    }

    /// Sends one request and reads the whole response.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to saga serve");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        let raw = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<String> = lines
            .map(|l| match l.split_once(':') {
                Some((name, value)) => format!("{}: {}", name.to_lowercase(), value.trim()),
                None => l.to_owned(),
            })
            .collect();
        assert!(
            !headers.iter().any(|h| h == "transfer-encoding: chunked"),
            "this client reads no chunked bodies"
        );
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        self.request("POST", path, Some(body))
    }
}
