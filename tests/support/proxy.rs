//! A TCP proxy that sits between the daemon and one database and breaks the network
//! on command: cut every connection, swallow traffic (a blackhole), or slow it.
//!
//! It runs on a thread of its own, so that a test blocked in a `beltctl` call does
//! not stall the traffic it is testing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Hold everything, in both directions, on old and new connections alike; the
    /// held bytes go through once the mode changes (a route that comes back).
    Blackhole,
    /// Forward each read after this delay, in each direction.
    Delay(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Faults {
    mode: Mode,
    /// Bumped by [`Proxy::cut`]; a connection opened before the bump is closed.
    cuts: u64,
    /// The port new connections are carried to.
    upstream: u16,
}

/// A running proxy to `127.0.0.1:upstream`.
pub struct Proxy {
    port: u16,
    faults: watch::Sender<Faults>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of `upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (faults, rx) = watch::channel(Faults {
            mode: Mode::Pass,
            cuts: 0,
            upstream,
        });
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let rx = rx.clone();
                    if rx.has_changed().is_err() {
                        return; // the Proxy was dropped
                    }
                    let to: SocketAddr = ([127, 0, 0, 1], rx.borrow().upstream).into();
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(to).await {
                            carry(client, server, rx).await;
                        }
                    });
                }
            });
        });
        Proxy { port, faults }
    }

    /// The port to connect to instead of the database's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every open connection at once (new ones are let through).
    pub fn cut(&self) {
        self.faults.send_modify(|f| f.cuts += 1);
    }

    /// Sends new connections to another server and cuts the open ones: the name
    /// of the database now points at a different machine.
    pub fn redirect(&self, upstream: u16) {
        self.faults.send_modify(|f| {
            f.upstream = upstream;
            f.cuts += 1;
        });
    }

    /// Switches to `mode`.
    pub fn set(&self, mode: Mode) {
        self.faults.send_modify(|f| f.mode = mode);
    }
}

/// Carries one connection both ways until either end closes or it is cut.
async fn carry(client: TcpStream, server: TcpStream, faults: watch::Receiver<Faults>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let born = faults.borrow().cuts;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, faults.clone(), born);
    let down = pump(sr, cw, faults, born);
    tokio::join!(up, down);
}

/// Carries bytes one way. Reading and writing are separate tasks joined by a queue
/// of (due time, bytes), so a delay adds latency without serializing the reads.
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf, faults: watch::Receiver<Faults>, born: u64) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::join!(
        read_side(from, tx, faults.clone(), born),
        write_side(to, rx, faults, born)
    );
}

type Due = (tokio::time::Instant, Vec<u8>);

async fn write_side(
    mut to: OwnedWriteHalf,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Due>,
    mut faults: watch::Receiver<Faults>,
    born: u64,
) {
    while let Some((due, bytes)) = queue.recv().await {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = cut(&mut faults, born) => return,
        }
        tokio::select! {
            r = to.write_all(&bytes) => if r.is_err() { return },
            _ = cut(&mut faults, born) => return,
        }
    }
    let _ = to.shutdown().await;
}

async fn read_side(
    mut from: OwnedReadHalf,
    queue: tokio::sync::mpsc::UnboundedSender<Due>,
    mut faults: watch::Receiver<Faults>,
    born: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return, // the queue closes: the writer shuts down
                Ok(n) => n,
            },
            _ = cut(&mut faults, born) => return,
        };
        // Hold the bytes while blackholed, delay them when slowed.
        let due = loop {
            let now = *faults.borrow_and_update();
            if now.cuts != born {
                return;
            }
            match now.mode {
                Mode::Pass => break tokio::time::Instant::now(),
                Mode::Delay(d) => break tokio::time::Instant::now() + d,
                Mode::Blackhole => {
                    if faults.changed().await.is_err() {
                        return;
                    }
                }
            }
        };
        if queue.send((due, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Resolves once the connection opened at cut count `born` is cut.
async fn cut(faults: &mut watch::Receiver<Faults>, born: u64) {
    loop {
        if faults.borrow_and_update().cuts != born {
            return;
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
}
