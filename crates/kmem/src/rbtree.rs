//! Intrusive red-black trees with optional augmentation (`lib/rbtree.c`,
//! `include/linux/rbtree_augmented.h`).
//!
//! A node ([`RbNode`]) lives inside the structure it orders, so the tree
//! needs no memory of its own (the core has no heap). As in the kernel, the
//! tree does not know the key: the caller walks down from the root comparing
//! keys itself, links the new node at the leaf it found ([`rb_link_node`])
//! and then lets [`rb_insert`] rebalance. [`rb_erase`] unlinks any node.
//! Keys of nodes in the tree must not change in a way that reorders them.
//!
//! * **Balance**: the red-black rules (the root is black, a red node has
//!   black children, every path from a node down to a leaf has the same
//!   number of black nodes) keep the height below `2 log2(n + 1)`; insert and
//!   erase repaint and rotate along one path (at most two rotations on
//!   insert, three on erase).
//! * **Augmentation**: a tree may keep, in every node, a value computed from
//!   the node and its two children (vmalloc's free tree keeps the largest free
//!   range in each subtree, `subtree_max_size`). [`RbAugment::update`]
//!   recomputes one node from its children. Insert and erase first repair the
//!   values along the changed path up to the root ([`rb_propagate`]), then
//!   rebalance; a rotation changes the subtrees of exactly the two nodes it
//!   turns, and recomputes them (lower one first). A caller that changes a
//!   node's own contribution in place (shrinks or grows a free range) calls
//!   [`rb_propagate`] on it.
//!
//! Locking: none; the owner of the tree serialises every operation (vmalloc
//! holds its spinlock).

use core::ptr;

/// A node of an intrusive red-black tree (`struct rb_node`).
///
/// # Invariants
/// While linked, `parent`, `left` and `right` point to nodes of the same tree
/// (or are null), and the tree satisfies the red-black rules.
#[derive(Debug)]
#[repr(C)]
pub struct RbNode {
    parent: *mut RbNode,
    left: *mut RbNode,
    right: *mut RbNode,
    red: bool,
}

impl Default for RbNode {
    fn default() -> Self {
        Self::new()
    }
}

impl RbNode {
    /// An unlinked node.
    pub const fn new() -> Self {
        RbNode {
            parent: ptr::null_mut(),
            left: ptr::null_mut(),
            right: ptr::null_mut(),
            red: false,
        }
    }

    /// The left child (smaller keys), or null.
    pub fn left(&self) -> *mut RbNode {
        self.left
    }

    /// The right child (larger keys), or null.
    pub fn right(&self) -> *mut RbNode {
        self.right
    }

    /// The parent, or null for the root (and unlinked nodes).
    pub fn parent(&self) -> *mut RbNode {
        self.parent
    }
}

/// The root of a tree (`struct rb_root`).
#[derive(Debug)]
pub struct RbRoot {
    /// The root node, or null for an empty tree.
    pub node: *mut RbNode,
}

impl Default for RbRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl RbRoot {
    /// An empty tree.
    pub const fn new() -> Self {
        RbRoot {
            node: ptr::null_mut(),
        }
    }

    /// Is the tree empty?
    pub fn is_empty(&self) -> bool {
        self.node.is_null()
    }
}

/// How a tree keeps its per-node augmented value
/// (`struct rb_augment_callbacks`).
pub trait RbAugment {
    /// Recompute `node`'s value from the node itself and its children.
    ///
    /// # Safety
    /// `node` is a live node of the tree; its children's values are current.
    unsafe fn update(node: *mut RbNode);
}

/// A tree without augmentation.
pub struct NoAugment;

impl RbAugment for NoAugment {
    unsafe fn update(_node: *mut RbNode) {}
}

fn is_red(n: *mut RbNode) -> bool {
    // SAFETY: a non-null node pointer of a tree is live (caller's promise in
    // every public function below).
    !n.is_null() && unsafe { (*n).red }
}

/// Put `new` where `old` was under `parent` (or at the root).
///
/// # Safety
/// `old` is a child of `parent` (or the root if `parent` is null).
unsafe fn change_child(root: &mut RbRoot, parent: *mut RbNode, old: *mut RbNode, new: *mut RbNode) {
    if parent.is_null() {
        root.node = new;
    } else {
        // SAFETY: `parent` is live (caller's promise).
        unsafe {
            if (*parent).left == old {
                (*parent).left = new;
            } else {
                (*parent).right = new;
            }
        }
    }
}

