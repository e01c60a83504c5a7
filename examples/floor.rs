//! The floor of `bench/compare` (not shipped): the least a fortune server
//! can do. One thread, blocking: accept, write one frame, close. No wait for
//! the peer, no timeouts, no logging. Listens on the address given (default
//! `127.0.0.1:0`) with the service's backlog, and prints the bound address.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use fortune_server::fortunes::BUILTIN;
use fortune_server::wire::{Protocol, encode};
use nix::sys::socket::{Backlog, listen};

fn main() -> ExitCode {
    let addr: SocketAddr = match std::env::args().nth(1).unwrap_or("127.0.0.1:0".into()).parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor: error: {e}; usage: floor [ADDR:PORT]");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr).and_then(|l| {
        listen(&l, Backlog::new(4096).unwrap_or(Backlog::MAXCONN))
            .map(|()| l)
            .map_err(Into::into)
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor: error: cannot listen on {addr}: {e}");
            return ExitCode::from(4);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("{a}"),
        Err(e) => {
            eprintln!("floor: error: {e}");
            return ExitCode::from(4);
        }
    }
    let frames: Vec<Vec<u8>> = BUILTIN
        .iter()
        .filter_map(|t| encode(Protocol::Qt, t).ok())
        .collect();
    for (stream, frame) in listener.incoming().zip(frames.iter().cycle()) {
        // A client that left is no concern of the floor's.
        if let Ok(mut stream) = stream {
            let _ = stream.write_all(frame);
        }
    }
    ExitCode::SUCCESS
}
