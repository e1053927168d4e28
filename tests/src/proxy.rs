//! A TCP proxy in front of PostgreSQL (or RabbitMQ) that the test controls, for the faults a
//! real network makes: a connection that goes silent (half-open, also in the middle of a
//! `COPY`), one that drops right after the server committed, before its answer reaches the
//! client, and a failover (the same address now leads to another server). Only `freeze` means
//! anything for a broker's connections; `hold_answers` (requests reach the server, its answers
//! wait) and `silence_open_connections` (half-open: the connections it holds go silent, new
//! ones pass) for Redis's; `cut_answer_to` (a lost answer) and the largest request seen
//! (MongoDB wire messages) for a document store's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};

#[derive(Default)]
struct Faults {
    /// Nothing is forwarded, in either direction, on any connection (new ones included).
    frozen: AtomicBool,
    /// The next time a write commits, its answer is dropped and the connection cut.
    cut_next_commit: AtomicBool,
    /// ... and every connection then goes silent (the server unreachable while the recorder
    /// asks what became of its COMMIT).
    freeze_after_cut: AtomicBool,
    /// Any COMMIT arms the cut, not only one after a write's text (statements prepared on a
    /// connection are sent by name after their first use).
    cut_any_commit: AtomicBool,
    /// Everything goes silent once the `COPY` of operations starts sending its rows.
    freeze_in_copy: AtomicBool,
    /// Requests are forwarded; the server's answers wait.
    answers_held: AtomicBool,
    /// Connections numbered below this are silent forever (half-open); later ones pass.
    silent_below: AtomicUsize,
    /// Numbers connections as they are accepted.
    accepted: AtomicUsize,
    /// The next request containing these bytes reaches the server; its answer is dropped and
    /// the connection cut.
    cut_answer_to: std::sync::Mutex<Option<Vec<u8>>>,
    /// The largest MongoDB wire message a client sent (its length field).
    largest_request: AtomicUsize,
    /// Every byte clients sent, once recording is on.
    recorded: std::sync::Mutex<Option<Vec<u8>>>,
    cuts: AtomicUsize,
    /// Where new connections go.
    upstream: std::sync::Mutex<String>,
}