/// Turn `x` down to the left: its right child takes its place.
///
/// # Safety
/// `x` is in the tree and has a right child; augmented values are current.
unsafe fn rotate_left<A: RbAugment>(root: &mut RbRoot, x: *mut RbNode) {
    // SAFETY: the nodes touched are live members of the tree.
    unsafe {
        let y = (*x).right;
        (*x).right = (*y).left;
        if !(*y).left.is_null() {
            (*(*y).left).parent = x;
        }
        (*y).parent = (*x).parent;
        change_child(root, (*x).parent, x, y);
        (*y).left = x;
        (*x).parent = y;
        A::update(x);
        A::update(y);
    }
}

/// Turn `x` down to the right: its left child takes its place.
///
/// # Safety
/// `x` is in the tree and has a left child; augmented values are current.
unsafe fn rotate_right<A: RbAugment>(root: &mut RbRoot, x: *mut RbNode) {
    // SAFETY: the nodes touched are live members of the tree.
    unsafe {
        let y = (*x).left;
        (*x).left = (*y).right;
        if !(*y).right.is_null() {
            (*(*y).right).parent = x;
        }
        (*y).parent = (*x).parent;
        change_child(root, (*x).parent, x, y);
        (*y).right = x;
        (*x).parent = y;
        A::update(x);
        A::update(y);
    }
}

/// `rb_link_node`: attach `node` as a leaf under `parent` (its left child if
/// `left`), or as the root of an empty tree when `parent` is null. Call
/// [`rb_insert`] next.
///
/// # Safety
/// `node` is not in any tree; `parent` is a node of `root`'s tree whose
/// chosen child is null, and the position is right for `node`'s key.
pub unsafe fn rb_link_node(root: &mut RbRoot, node: *mut RbNode, parent: *mut RbNode, left: bool) {
    // SAFETY: `node` is ours; `parent` is live (caller's promise).
    unsafe {
        (*node).parent = parent;
        (*node).left = ptr::null_mut();
        (*node).right = ptr::null_mut();
        (*node).red = true;
        if parent.is_null() {
            root.node = node;
        } else if left {
            (*parent).left = node;
        } else {
            (*parent).right = node;
        }
    }
}

/// `rb_insert_augmented`: rebalance after [`rb_link_node`].
///
/// # Safety
/// `node` was just linked into `root`'s tree.
pub unsafe fn rb_insert<A: RbAugment>(root: &mut RbRoot, node: *mut RbNode) {
    // SAFETY: every pointer followed is a live node of the tree; a red node's
    // parent exists (the root is black), and so does its grandparent.
    unsafe {
        rb_propagate::<A>(node);
        let mut z = node;
        loop {
            let p = (*z).parent;
            if !is_red(p) {
                break;
            }
            let g = (*p).parent;
            if p == (*g).left {
                let u = (*g).right;
                if is_red(u) {
                    (*p).red = false;
                    (*u).red = false;
                    (*g).red = true;
                    z = g;
                    continue;
                }
                if z == (*p).right {
                    z = p;
                    rotate_left::<A>(root, z);
                }
                let p = (*z).parent;
                let g = (*p).parent;
                (*p).red = false;
                (*g).red = true;
                rotate_right::<A>(root, g);
            } else {
                let u = (*g).left;
                if is_red(u) {
                    (*p).red = false;
                    (*u).red = false;
                    (*g).red = true;
                    z = g;
                    continue;
                }
                if z == (*p).left {
                    z = p;
                    rotate_right::<A>(root, z);
                }
                let p = (*z).parent;
                let g = (*p).parent;
                (*p).red = false;
                (*g).red = true;
                rotate_left::<A>(root, g);
            }
        }
        (*root.node).red = false;
    }
}

/// Replace the subtree at `u` by the one at `v` (which may be null).
///
/// # Safety
/// `u` is in the tree; `v` is null or a node about to take its place.
unsafe fn transplant(root: &mut RbRoot, u: *mut RbNode, v: *mut RbNode) {
    // SAFETY: live nodes (caller's promise).
    unsafe {
        change_child(root, (*u).parent, u, v);
        if !v.is_null() {
            (*v).parent = (*u).parent;
        }
    }
}

