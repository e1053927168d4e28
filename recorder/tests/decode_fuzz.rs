//! Property tests of the decoder: whatever arrives, it answers with a transaction or a typed
//! error, never a panic; and what it accepts survives a round trip in both encodings.
//! Bounded by `PROPTEST_CASES` (default 256 here) so CI time stays predictable.

use bulk_recorder::{
    message::{Format, decode},
    publish::{encode, sample_transaction},
};
use proptest::prelude::*;

const LIMIT: usize = 1 << 20;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), msgpack in any::<bool>()) {
        let content_type = if msgpack { "application/msgpack" } else { "application/json" };
        let _ = decode(&body, Some(content_type), LIMIT);
    }

    #[test]
    fn a_valid_message_with_bytes_flipped_is_decoded_or_refused_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        msgpack in any::<bool>(),
    ) {
        let format = if msgpack { Format::Msgpack } else { Format::Json };
        let mut body = encode(&sample_transaction(2), format);
        for (index, byte) in flips {
            let i = index.index(body.len());
            body[i] = byte;
        }
        if let Ok(t) = decode(&body, Some(if msgpack { "application/msgpack" } else { "application/json" }), LIMIT) {
            // Whatever got through still satisfies every rule the database relies on.
            prop_assert!(t.validate().is_ok());
        }
    }

    #[test]
    fn accepted_transactions_round_trip_through_both_encodings(operations in 0usize..8, cents in any::<i64>()) {
        let mut t = sample_transaction(operations);
        t.amount = Some(rust_decimal::Decimal::new(cents.checked_abs().unwrap_or(0), 2));
        for format in [Format::Json, Format::Msgpack] {
            let content_type = match format { Format::Json => "application/json", Format::Msgpack => "application/msgpack" };
            prop_assert_eq!(decode(&encode(&t, format), Some(content_type), LIMIT).unwrap(), t.clone());
        }
    }
}
