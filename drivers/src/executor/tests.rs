//! Unit tests of the executor: spawning and joining tasks, timers, wakes from other threads,
//! abort.

use super::*;

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig { buffer_count: 8, buffer_bytes: 4096, ..Default::default() })
        .expect("reactor")
}

#[test]
fn spawn_and_join() {
    let r = reactor();
    let out = r.block_on(async {
        let a = spawn(async { 1 + 1 });
        let b = spawn(async {
            yield_now().await;
            40
        });
        a.await + b.await
    });
    assert_eq!(out, 42);
}

#[test]
fn sleep_waits_at_least_its_duration() {
    let r = reactor();
    let start = Instant::now();
    r.block_on(sleep(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn timeout_after_elapses_on_a_pending_future() {
    let r = reactor();
    let res = r.block_on(timeout_after(Duration::from_millis(5), std::future::pending::<()>()));
    assert_eq!(res, Err(Elapsed));
}

#[test]
fn wake_from_another_thread_reaches_the_reactor() {
    let r = reactor();
    let flag = Arc::new(AtomicBool::new(false));
    let waker_slot: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
    let (f2, w2) = (Arc::clone(&flag), Arc::clone(&waker_slot));
    let t = std::thread::spawn(move || loop {
        if let Some(w) = w2.lock().expect("lock").take() {
            std::thread::sleep(Duration::from_millis(10));
            f2.store(true, Ordering::SeqCst);
            w.wake();
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    });
    r.block_on(std::future::poll_fn(|cx| {
        if flag.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            *waker_slot.lock().expect("lock") = Some(cx.waker().clone());
            Poll::Pending
        }
    }));
    t.join().expect("thread");
}

#[test]
fn block_on_future_is_woken_more_than_once() {
    let r = reactor();
    let out = r.block_on(async {
        let handles: Vec<_> = (0..4u32)
            .map(|i| {
                spawn(async move {
                    for _ in 0..=i {
                        yield_now().await;
                    }
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await;
        }
        sum
    });
    assert_eq!(out, 6);
}

#[test]
fn abort_drops_a_task() {
    let r = reactor();
    r.block_on(async {
        let h = spawn(std::future::pending::<()>());
        yield_now().await;
        assert_eq!(live_tasks(), 1);
        h.abort();
        assert_eq!(live_tasks(), 0);
    });
}