/// `rb_erase_augmented`: unlink `z` from the tree and rebalance.
///
/// # Safety
/// `z` is a node of `root`'s tree. Afterwards it is unlinked.
pub unsafe fn rb_erase<A: RbAugment>(root: &mut RbRoot, z: *mut RbNode) {
    // SAFETY: every pointer followed is a live node of the tree; by the
    // red-black rules a doubly black `x` (not the root) has a sibling.
    unsafe {
        let x;
        let mut xp;
        let mut removed_red = (*z).red;
        if (*z).left.is_null() {
            x = (*z).right;
            xp = (*z).parent;
            transplant(root, z, x);
        } else if (*z).right.is_null() {
            x = (*z).left;
            xp = (*z).parent;
            transplant(root, z, x);
        } else {
            // The successor `y` takes `z`'s place and colour.
            let mut y = (*z).right;
            while !(*y).left.is_null() {
                y = (*y).left;
            }
            removed_red = (*y).red;
            x = (*y).right;
            if (*y).parent == z {
                xp = y;
            } else {
                xp = (*y).parent;
                transplant(root, y, x);
                (*y).right = (*z).right;
                (*(*y).right).parent = y;
            }
            transplant(root, z, y);
            (*y).left = (*z).left;
            (*(*y).left).parent = y;
            (*y).red = (*z).red;
        }
        (*z).parent = ptr::null_mut();
        (*z).left = ptr::null_mut();
        (*z).right = ptr::null_mut();
        // Every node whose subtree lost `z` is on the path from `xp` up.
        rb_propagate::<A>(xp);
        if removed_red {
            return;
        }
        let mut x = x;
        while x != root.node && !is_red(x) {
            if x == (*xp).left {
                let mut w = (*xp).right;
                if is_red(w) {
                    (*w).red = false;
                    (*xp).red = true;
                    rotate_left::<A>(root, xp);
                    w = (*xp).right;
                }
                if !is_red((*w).left) && !is_red((*w).right) {
                    (*w).red = true;
                    x = xp;
                    xp = (*x).parent;
                } else {
                    if !is_red((*w).right) {
                        (*(*w).left).red = false;
                        (*w).red = true;
                        rotate_right::<A>(root, w);
                        w = (*xp).right;
                    }
                    (*w).red = (*xp).red;
                    (*xp).red = false;
                    (*(*w).right).red = false;
                    rotate_left::<A>(root, xp);
                    x = root.node;
                }
            } else {
                let mut w = (*xp).left;
                if is_red(w) {
                    (*w).red = false;
                    (*xp).red = true;
                    rotate_right::<A>(root, xp);
                    w = (*xp).left;
                }
                if !is_red((*w).left) && !is_red((*w).right) {
                    (*w).red = true;
                    x = xp;
                    xp = (*x).parent;
                } else {
                    if !is_red((*w).left) {
                        (*(*w).right).red = false;
                        (*w).red = true;
                        rotate_left::<A>(root, w);
                        w = (*xp).left;
                    }
                    (*w).red = (*xp).red;
                    (*xp).red = false;
                    (*(*w).left).red = false;
                    rotate_right::<A>(root, xp);
                    x = root.node;
                }
            }
        }
        if !x.is_null() {
            (*x).red = false;
        }
    }
}

/// Recompute the augmented values of `node` and all its ancestors.
///
/// # Safety
/// `node` is null or a node of a tree; its children's values are current.
pub unsafe fn rb_propagate<A: RbAugment>(mut node: *mut RbNode) {
    while !node.is_null() {
        // SAFETY: live node (caller's promise); its parent chain is too.
        unsafe {
            A::update(node);
            node = (*node).parent;
        }
    }
}

/// `rb_first`: the leftmost node, or null.
pub fn rb_first(root: &RbRoot) -> *mut RbNode {
    let mut n = root.node;
    // SAFETY: the tree's nodes are live while the owner holds it.
    unsafe {
        while !n.is_null() && !(*n).left.is_null() {
            n = (*n).left;
        }
    }
    n
}

/// `rb_next`: the in-order successor of `node`, or null.
///
/// # Safety
/// `node` is a node of a tree.
pub unsafe fn rb_next(node: *mut RbNode) -> *mut RbNode {
    // SAFETY: live nodes of the tree (caller's promise).
    unsafe {
        if !(*node).right.is_null() {
            let mut n = (*node).right;
            while !(*n).left.is_null() {
                n = (*n).left;
            }
            return n;
        }
        let mut n = node;
        let mut p = (*n).parent;
        while !p.is_null() && n == (*p).right {
            n = p;
            p = (*p).parent;
        }
        p
    }
}

