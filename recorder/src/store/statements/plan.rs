//! How a bulk's rows are split into statements of at most `maxRowsPerInsert` rows per table.

/// One statement's share of the rows: a range of transactions and one of operations.
pub type Chunk = (std::ops::Range<usize>, std::ops::Range<usize>);

/// Splits `txns` and `ops` rows into statements of at most `max` rows per table. Transactions
/// go first, so an operation's transaction is always in the same or an earlier statement; the
/// last transaction chunk shares its statement with the first operation chunk.
pub fn plan(txns: usize, ops: usize, max: usize) -> Vec<Chunk> {
    let ranges = |n: usize| -> Vec<std::ops::Range<usize>> {
        (0..n.div_ceil(max))
            .map(|i| i * max..((i + 1) * max).min(n))
            .collect()
    };
    let (t, o) = (ranges(txns), ranges(ops));
    let mut chunks: Vec<Chunk> = Vec::with_capacity(t.len() + o.len());
    let empty = 0..0;
    for (i, range) in t.iter().enumerate() {
        let ops_here = if i + 1 == t.len() {
            o.first().cloned().unwrap_or(empty.clone())
        } else {
            empty.clone()
        };
        chunks.push((range.clone(), ops_here));
    }
    let skip = usize::from(!t.is_empty());
    chunks.extend(o.into_iter().skip(skip).map(|range| (empty.clone(), range)));
    if chunks.is_empty() {
        chunks.push((empty.clone(), empty));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::plan;

    #[test]
    fn a_bulk_within_the_limit_is_one_statement() {
        assert_eq!(plan(50, 250, 1000), vec![(0..50, 0..250)]);
        assert_eq!(plan(2, 10, 10), vec![(0..2, 0..10)]);
    }

    #[test]
    fn one_row_above_the_limit_adds_one_statement() {
        assert_eq!(plan(2, 11, 10), vec![(0..2, 0..10), (0..0, 10..11)]);
        assert_eq!(plan(11, 0, 10), vec![(0..10, 0..0), (10..11, 0..0)]);
    }

    #[test]
    fn transactions_always_precede_their_operations() {
        let chunks = plan(25, 30, 10);
        assert_eq!(
            chunks,
            vec![
                (0..10, 0..0),
                (10..20, 0..0),
                (20..25, 0..10),
                (0..0, 10..20),
                (0..0, 20..30)
            ]
        );
    }
}
