//! Two shards exchange 100k buffer-carrying messages each through small mailboxes.

use std::sync::{Arc, Mutex};

use drivers::buffer::{BufferPool, IoBuf};
use drivers::executor::{self, ReactorConfig};
use drivers::mailbox::{mailbox, MailboxReceiver, MailboxSender};
use drivers::shard::start_shards;

const MESSAGES: u64 = 100_000;
const MAILBOX_CAPACITY: usize = 8;
const PAYLOAD_BYTES: usize = 64;

struct Message {
    from_shard: usize,
    seq: u64,
    buf: IoBuf,
}

fn payload_byte(from_shard: usize, seq: u64, i: usize) -> u8 {
    (seq as usize).wrapping_mul(31).wrapping_add(i).wrapping_add(from_shard * 7) as u8
}

type Ends = (MailboxSender<Message>, MailboxReceiver<Message>);

#[test]
fn two_shards_exchange_100k_buffers_each_in_order_without_leaks() {
    let (to_1, from_0) = mailbox::<Message>(MAILBOX_CAPACITY);
    let (to_0, from_1) = mailbox::<Message>(MAILBOX_CAPACITY);
    let ends: Arc<Mutex<Vec<Option<Ends>>>> =
        Arc::new(Mutex::new(vec![Some((to_1, from_1)), Some((to_0, from_0))]));
    let config = ReactorConfig { buffer_count: 32, buffer_bytes: 4096, ..Default::default() };
    let handles = start_shards(2, &config, false, move |shard, _reactor| {
        let (tx, rx) =
            ends.lock().expect("ends")[shard].take().expect("each shard takes its ends once");
        async move {
            let pool = executor::buffer_pool();
            let send_pool = pool.clone();
            let sender = executor::spawn(async move {
                let mut waits_for_buffers = 0u64;
                let mut full_mailbox_waits = 0u64;
                for seq in 0..MESSAGES {
                    let mut buf = loop {
                        if let Some(b) = send_pool.get() {
                            break b;
                        }
                        waits_for_buffers += 1;
                        executor::yield_now().await;
                    };
                    buf.set_len(PAYLOAD_BYTES);
                    buf[..8].copy_from_slice(&seq.to_le_bytes());
                    for i in 8..PAYLOAD_BYTES {
                        buf[i] = payload_byte(shard, seq, i);
                    }
                    let msg = Message { from_shard: shard, seq, buf };
                    match tx.try_send(msg) {
                        Ok(()) => {}
                        Err((_, true)) => panic!("receiver of shard {} vanished", 1 - shard),
                        Err((msg, false)) => {
                            full_mailbox_waits += 1;
                            assert!(
                                tx.send(msg).await.is_ok(),
                                "receiver of shard {} vanished",
                                1 - shard
                            );
                        }
                    }
                }
                (full_mailbox_waits, waits_for_buffers)
            });
            let mut received = 0u64;
            while let Some(msg) = rx.recv().await {
                assert_eq!(msg.from_shard, 1 - shard);
                assert_eq!(msg.seq, received, "messages arrive in order");
                assert_eq!(msg.buf.len(), PAYLOAD_BYTES);
                assert_eq!(msg.buf[..8], msg.seq.to_le_bytes());
                for i in 8..PAYLOAD_BYTES {
                    assert_eq!(
                        msg.buf[i],
                        payload_byte(msg.from_shard, msg.seq, i),
                        "payload byte {i}"
                    );
                }
                assert_eq!(
                    msg.buf.pool_id().map(|_| ()),
                    Some(()),
                    "a pooled buffer crossed shards"
                );
                received += 1;
            }
            let (full_mailbox_waits, _buffer_waits) = sender.await;
            (received, full_mailbox_waits, pool)
        }
    })
    .expect("start shards");
    let results: Vec<(u64, u64, BufferPool)> = handles
        .into_iter()
        .map(|h| h.join().expect("shard thread").expect("shard reactor"))
        .collect();
    let full_waits: u64 = results.iter().map(|r| r.1).sum();
    assert!(
        full_waits > 0,
        "a mailbox of {MAILBOX_CAPACITY} must fill up and push back under this load"
    );
    for (shard, (received, _, pool)) in results.iter().enumerate() {
        assert_eq!(*received, MESSAGES, "shard {shard} received every message");
        assert_eq!(
            pool.available(),
            pool.count(),
            "shard {shard}: every buffer came back to its pool"
        );
    }
}
