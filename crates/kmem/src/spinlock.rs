//! Spinlocks (`spinlock_t`) that work in a kernel and in a process.
//!
//! A test-and-test-and-set lock around the data it protects. In a kernel the
//! holder never sleeps and interrupts are masked around the lock where the
//! kernel uses `spin_lock_irqsave`; in a process the holder can be preempted,
//! so waiters relax through the platform (which yields the CPU after a short
//! spin) instead of burning their time slice. `try_lock` is what the per-CPU
//! page lists use (`pcp_spin_trylock`): a holder on the same CPU means
//! re-entrance or a preempted thread, and the caller takes the slow path.

use crate::platform::Platform;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A spinlock protecting a `T`. The lock word comes first (`repr(C)`),
/// beside the start of the data a holder usually reads first, not after
/// its end: a lock around a large table whose tail stays zero (the iomem
/// tree's free records) would otherwise make taking it write a page of the
/// machine structure that holds nothing but zero bytes (`Kmem`'s layout).
#[repr(C)]
pub struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `data`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the data; `T: Send` suffices.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// Guard returned by `SpinLock::lock`; unlocks (and restores IRQs) on drop.
pub struct SpinLockGuard<'a, T, P: Platform + ?Sized> {
    lock: &'a SpinLock<T>,
    platform: &'a P,
    irq_flags: usize,
}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(data: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// `spin_lock_irqsave`: take the lock with local interrupts masked.
    #[inline]
    pub fn lock<'a, P: Platform + ?Sized>(&'a self, platform: &'a P) -> SpinLockGuard<'a, T, P> {
        let irq_flags = platform.local_irq_save();
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(platform);
        }
        SpinLockGuard {
            lock: self,
            platform,
            irq_flags,
        }
    }

    #[cold]
    fn lock_slow<P: Platform + ?Sized>(&self, platform: &P) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins.is_multiple_of(128) {
                    platform.yield_cpu();
                } else {
                    platform.cpu_relax();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// `spin_trylock_irqsave`: take the lock if it is free.
    #[inline]
    pub fn try_lock<'a, P: Platform + ?Sized>(&'a self, platform: &'a P) -> Option<SpinLockGuard<'a, T, P>> {
        let irq_flags = platform.local_irq_save();
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(SpinLockGuard {
                lock: self,
                platform,
                irq_flags,
            })
        } else {
            platform.local_irq_restore(irq_flags);
            None
        }
    }

    /// Take the lock if it is free, without a guard: returns the saved IRQ
    /// state for `unlock_raw`. For fast paths where a guard's `Option` costs
    /// a test; the caller must call `unlock_raw` on every path.
    #[inline(always)]
    pub fn try_lock_raw<P: Platform + ?Sized>(&self, platform: &P) -> Option<usize> {
        let irq_flags = platform.local_irq_save();
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(irq_flags)
        } else {
            platform.local_irq_restore(irq_flags);
            None
        }
    }

    /// Release a lock taken with `try_lock_raw`.
    ///
    /// # Safety
    /// The caller holds the lock through `try_lock_raw`, which returned `irq_flags`.
    #[inline(always)]
    pub unsafe fn unlock_raw<P: Platform + ?Sized>(&self, platform: &P, irq_flags: usize) {
        self.locked.store(false, Ordering::Release);
        platform.local_irq_restore(irq_flags);
    }

    /// Whether someone holds the lock right now (diagnostics only).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    /// Access without locking, through exclusive ownership.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Raw access to the protected data.
    ///
    /// # Safety
    /// The caller must hold the lock or otherwise guarantee exclusion.
    pub unsafe fn data_ptr(&self) -> *mut T {
        self.data.get()
    }
}

impl<T, P: Platform + ?Sized> Deref for SpinLockGuard<'_, T, P> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, P: Platform + ?Sized> DerefMut for SpinLockGuard<'_, T, P> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T, P: Platform + ?Sized> Drop for SpinLockGuard<'_, T, P> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        self.platform.local_irq_restore(self.irq_flags);
    }
}
