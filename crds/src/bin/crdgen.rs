//! Writes the CRD: `cargo run -p bulk-recorder-crds --bin crdgen > crds/bulkrecorder.yaml`.

fn main() {
    print!("{}", bulk_recorder_crds::crd_yaml());
}
