//! What decoding costs per message, in process, for each format: the same transactions (five
//! operations each) as each producer would write them, and the reference ledger's own bytes.

use std::time::Instant;

use bulk_recorder::message::{Format, decode};
use bulk_recorder_publish::{encode, sample_transaction};

/// One line of the decode table.
pub struct Cost {
    pub format: &'static str,
    pub bytes: usize,
    pub micros: f64,
}

fn measure(format: &'static str, bodies: &[Vec<u8>], setting: Option<Format>) -> Cost {
    const ROUNDS: usize = 5;
    // Warm up, and check that every body decodes.
    for body in bodies {
        decode(body, setting, 1 << 20).expect("a valid body");
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        for body in bodies {
            std::hint::black_box(decode(std::hint::black_box(body), setting, 1 << 20).unwrap());
        }
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / (ROUNDS * bodies.len()) as f64;
    Cost {
        format,
        bytes: bodies.iter().map(Vec::len).sum::<usize>() / bodies.len(),
        micros,
    }
}

/// Decode costs: JSON, msgpack, the ledger's format (this project's encoder, and one of the
/// ledger's own fixtures), each with `auto` detection as the recorder runs by default.
pub fn costs() -> Vec<Cost> {
    let transactions: Vec<_> = (0..2000).map(|_| sample_transaction(5)).collect();
    let bodies =
        |format| -> Vec<Vec<u8>> { transactions.iter().map(|t| encode(t, format)).collect() };
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/midaz-wire/big-decimals.msgpack"
    ))
    .expect("fixture");
    vec![
        measure("json", &bodies(Format::Json), None),
        measure("msgpack", &bodies(Format::Msgpack), None),
        measure("midaz", &bodies(Format::Midaz), None),
        measure(
            "midaz (the ledger's own bytes: big-decimals, 4 operations)",
            &vec![fixture; 2000],
            None,
        ),
    ]
}
