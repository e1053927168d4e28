//! `cargo bench --bench codec`: the recorder's own steps per message, in process (no broker,
//! no database): decoding each message format and encoding a bulk's rows for `COPY`. The same
//! table opens `./scripts/bench.sh`.

mod costs;

fn main() {
    println!("{}", costs::table());
}
