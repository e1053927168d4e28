//! What the recorder's own steps cost per message, in process: decoding each format (the same
//! transactions, five operations each, as each producer would write them, and the reference
//! ledger's own bytes), and encoding a bulk's rows for `COPY`.

use std::{fmt::Write as _, time::Instant};

use bulk_recorder::{
    message::{Format, Transaction, decode},
    store::statements::{copy::CopyRows, layout::Layout, merge::Merged},
};
use bulk_recorder_publish::{encode, sample_transaction};

/// One line of the decode table.
pub struct Cost {
    pub format: &'static str,
    pub bytes: usize,
    pub micros: f64,
}

fn measure(format: &'static str, bodies: &[Vec<u8>], setting: Option<Format>) -> Cost {
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

const ROUNDS: usize = 5;

/// Merging bulks of 1000 by id and encoding their rows in `COPY`'s binary format.
fn encode_rows(transactions: &[Transaction]) -> Cost {
    let refs: Vec<&Transaction> = transactions.iter().collect();
    let layout = Layout::base();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        for bulk in refs.chunks(1000) {
            let merged = Merged::new(bulk);
            std::hint::black_box(CopyRows::encode(&merged, &layout, chrono::Utc::now()));
        }
    }
    Cost {
        format: "encode: merge by id + binary COPY rows, bulks of 1000",
        bytes: 0,
        micros: started.elapsed().as_secs_f64() * 1e6 / (ROUNDS * refs.len()) as f64,
    }
}

/// Decode costs: JSON, msgpack, the ledger's format (this project's encoder, and one of the
/// ledger's own fixtures), each with `auto` detection as the recorder runs by default; then the
/// encoding of their rows.
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
        measure("decode: json", &bodies(Format::Json), None),
        measure("decode: msgpack", &bodies(Format::Msgpack), None),
        measure("decode: midaz", &bodies(Format::Midaz), None),
        measure(
            "decode: midaz (the ledger's own bytes: big-decimals, 4 operations)",
            &vec![fixture; 2000],
            None,
        ),
        encode_rows(&transactions),
    ]
}

/// The costs as a table.
pub fn table() -> String {
    let mut table = String::from("| step | body bytes | us/message |\n|---|---:|---:|\n");
    for cost in costs() {
        let bytes = if cost.bytes == 0 {
            "-".to_string()
        } else {
            cost.bytes.to_string()
        };
        writeln!(table, "| {} | {bytes} | {:.1} |", cost.format, cost.micros).unwrap();
    }
    table
}