/// A proxy to `upstream` on a port of its own; stops when dropped.
pub struct PgProxy {
    pub port: u16,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(upstream: &str) -> Self {
        // A fixed receive buffer (no autotuning up to tens of MB): when the proxy stops
        // reading, the sender blocks as it would behind a silent peer.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(128 * 1024).expect("SO_RCVBUF");
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let listener = socket.listen(1024).expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let faults = Arc::new(Faults::default());
        *faults.upstream.lock().unwrap() = upstream.to_string();
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, shared.clone(), number));
            }
        });
        Self { port, faults, task }
    }

    /// `url` (a postgres:// URL to 127.0.0.1:5432) through this proxy, without TLS so that the
    /// proxy sees which messages pass.
    pub fn url(&self, url: &str) -> String {
        let url = url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port));
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}sslmode=disable")
    }

    /// A proxy in front of the test broker, and the `amqp://` URL that reaches it through the
    /// proxy.
    pub async fn in_front_of_rabbitmq() -> (Self, String) {
        let url = crate::rabbitmq_url();
        let (scheme_and_user, rest) = url
            .rsplit_once('@')
            .expect("amqp://user:pass@host:port/vhost");
        let (address, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let proxy = Self::start(address).await;
        let through = format!("{scheme_and_user}@127.0.0.1:{}/{vhost}", proxy.port);
        (proxy, through)
    }

    /// Every connection goes silent: bytes are neither delivered nor refused.
    pub fn freeze(&self) {
        self.faults.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.faults.frozen.store(false, Ordering::SeqCst);
    }

    /// Once a write (an INSERT or a COPY into `operation`) has been sent, the server's answer that
    /// ends its transaction (ReadyForQuery, idle) is dropped and the connection closed: the
    /// server committed, the client never hears of it.
    pub fn cut_next_commit(&self) {
        self.faults.cut_next_commit.store(true, Ordering::SeqCst);
    }

    /// As `cut_next_commit`, and every connection goes silent right after the cut (until
    /// [`PgProxy::thaw`]).
    pub fn cut_next_commit_and_freeze(&self) {
        self.faults.freeze_after_cut.store(true, Ordering::SeqCst);
        self.cut_next_commit();
    }

    /// As `cut_next_commit_and_freeze`, for the next COMMIT whatever it ends (the recorder must
    /// be past its migrations).
    pub fn cut_any_next_commit_and_freeze(&self) {
        self.faults.cut_any_commit.store(true, Ordering::SeqCst);
        self.cut_next_commit_and_freeze();
    }

    /// Everything goes silent once the `COPY` into `operation` has started and its rows are
    /// being sent (a payload larger than the sockets' buffers then blocks the sender).
    pub fn freeze_in_copy(&self) {
        self.faults.freeze_in_copy.store(true, Ordering::SeqCst);
    }

    /// Requests still reach the server, which runs them; its answers wait until
    /// [`PgProxy::release_answers`] (the client sees a timeout after the work was done).
    pub fn hold_answers(&self) {
        self.faults.answers_held.store(true, Ordering::SeqCst);
    }

    pub fn release_answers(&self) {
        self.faults.answers_held.store(false, Ordering::SeqCst);
    }

    /// The connections open now go silent forever, in both directions (half-open: no error, no
    /// answer); connections made from now on pass.
    pub fn silence_open_connections(&self) {
        let accepted = self.faults.accepted.load(Ordering::SeqCst);
        self.faults.silent_below.store(accepted, Ordering::SeqCst);
    }

    /// The next request containing `needle` reaches the server, which runs it; its answer is
    /// dropped and the connection cut (the client never hears what it did).
    pub fn cut_answer_to(&self, needle: &[u8]) {
        *self.faults.cut_answer_to.lock().unwrap() = Some(needle.to_vec());
    }

    /// Keeps every byte clients send from now on (for small exchanges: it is all in memory).
    pub fn record_requests(&self) {
        *self.faults.recorded.lock().unwrap() = Some(Vec::new());
    }

    /// Whether the bytes recorded since [`PgProxy::record_requests`] hold `needle`.
    pub fn requests_contain(&self, needle: &[u8]) -> bool {
        self.faults
            .recorded
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|bytes| contains(bytes, needle))
    }

    /// The largest MongoDB wire message (OP_MSG and the like: a little-endian length first)
    /// that a client sent through this proxy so far.
    pub fn largest_mongo_request(&self) -> usize {
        self.faults.largest_request.load(Ordering::SeqCst)
    }

    /// New connections go to `upstream` (`host:port`), as after a failover.
    pub fn retarget(&self, upstream: &str) {
        *self.faults.upstream.lock().unwrap() = upstream.to_string();
    }

    pub fn frozen(&self) -> bool {
        self.faults.frozen.load(Ordering::SeqCst)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.faults.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_while_frozen(faults: &Faults) {
    while faults.frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether connection `number` has been silenced (half-open).
fn silenced(faults: &Faults, number: usize) -> bool {
    number < faults.silent_below.load(Ordering::SeqCst)
}

async fn wait_while_silent(faults: &Faults, number: usize) {
    wait_while_frozen(faults).await;
    while silenced(faults, number) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn relay(client: TcpStream, faults: Arc<Faults>, number: usize) {
    wait_while_frozen(&faults).await;
    let upstream = faults.upstream.lock().unwrap().clone();
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when this connection has sent a write while a cut is armed.
    let armed = Arc::new(AtomicBool::new(false));
    // Set when this connection has sent the request whose answer is to be cut.
    let answer_cut = Arc::new(AtomicBool::new(false));
    let to_server = {
        let (faults, armed, answer_cut) = (faults.clone(), armed.clone(), answer_cut.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut copying = false;
            let mut framing = MongoFraming::default();
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // The rows of a COPY follow its statement: silence falls on them.
                if copying && faults.freeze_in_copy.swap(false, Ordering::SeqCst) {
                    faults.frozen.store(true, Ordering::SeqCst);
                }
                copying = contains(&buf[..n], b"COPY operation");
                wait_while_silent(&faults, number).await;
                let data = &buf[..n];
                framing.feed(data, &faults.largest_request);
                if let Some(recorded) = faults.recorded.lock().unwrap().as_mut() {
                    recorded.extend_from_slice(data);
                }
                {
                    let mut cut = faults.cut_answer_to.lock().unwrap();
                    if cut.as_deref().is_some_and(|needle| contains(data, needle)) {
                        *cut = None;
                        answer_cut.store(true, Ordering::SeqCst);
                    }
                }
                let commit =
                    faults.cut_any_commit.load(Ordering::SeqCst) && contains(data, b"COMMIT");
                if faults.cut_next_commit.load(Ordering::SeqCst)
                    && (commit
                        || contains(data, b"INSERT INTO operation")
                        || contains(data, b"COPY operation"))
                {
                    armed.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let to_client = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            wait_while_silent(&faults, number).await;
            if answer_cut.load(Ordering::SeqCst) {
                faults.cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            while faults.answers_held.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // ReadyForQuery with status idle: the transaction is over, committed.
            if armed.load(Ordering::SeqCst)
                && contains(&buf[..n], b"Z\0\0\0\x05I")
                && faults.cut_next_commit.swap(false, Ordering::SeqCst)
            {
                faults.cut_any_commit.store(false, Ordering::SeqCst);
                if faults.freeze_after_cut.swap(false, Ordering::SeqCst) {
                    faults.frozen.store(true, Ordering::SeqCst);
                }
                faults.cuts.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending ends the connection (both halves are dropped).
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
    }
}

/// Follows MongoDB wire messages in a client's byte stream (each starts with its length, a
/// little-endian int32) to record the largest.
#[derive(Default)]
struct MongoFraming {
    /// Bytes of the current message still to come.
    remaining: usize,
    /// The first bytes of a length field split across reads.
    header: Vec<u8>,
}

impl MongoFraming {
    fn feed(&mut self, mut data: &[u8], largest: &AtomicUsize) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skipped = self.remaining.min(data.len());
                self.remaining -= skipped;
                data = &data[skipped..];
                continue;
            }
            let wanted = 4 - self.header.len();
            let taken = wanted.min(data.len());
            self.header.extend_from_slice(&data[..taken]);
            data = &data[taken..];
            if self.header.len() == 4 {
                let length = u32::from_le_bytes(self.header[..4].try_into().unwrap()) as usize;
                largest.fetch_max(length, Ordering::SeqCst);
                self.remaining = length.saturating_sub(4);
                self.header.clear();
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
