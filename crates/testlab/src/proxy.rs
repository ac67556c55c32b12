//! A TCP proxy in front of a registry that throttles what it sends back, so a pull takes as
//! long as a test needs (per-attempt timeouts, cancellation mid-pull, concurrency limits), and
//! counts connections and requests so a test can see what the runtime did.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    /// Bytes per second towards the client; 0 means unthrottled.
    rate: AtomicU64,
    active: AtomicUsize,
    max_active: AtomicUsize,
    requests: AtomicUsize,
    bytes: AtomicU64,
    stop: AtomicBool,
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

    pub fn set_rate(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
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

    /// Requests seen (the first line of each client write that starts a request).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(client: TcpStream, upstream: u16, s: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let now = s.active.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_active.fetch_max(now, Ordering::SeqCst);
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let head = &buf[..n.min(8)];
                if [&b"GET "[..], b"HEAD ", b"POST", b"PUT "]
                    .iter()
                    .any(|m| head.starts_with(m))
                {
                    s.requests.fetch_add(1, Ordering::SeqCst);
                }
                if s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s_write.shutdown(Shutdown::Write);
        })
    };
    let (mut s_read, mut c_write) = (server, client);
    let mut buf = [0u8; 16 * 1024];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let rate = s.rate.load(Ordering::SeqCst);
        let chunk = if rate == 0 {
            buf.len()
        } else {
            (rate as usize / 20).clamp(1, buf.len())
        };
        let n = match s_read.read(&mut buf[..chunk]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        s.bytes.fetch_add(n as u64, Ordering::SeqCst);
        if rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
    let _ = up.join();
    s.active.fetch_sub(1, Ordering::SeqCst);
}
