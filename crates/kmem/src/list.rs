//! Intrusive doubly linked lists (`struct list_head`).
//!
//! A circular list as in `include/linux/list.h`: the head and every entry
//! are `ListHead`s embedded in larger structures; an empty list's head points
//! at itself. Heads must therefore never move once initialised — every list in
//! kmem lives in memory the machine allocated for it (zone structures, struct
//! page, caches), which never moves. All operations are `unsafe`: the caller
//! guarantees the entries are valid and protected by the right lock.

use core::ptr;

/// A list head or a list entry.
///
/// `ListHead` is `!Unpin` (`PhantomPinned`): a structure holding list heads is
/// reached both through `&mut` and through the links of its neighbours, so
/// the compiler must not assume a `&mut` to it is the only way to its memory
/// (rustc gives `&mut T` no `noalias` when `T: !Unpin`). Without this, a loop
/// that unlinks entries of a list whose head sits behind a `&mut` may have
/// the head's links cached across iterations — a real miscompile at
/// `opt-level=3`, found by the page allocator's tests.
#[repr(C)]
pub struct ListHead {
    /// Next entry (or the head).
    pub next: *mut ListHead,
    /// Previous entry (or the head).
    pub prev: *mut ListHead,
    _pin: core::marker::PhantomPinned,
}

// SAFETY: a ListHead is plain data; the lists are always used under the lock
// of the structure that contains them.
unsafe impl Send for ListHead {}
// SAFETY: as above; shared access goes through the owner's lock.
unsafe impl Sync for ListHead {}

impl ListHead {
    /// An unlinked head; call `init` once it is at its final address.
    pub const fn new() -> Self {
        ListHead {
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            _pin: core::marker::PhantomPinned,
        }
    }

    /// `INIT_LIST_HEAD`: make `this` an empty list.
    ///
    /// # Safety
    /// `this` must be valid for writes and must not move afterwards.
    #[inline(always)]
    pub unsafe fn init(this: *mut ListHead) {
        // SAFETY: the caller guarantees `this` is valid.
        unsafe {
            (*this).next = this;
            (*this).prev = this;
        }
    }

    /// `list_empty`.
    ///
    /// # Safety
    /// `this` must be an initialised head.
    #[inline(always)]
    pub unsafe fn is_empty(this: *const ListHead) -> bool {
        // SAFETY: the caller guarantees `this` is valid.
        unsafe { ptr::eq((*this).next, this) }
    }

    /// Whether `this` was initialised (or linked) at all.
    #[inline(always)]
    pub fn is_linked_or_init(&self) -> bool {
        !self.next.is_null()
    }

    /// # Safety
    /// All three entries must be valid; `prev` and `next` adjacent.
    #[inline(always)]
    unsafe fn insert_between(new: *mut ListHead, prev: *mut ListHead, next: *mut ListHead) {
        // SAFETY: the caller guarantees the entries are valid and adjacent.
        unsafe {
            (*next).prev = new;
            (*new).next = next;
            (*new).prev = prev;
            (*prev).next = new;
        }
    }

    /// `list_add`: insert `new` right after `head` (LIFO, the "hot" end).
    ///
    /// # Safety
    /// `head` is an initialised list; `new` is valid and not on any list.
    #[inline(always)]
    pub unsafe fn add(new: *mut ListHead, head: *mut ListHead) {
        // SAFETY: forwarded from the caller.
        unsafe { Self::insert_between(new, head, (*head).next) }
    }

    /// `list_add_tail`: insert `new` right before `head` (FIFO, the "cold" end).
    ///
    /// # Safety
    /// `head` is an initialised list; `new` is valid and not on any list.
    #[inline(always)]
    pub unsafe fn add_tail(new: *mut ListHead, head: *mut ListHead) {
        // SAFETY: forwarded from the caller.
        unsafe { Self::insert_between(new, (*head).prev, head) }
    }

    /// `list_del`: unlink `entry`; its links are cleared.
    ///
    /// # Safety
    /// `entry` is on a list.
    #[inline(always)]
    pub unsafe fn del(entry: *mut ListHead) {
        // SAFETY: the caller guarantees `entry` is linked, so its neighbours are valid.
        unsafe {
            let next = (*entry).next;
            let prev = (*entry).prev;
            (*next).prev = prev;
            (*prev).next = next;
            (*entry).next = ptr::null_mut();
            (*entry).prev = ptr::null_mut();
        }
    }

