//! Property tests of the decoder: whatever arrives, it answers with a transaction or a typed
//! error, never a panic; and what it accepts survives a round trip in both encodings.
//! Bounded by `PROPTEST_CASES` (default 256 here) so CI time stays predictable.

use bulk_recorder::message::{Decimal, Format, decode};
use bulk_recorder_publish::{encode, sample_transaction};
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
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), format in 0usize..4) {
        let format = [None, Some(Format::Json), Some(Format::Msgpack), Some(Format::Midaz)][format];
        let _ = decode(&body, format, LIMIT);
    }

    #[test]
    fn a_valid_message_with_bytes_flipped_is_decoded_or_refused_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        format in 0usize..3,
    ) {
        let format = [Format::Json, Format::Msgpack, Format::Midaz][format];
        let mut body = encode(&sample_transaction(2), format);
        for (index, byte) in flips {
            let i = index.index(body.len());
            body[i] = byte;
        }
        if let Ok(Some(t)) = decode(&body, None, LIMIT).map(|d| d.into_transaction()) {
            // Whatever got through still satisfies every rule the database relies on.
            prop_assert!(t.validate().is_ok());
        }
    }

    #[test]
    fn accepted_transactions_round_trip_through_both_encodings(operations in 0usize..8, cents in any::<i64>()) {
        let mut t = sample_transaction(operations);
        let cents = cents.checked_abs().unwrap_or(0);
        t.amount = Some(Decimal::parse(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap());
        for format in [Format::Json, Format::Msgpack] {
            let decoded = decode(&encode(&t, format), None, LIMIT).unwrap().into_transaction();
            prop_assert_eq!(decoded, Some(t.clone()));
        }
    }
}
