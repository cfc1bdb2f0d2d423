//! Running several `!Send` futures of the current shard concurrently (device I/O fan-out).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Polls every future until all complete; outputs in input order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

/// Completes when either future completes (the other is dropped).
pub async fn select2<A: Future, B: Future>(a: A, b: B) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Runs `start(i)` for every `i` in `0..count`, at most `limit` at a time, in order of `i`,
/// and calls `done(i, output)` as each completes (in completion order). Keeps `limit` in
/// flight until the last ones, unlike [`join_all`] over fixed waves.
pub async fn for_each_bounded<Fut: Future>(
    count: usize,
    limit: usize,
    mut start: impl FnMut(usize) -> Fut,
    mut done: impl FnMut(usize, Fut::Output),
) {
    assert!(limit > 0, "for_each_bounded needs a limit of at least 1");
    let mut slots: Vec<Option<(usize, Pin<Box<Fut>>)>> = Vec::new();
    let mut next = 0;
    std::future::poll_fn(|cx| loop {
        while next < count && slots.iter().filter(|s| s.is_some()).count() < limit {
            let fut = Box::pin(start(next));
            match slots.iter_mut().find(|s| s.is_none()) {
                Some(free) => *free = Some((next, fut)),
                None => slots.push(Some((next, fut))),
            }
            next += 1;
        }
        let mut finished = false;
        for slot in &mut slots {
            if let Some((i, fut)) = slot {
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    done(*i, out);
                    *slot = None;
                    finished = true;
                }
            }
        }
        if slots.iter().all(Option::is_none) && next >= count {
            return Poll::Ready(());
        }
        if !finished {
            return Poll::Pending;
        }
        // Slots freed: start more and poll the new ones before waiting.
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use drivers::executor::{yield_now, Reactor, ReactorConfig};

    use super::for_each_bounded;

    #[test]
    fn bounded_runs_each_once_with_the_limit_in_flight() {
        let reactor = Reactor::new(&ReactorConfig::default()).expect("reactor");
        let in_flight = Cell::new(0usize);
        let most = Cell::new(0usize);
        let mut done = vec![0u32; 10];
        reactor.block_on(for_each_bounded(
            10,
            3,
            |i| {
                let (in_flight, most) = (&in_flight, &most);
                async move {
                    in_flight.set(in_flight.get() + 1);
                    most.set(most.get().max(in_flight.get()));
                    // Ready after a different number of turns each.
                    for _ in 0..(i % 4) {
                        yield_now().await;
                    }
                    in_flight.set(in_flight.get() - 1);
                    i * 2
                }
            },
            |i, out| {
                assert_eq!(out, i * 2);
                done[i] += 1;
            },
        ));
        assert_eq!(done, vec![1; 10]);
        assert_eq!(most.get(), 3);
    }
}