    /// `__list_del_entry`: unlink `entry`, leaving its own links stale (the
    /// fast paths relink it at once or hand it out).
    ///
    /// # Safety
    /// `entry` is on a list.
    #[inline(always)]
    pub unsafe fn del_entry(entry: *mut ListHead) {
        // SAFETY: the caller guarantees `entry` is linked, so its neighbours are valid.
        unsafe {
            let next = (*entry).next;
            let prev = (*entry).prev;
            (*next).prev = prev;
            (*prev).next = next;
        }
    }

    /// `list_move`: unlink `entry` and add it after `head`.
    ///
    /// # Safety
    /// As `del` and `add`.
    #[inline(always)]
    pub unsafe fn move_to(entry: *mut ListHead, head: *mut ListHead) {
        // SAFETY: forwarded from the caller.
        unsafe {
            Self::del(entry);
            Self::add(entry, head);
        }
    }

    /// `list_move_tail`.
    ///
    /// # Safety
    /// As `del` and `add_tail`.
    #[inline(always)]
    pub unsafe fn move_tail(entry: *mut ListHead, head: *mut ListHead) {
        // SAFETY: forwarded from the caller.
        unsafe {
            Self::del(entry);
            Self::add_tail(entry, head);
        }
    }

    /// First entry, or `None` if empty.
    ///
    /// # Safety
    /// `head` is an initialised list.
    #[inline(always)]
    pub unsafe fn first(head: *const ListHead) -> Option<*mut ListHead> {
        // SAFETY: the caller guarantees `head` is valid.
        unsafe {
            let n = (*head).next;
            if ptr::eq(n, head) {
                None
            } else {
                Some(n)
            }
        }
    }

    /// Last entry, or `None` if empty.
    ///
    /// # Safety
    /// `head` is an initialised list.
    #[inline(always)]
    pub unsafe fn last(head: *const ListHead) -> Option<*mut ListHead> {
        // SAFETY: the caller guarantees `head` is valid.
        unsafe {
            let p = (*head).prev;
            if ptr::eq(p, head) {
                None
            } else {
                Some(p)
            }
        }
    }

    /// Count the entries (O(n); statistics and tests only).
    ///
    /// # Safety
    /// `head` is an initialised list, not modified during the walk.
    pub unsafe fn count(head: *const ListHead) -> usize {
        let mut n = 0;
        // SAFETY: the caller guarantees the list is valid and stable.
        unsafe {
            let mut p = (*head).next;
            while !ptr::eq(p, head) {
                n += 1;
                p = (*p).next;
            }
        }
        n
    }
}

impl Default for ListHead {
    fn default() -> Self {
        Self::new()
    }
}

/// `container_of`: the address of the structure that embeds a field.
#[macro_export]
macro_rules! container_of {
    ($ptr:expr, $Container:ty, $field:ident) => {
        ($ptr as *mut u8).wrapping_sub(core::mem::offset_of!($Container, $field)) as *mut $Container
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_del_order() {
        let mut head = ListHead::new();
        let mut a = ListHead::new();
        let mut b = ListHead::new();
        let mut c = ListHead::new();
        // SAFETY: all entries live on this stack frame and do not move.
        unsafe {
            let h = &mut head as *mut _;
            ListHead::init(h);
            assert!(ListHead::is_empty(h));
            ListHead::add(&mut a, h);
            ListHead::add(&mut b, h);
            ListHead::add_tail(&mut c, h);
            assert_eq!(ListHead::count(h), 3);
            assert_eq!(ListHead::first(h), Some(&mut b as *mut _));
            assert_eq!(ListHead::last(h), Some(&mut c as *mut _));
            ListHead::del(&mut b);
            assert_eq!(ListHead::first(h), Some(&mut a as *mut _));
            ListHead::move_tail(&mut a, h);
            assert_eq!(ListHead::last(h), Some(&mut a as *mut _));
            ListHead::del(&mut a);
            ListHead::del(&mut c);
            assert!(ListHead::is_empty(h));
        }
    }
}
