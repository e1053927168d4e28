//! Prints the RBAC tables of `operator/src/rbac.rs` as JSON, as `crdgen` prints the CRD:
//! `scripts/check-chart.sh` compares the chart's rendered roles with them (no second reader of
//! the Rust source to keep in step).

fn main() {
    println!("{}", bulk_recorder_operator::rbac::tables_json());
}