/// `rb_prev`: the in-order predecessor of `node`, or null.
///
/// # Safety
/// `node` is a node of a tree.
pub unsafe fn rb_prev(node: *mut RbNode) -> *mut RbNode {
    // SAFETY: live nodes of the tree (caller's promise).
    unsafe {
        if !(*node).left.is_null() {
            let mut n = (*node).left;
            while !(*n).right.is_null() {
                n = (*n).right;
            }
            return n;
        }
        let mut n = node;
        let mut p = (*n).parent;
        while !p.is_null() && n == (*p).left {
            n = p;
            p = (*p).parent;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    #[repr(C)]
    struct Item {
        rb: RbNode,
        key: u64,
        weight: u64,
        max: u64,
    }

    struct MaxWeight;

    impl RbAugment for MaxWeight {
        unsafe fn update(n: *mut RbNode) {
            // SAFETY: test nodes are `Item`s (rb first, repr(C)).
            unsafe {
                let it = n as *mut Item;
                let mut m = (*it).weight;
                for c in [(*n).left, (*n).right] {
                    if !c.is_null() {
                        m = m.max((*(c as *mut Item)).max);
                    }
                }
                (*it).max = m;
            }
        }
    }

    fn insert(root: &mut RbRoot, it: *mut Item) {
        // SAFETY: test items are live boxes.
        unsafe {
            let mut parent = ptr::null_mut();
            let mut left = false;
            let mut n = root.node;
            while !n.is_null() {
                parent = n;
                left = (*it).key < (*(n as *mut Item)).key;
                n = if left { (*n).left } else { (*n).right };
            }
            rb_link_node(root, it as *mut RbNode, parent, left);
            rb_insert::<MaxWeight>(root, it as *mut RbNode);
        }
    }

    /// Checks the red-black rules, order and augmented values; returns
    /// (black height, max weight).
    fn check(n: *mut RbNode, lo: u64, hi: u64) -> (usize, u64) {
        if n.is_null() {
            return (1, 0);
        }
        // SAFETY: live test nodes.
        unsafe {
            let it = n as *mut Item;
            assert!((*it).key >= lo && (*it).key <= hi, "order");
            for c in [(*n).left, (*n).right] {
                if !c.is_null() {
                    assert_eq!((*c).parent, n, "parent link");
                    assert!(!((*n).red && (*c).red), "red node with red child");
                }
            }
            let (bl, ml) = check((*n).left, lo, (*it).key);
            let (br, mr) = check((*n).right, (*it).key, hi);
            assert_eq!(bl, br, "black height");
            let m = (*it).weight.max(ml).max(mr);
            assert_eq!((*it).max, m, "augmented value");
            (bl + usize::from(!(*n).red), m)
        }
    }

    #[test]
    fn random_inserts_and_erases_keep_every_invariant() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut root = RbRoot::new();
        let mut live: Vec<*mut Item> = Vec::new();
        for round in 0..4000 {
            if live.is_empty() || next() % 3 != 0 {
                let it = Box::into_raw(Box::new(Item {
                    rb: RbNode::new(),
                    key: next() % 1000,
                    weight: next() % 100_000,
                    max: 0,
                }));
                insert(&mut root, it);
                live.push(it);
            } else {
                let i = (next() as usize) % live.len();
                let it = live.swap_remove(i);
                // SAFETY: `it` is in the tree.
                unsafe { rb_erase::<MaxWeight>(&mut root, it as *mut RbNode) };
                // SAFETY: unlinked; ours.
                drop(unsafe { Box::from_raw(it) });
            }
            if round % 7 == 0 {
                // SAFETY: the root is live when non-null.
                assert!(!is_red(root.node));
                let (_, m) = check(root.node, 0, u64::MAX);
                // SAFETY: live items.
                let want = live.iter().map(|&it| unsafe { (*it).weight }).max().unwrap_or(0);
                assert_eq!(m, want);
            }
        }
        // In-order walk both ways sees every key sorted.
        let mut keys = Vec::new();
        let mut n = rb_first(&root);
        while !n.is_null() {
            // SAFETY: live nodes.
            unsafe {
                keys.push((*(n as *mut Item)).key);
                n = rb_next(n);
            }
        }
        // SAFETY: live items.
        let mut want: Vec<u64> = live.iter().map(|&it| unsafe { (*it).key }).collect();
        want.sort();
        assert_eq!(keys, want);
        let mut back = Vec::new();
        let mut n = root.node;
        // SAFETY: live nodes.
        unsafe {
            while !n.is_null() && !(*n).right.is_null() {
                n = (*n).right;
            }
            while !n.is_null() {
                back.push((*(n as *mut Item)).key);
                n = rb_prev(n);
            }
        }
        back.reverse();
        assert_eq!(back, want);
        for it in live {
            // SAFETY: in the tree; then ours.
            unsafe {
                rb_erase::<MaxWeight>(&mut root, it as *mut RbNode);
                drop(Box::from_raw(it));
            }
        }
        assert!(root.is_empty());
    }
}
