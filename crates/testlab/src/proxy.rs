//! A TCP proxy in front of a registry that throttles what it sends back, so a pull takes as
//! long as a test needs (per-attempt timeouts, cancellation mid-pull, concurrency limits), that
//! injects the registry faults a fleet meets (429 with `Retry-After`, 5xx bursts, a connection
//! cut mid-layer, a stall; see [`Fault`]), settable while it runs, and that logs each request so
//! a test can see what the runtime did.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proxy_fault::{head_end, response, Faults, RequestHead};
pub use crate::proxy_fault::{Fault, Lasting, Target};

#[derive(Default)]
struct Shared {
    /// Bytes per second towards the client; 0 means unthrottled.
    rate: AtomicU64,
    /// Bytes per second towards all clients together (a registry's egress cap); 0: none.
    total_rate: AtomicU64,
    /// When the shared cap has room for the next chunk.
    total_next: Mutex<Option<Instant>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    bytes: AtomicU64,
    stop: AtomicBool,
    faults: Faults,
    /// `METHOD path` of every request seen, in order.
    requests: Mutex<Vec<String>>,
}

impl Shared {
    /// Waits for `n` bytes' share of the total rate.
    fn pace_total(&self, n: u64, total: u64) {
        let cost = Duration::from_secs_f64(n as f64 / total as f64);
        let start = {
            let mut next = self.total_next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = next.map_or(now, |t| t.max(now));
            *next = Some(start + cost);
            start
        };
        if let Some(wait) = start.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// A running proxy; stops accepting when dropped.
pub struct SlowProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl SlowProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, bytes_per_second: u64) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        shared.rate.store(bytes_per_second, Ordering::SeqCst);
        let s = shared.clone();
        listener.set_nonblocking(true)?;
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(client, upstream, s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self { port, shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Caps what all connections together receive at `bytes_per_second` (0: no cap), as a
    /// registry's egress limit does, on top of the per-connection rate.
    pub fn set_total_rate(&self, bytes_per_second: u64) {
        self.shared
            .total_rate
            .store(bytes_per_second, Ordering::SeqCst);
    }

    pub fn set_rate(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Injects `fault` into the requests `target` names, for as long as `lasting` says; it
    /// replaces the fault in force, if any.
    pub fn inject(&self, fault: Fault, target: Target, lasting: Lasting) {
        self.shared.faults.set(fault, target, lasting);
    }

    /// Ends the fault in force: requests are forwarded untouched again.
    pub fn clear_fault(&self) {
        self.shared.faults.clear();
    }

    /// Faults injected so far: answers sent, stalls held, connections cut.
    pub fn faults_injected(&self) -> usize {
        self.shared.faults.injected()
    }

    /// Connections open now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    pub fn max_active_connections(&self) -> usize {
        self.shared.max_active.load(Ordering::SeqCst)
    }

    /// Bytes sent to clients so far; a pull that stopped stops this growing (idle keep-alive
    /// connections stay open, so connection counts alone do not show it).
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Waits (up to `deadline`) until no bytes flow for `quiet`; true if that happened.
    pub fn wait_quiet(&self, quiet: Duration, deadline: Duration) -> bool {
        let start = Instant::now();
        let mut last = self.bytes_sent();
        let mut since = Instant::now();
        while start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.bytes_sent();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }

    /// Requests seen, faulted ones included.
    pub fn requests(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// `METHOD path` of every request seen, in order (`HEAD /v2/lab/a/manifests/v1`), with
    /// ` Range: bytes=N-` on a resumed blob.
    pub fn request_lines(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests whose line contains `part` (a repository: `/lab/a/`).
    pub fn requests_for(&self, part: &str) -> usize {
        let lines = self.shared.requests.lock().unwrap();
        lines.iter().filter(|l| l.contains(part)).count()
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// A cut armed on one connection: the response to the request just forwarded is cut after
/// `after` bytes (`u64::MAX`: none armed); `seen` counts that response's bytes so far.
#[derive(Default)]
struct Cut {
    after: AtomicU64,
    seen: AtomicU64,
}

impl Cut {
    /// Called as a request is forwarded (containerd sends the next request only after reading
    /// the previous response, so the count starts with this request's response).
    fn arm(&self, after: u64) {
        self.seen.store(0, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
    }
}

const UNARMED: u64 = u64::MAX;

fn serve(client: TcpStream, upstream: u16, s: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_active.fetch_max(now, Ordering::SeqCst);
    let cut = Arc::new(Cut::default());
    cut.arm(UNARMED);
    if let (Ok(c), Ok(sv)) = (client.try_clone(), server.try_clone()) {
        let up = {
            let (s, cut) = (s.clone(), cut.clone());
            std::thread::spawn(move || requests(c, sv, &s, &cut))
        };
        responses(server.try_clone().ok(), client.try_clone().ok(), &s, &cut);
        let _ = up.join();
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    s.active.fetch_sub(1, Ordering::SeqCst);
}

/// Client to registry: reads each request head, logs it, and forwards it with its body, unless
/// a fault answers it (then the connection closes) or holds it. A chunked body (containerd
/// sends none) turns the rest of the connection into plain forwarding.
fn requests(mut client: TcpStream, mut server: TcpStream, s: &Shared, cut: &Cut) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut parsing = true;
    loop {
        let end = if parsing { head_end(&buf) } else { None };
        let Some(end) = end else {
            if !parsing && !buf.is_empty() {
                if server.write_all(&buf).is_err() {
                    break;
                }
                buf.clear();
            }
            match client.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if parsing && buf.len() > 64 * 1024 {
                parsing = false; // not a request head this proxy understands
            }
            continue;
        };
        let Some(head) = RequestHead::parse(&buf[..end]) else {
            parsing = false;
            continue;
        };
        s.requests.lock().unwrap().push(head.line());
        match s.faults.for_request(&head) {
            Some(f @ (Fault::TooManyRequests { .. } | Fault::Status(_))) => {
                let _ = client.write_all(&response(f, &head));
                break;
            }
            Some(Fault::Stall(d)) if !stall(&client, d, s) => break,
            Some(Fault::CutBlobAfter(k)) => cut.arm(k),
            _ => cut.arm(UNARMED),
        }
        // The head, then the body: what is buffered, then the rest as it comes.
        let body_end = (end as u64 + head.body).min(buf.len() as u64) as usize;
        if server.write_all(&buf[..body_end]).is_err() {
            break;
        }
        let mut body_left = end as u64 + head.body - body_end as u64;
        buf.drain(..body_end);
        while body_left > 0 {
            let want = body_left.min(chunk.len() as u64) as usize;
            match client.read(&mut chunk[..want]) {
                Ok(0) | Err(_) => return finish(&server),
                Ok(n) if server.write_all(&chunk[..n]).is_ok() => body_left -= n as u64,
                Ok(_) => return finish(&server),
            }
        }
        parsing = !head.chunked;
    }
    let _ = client.shutdown(Shutdown::Both);
    finish(&server);
}

fn finish(server: &TcpStream) {
    let _ = server.shutdown(Shutdown::Write);
}

/// Holds a request for `d`, or until the client closes its connection or the proxy stops;
/// true if the request should then be forwarded.
fn stall(client: &TcpStream, d: Duration, s: &Shared) -> bool {
    let until = Instant::now() + d;
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    let mut probe = [0u8; 1];
    let mut open = true;
    while open && Instant::now() < until && !s.stop.load(Ordering::SeqCst) {
        open = match client.peek(&mut probe) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        if open {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = client.set_read_timeout(None);
    open && !s.stop.load(Ordering::SeqCst)
}

/// Registry to client: throttled to the proxy's rate, and cut where a cut is armed.
fn responses(s_read: Option<TcpStream>, c_write: Option<TcpStream>, s: &Shared, cut: &Cut) {
    let (Some(mut s_read), Some(mut c_write)) = (s_read, c_write) else {
        return;
    };
    let mut buf = [0u8; 16 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let rate = s.rate.load(Ordering::SeqCst);
        let total = s.total_rate.load(Ordering::SeqCst);
        // The smaller of the two limits sets the chunk: about 20 chunks a second.
        let chunk = match [rate, total].into_iter().filter(|r| *r > 0).min() {
            None => buf.len(),
            Some(slowest) => (slowest as usize / 20).clamp(1, buf.len()),
        };
        let mut n = match s_read.read(&mut buf[..chunk]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let after = cut.after.load(Ordering::SeqCst);
        let seen = cut.seen.fetch_add(n as u64, Ordering::SeqCst);
        let cutting = after != UNARMED && seen + n as u64 > after && s.faults.claim_cut();
        if cutting {
            n = after.saturating_sub(seen) as usize;
        }
        if total > 0 {
            s.pace_total(n as u64, total);
        }
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        s.bytes.fetch_add(n as u64, Ordering::SeqCst);
        if cutting {
            break;
        }
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
}
