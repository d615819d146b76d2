//! A small fork-join pool for the forward pass. Decoding one token of a 135M model is ~120 parallel steps of 20-60 µs
//! each; rayon parks idle workers, and waking them (futex + scheduler) cost about a quarter of the decode time. These
//! workers spin for a short while after each step before sleeping, so the next step starts in well under a
//! microsecond, as llama.cpp's threads do.
//!
//! One job runs at a time; a caller that finds the pool busy (another engine in the same process) runs its tasks on
//! its own thread instead of waiting.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// High 32 bits: the job's epoch; low 32 bits: the next task index to claim.
    state: AtomicU64,
    tasks: AtomicUsize,
    done: AtomicUsize,
    /// The current job, valid while its epoch's tasks are unfinished (a `*const Job` split in two words).
    job: [AtomicUsize; 2],
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    busy: Mutex<()>,
}

/// How long a worker spins for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

fn epoch(state: u64) -> u64 {
    state >> 32
}

impl Shared {
    fn job(&self) -> &Job {
        let words = [self.job[0].load(Acquire), self.job[1].load(Acquire)];
        // SAFETY: the words were written from a `*const Job` by `Pool::run`, which keeps the closure alive until every
        // task of its epoch is done; callers only read it after claiming such a task.
        unsafe { &*std::mem::transmute::<[usize; 2], *const Job>(words) }
    }

    /// Claim and run tasks of `ep` until none are left.
    fn work(&self, ep: u64) {
        let n = self.tasks.load(Acquire) as u64;
        loop {
            let cur = self.state.load(Acquire);
            if epoch(cur) != ep || (cur & 0xFFFF_FFFF) >= n {
                return;
            }
            if self.state.compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed).is_err() {
                continue;
            }
            let i = (cur & 0xFFFF_FFFF) as usize;
            let job = self.job();
            if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                self.panicked.store(true, Release);
            }
            self.done.fetch_add(1, Release);
        }
    }
}

fn worker(s: Arc<Shared>) {
    let mut seen = epoch(s.state.load(Acquire));
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if epoch(s.state.load(Acquire)) != seen {
                break;
            }
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(256) && start.elapsed() > SPIN {
                let mut g = s.sleep.lock().unwrap_or_else(|p| p.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while epoch(s.state.load(SeqCst)) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
                break;
            }
        }
        seen = epoch(s.state.load(Acquire));
        s.work(seen);
    }
}

static GLOBAL: OnceLock<Pool> = OnceLock::new();

impl Pool {
    pub fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            tasks: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            job: [AtomicUsize::new(0), AtomicUsize::new(0)],
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let threads = threads.max(1);
        for k in 1..threads {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("medforge-engine-{k}"))
                .spawn(move || worker(s))
                .expect("spawn engine worker thread");
        }
        Pool { shared, threads, busy: Mutex::new(()) }
    }

    /// The process-wide pool: the count given to [`Pool::init_global`], else `MEDFORGE_THREADS`, else
    /// `RAYON_NUM_THREADS`, else the number of CPUs.
    pub fn global() -> &'static Pool {
        GLOBAL.get_or_init(|| {
            let from_env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0);
            let n = from_env("MEDFORGE_THREADS")
                .or_else(|| from_env("RAYON_NUM_THREADS"))
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            Pool::new(n)
        })
    }

    /// Size the process-wide pool before its first use; `false` when it already runs (with its own size).
    pub fn init_global(threads: usize) -> bool {
        GLOBAL.set(Pool::new(threads.max(1))).is_ok()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(0..n)`, spread over the pool's threads and the caller's; returns when all are done. A panic in any task
    /// is re-raised here, after every task has finished.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        let guard = if n > 1 && self.threads > 1 { self.busy.try_lock().ok() } else { None };
        let Some(_guard) = guard else {
            (0..n).for_each(f);
            return;
        };
        let s = &*self.shared;
        // SAFETY: the pointer is only dereferenced for tasks of this epoch, all finished before `run` returns.
        let ptr: *const (dyn Fn(usize) + Sync + '_) = f;
        let words: [usize; 2] = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), [usize; 2]>(ptr) };
        s.job[0].store(words[0], Release);
        s.job[1].store(words[1], Release);
        s.tasks.store(n, Release);
        s.done.store(0, Release);
        s.panicked.store(false, Release);
        let ep = epoch(s.state.load(Acquire)) + 1;
        s.state.store(ep << 32, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.sleep.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        s.work(ep);
        // The last tasks are on other threads. On a busy machine a worker can be preempted mid-task: after a short
        // spin, yield so that it can run (on a 2-core machine it may be waiting for this very core).
        let mut spins = 0u32;
        while s.done.load(Acquire) < n {
            spins += 1;
            if spins < 4096 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if s.panicked.load(Acquire) {
            resume_unwind(Box::new("a medforge-engine worker task panicked"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_and_panics_surface() {
        let pool = Pool::new(3);
        for n in [1usize, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(n, &|i| {
                hits[i].fetch_add(1, Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "n = {n}");
        }
        // Workers asleep after the spin window still wake up.
        std::thread::sleep(Duration::from_millis(5));
        let sum = AtomicUsize::new(0);
        pool.run(64, &|i| {
            sum.fetch_add(i, Relaxed);
        });
        assert_eq!(sum.load(Relaxed), 64 * 63 / 2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(16, &|i| {
                if i == 9 {
                    panic!("task 9");
                }
            })
        }));
        assert!(r.is_err());
        // Still usable afterwards, from several threads at once (a busy pool runs the caller's tasks inline).
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    let c = AtomicUsize::new(0);
                    pool.run(100, &|_| {
                        c.fetch_add(1, Relaxed);
                    });
                    assert_eq!(c.load(Relaxed), 100);
                });
            }
        });
    }
}
