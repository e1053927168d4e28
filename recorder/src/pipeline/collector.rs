//! Gathers decoded messages from every channel into bulks.
//!
//! A bulk is flushed when it holds `size` messages, or `flush_timeout` after its first message
//! arrived, or when the consumers stop (shutdown). Unlike the reference ledger, where each
//! worker waits for a bulk that its share of the prefetch can never fill, all channels feed
//! one collector, so a full queue fills bulks to `size`.

use std::time::Duration;

use tokio::{sync::mpsc, time::Instant};

use crate::{
    broker::{Raw, Tag, context::MessageContext},
    message::{Entry, Transaction},
    telemetry::metrics::FlushTrigger,
};

/// A decoded message waiting for its bulk to be written.
#[derive(Debug)]
pub struct Pending {
    pub tag: Tag,
    pub message_id: Option<String>,
    /// Its transactions (one, or each entry of a ledger message's `QueueData`), written and
    /// settled together. On the heap: a message moves through channels and vectors several
    /// times on its way.
    pub entries: Vec<Entry>,
    /// Its request id and trace context, from its headers.
    pub context: MessageContext,
    /// The delivery as received, kept only when dead letters are published with their reason.
    pub raw: Option<Raw>,
}

impl Pending {
    /// Its transactions, in message order.
    pub fn transactions(&self) -> impl Iterator<Item = &Transaction> + Clone {
        self.entries.iter().map(|e| &e.transaction)
    }

    /// Its first transaction: what a log line about the message names.
    pub fn first(&self) -> &Transaction {
        &self.entries[0].transaction
    }

    /// The parents its transactions name.
    pub fn parents(&self) -> impl Iterator<Item = uuid::Uuid> + '_ {
        self.transactions().filter_map(|t| t.parent_transaction_id)
    }
}

/// Messages to write and settle together.
#[derive(Debug)]
pub struct Bulk {
    pub messages: Vec<Pending>,
    pub trigger: FlushTrigger,
}

/// Runs until `incoming` is closed and drained; the last bulk is flushed with `Shutdown`.
pub async fn collect(
    mut incoming: mpsc::Receiver<Pending>,
    bulks: mpsc::Sender<Bulk>,
    size: usize,
    flush_timeout: Duration,
) {
    while let Some(first) = incoming.recv().await {
        let deadline = Instant::now() + flush_timeout;
        let mut messages = Vec::with_capacity(size);
        messages.push(first);
        let trigger = loop {
            if messages.len() >= size {
                break FlushTrigger::Size;
            }
            // Take what is already queued without arming a timer per message.
            match incoming.try_recv() {
                Ok(message) => {
                    messages.push(message);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break FlushTrigger::Shutdown,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            match tokio::time::timeout_at(deadline, incoming.recv()).await {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break FlushTrigger::Shutdown,
                Err(_) => break FlushTrigger::Timeout,
            }
        };
        if bulks.send(Bulk { messages, trigger }).await.is_err() {
            return;
        }
    }
}
