//! The join's state, laid out for a million active users at once (issue 9: the evaluator
//! holds every user active in the last two attribution windows).
//!
//! Three choices keep it small:
//! - **Sharded tables** ([`ShardedMap`]): a hash table that grows copies itself into one
//!   twice its size, so for a moment the old and the new table are both alive; at a million
//!   users that moment was the evaluator's peak. Split into [`SHARDS`] tables, only one
//!   shard (1/64 of the entries) is ever copied at a time.
//! - **A 24-byte user** ([`UserState`]): the newest record time, the latest closed
//!   impression, and the index of the oldest open impression.
//! - **Open impressions in one slab** ([`Users`]): each user's open impressions are a short
//!   chain (at most [`IMPRESSIONS_PER_USER`], oldest first) of slots in one `Vec`, each
//!   holding its list's first 20 ids inline. No allocation per user or per list; a freed
//!   slot is reused by the next impression.
//! - **Pairs under their impression**: the user × movie pairs an impression collected are a
//!   chain of 32-byte nodes in a second slab, hanging from the impression's slot, and are
//!   scored when it closes. A hash table keyed by (impression, movie) with a closing-time
//!   index cost more than twice that per pair.
//!
//! An impression pushed out of a user's list by newer ones keeps its pairs: it is parked
//! until its window closes, then scored like any other.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use super::join::MovieKey;
use super::score::{LIST_LENGTH, Position};

/// Impressions kept open per user for late records; an older one is dropped from the list
/// (its pairs are still scored when its window closes).
pub const IMPRESSIONS_PER_USER: usize = 8;

/// log2 of the number of shards of a [`ShardedMap`].
const SHARD_BITS: u32 = 6;
/// Shards of a [`ShardedMap`].
pub const SHARDS: usize = 1 << SHARD_BITS;

/// No slot (end of a chain, or a user with no open impression).
const NO_SLOT: u32 = u32::MAX;
/// `UserState::closed_version` of a user with no closed impression.
const NO_VERSION: u32 = u32::MAX;

/// Which shard a key lives in.
pub trait ShardKey {
    /// A shard index below [`SHARDS`], spread evenly over the keys the join sees.
    fn shard(&self) -> usize;
}

/// Fibonacci hashing: the top bits of the product spread sequential ids over every shard.
fn top_bits(x: u64) -> usize {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
}

impl ShardKey for u32 {
    fn shard(&self) -> usize {
        top_bits(u64::from(*self))
    }
}

/// A hash map split into [`SHARDS`] maps by [`ShardKey`], so that growing never holds two
/// copies of the whole table (see the module docs).
#[derive(Debug)]
pub struct ShardedMap<K, V> {
    shards: Box<[HashMap<K, V>]>,
    len: usize,
}

impl<K: ShardKey + Hash + Eq, V> ShardedMap<K, V> {
    /// An empty map (no shard allocates before its first entry).
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[key.shard()].get(key)
    }

    /// The value of `key`, mutable.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.shards[key.shard()].get_mut(key)
    }

    /// The value of `key`, inserted from `make` when absent.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        match self.shards[key.shard()].entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.len += 1;
                entry.insert(make())
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.shards[key.shard()].remove(key);
        self.len -= usize::from(removed.is_some());
        removed
    }
}

impl<K: ShardKey + Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// A shown list as the join keeps it: only the first [`LIST_LENGTH`] keys (no later position
/// is scored), inline as 4-byte ids when every one is a movie id below 2^32 (the usual
/// case), boxed 8-byte keys otherwise (slugs).
#[derive(Debug, PartialEq, Eq)]
pub enum ShownItems {
    /// Movie ids, `ids[len..]` zero.
    Ids {
        /// How many of `ids` are the list.
        len: u8,
        /// The list, zero-padded.
        ids: [u32; LIST_LENGTH],
    },
    /// Keys that do not all fit in 4 bytes.
    Keys(Box<[MovieKey]>),
}

impl ShownItems {
    /// Keeps the first [`LIST_LENGTH`] of `items`.
    pub fn new(items: &[MovieKey]) -> Self {
        let items = &items[..items.len().min(LIST_LENGTH)];
        let mut ids = [0u32; LIST_LENGTH];
        for (slot, key) in ids.iter_mut().zip(items) {
            match u32::try_from(key.0) {
                Ok(id) => *slot = id,
                Err(_) => return Self::Keys(items.into()),
            }
        }
        Self::Ids {
            len: items.len() as u8,
            ids,
        }
    }

    /// Where `movie` stood in the list.
    pub fn position(&self, movie: MovieKey) -> Position {
        match self {
            Self::Ids { len, ids } => u32::try_from(movie.0).map_or(Position::NotListed, |id| {
                Position::of(&ids[..usize::from(*len)], &id)
            }),
            Self::Keys(keys) => Position::of(keys, &movie),
        }
    }

    const EMPTY: Self = Self::Ids {
        len: 0,
        ids: [0; LIST_LENGTH],
    };
}

/// An open impression.
#[derive(Debug)]
pub struct Shown {
    /// Unix seconds.
    pub time: i64,
    /// Version index.
    pub version: u32,
    /// Next slot of the user's chain (a newer impression), or of the free list.
    next: u32,
    /// First node of its pairs, or [`NO_SLOT`].
    pairs: u32,
    /// The list.
    pub items: ShownItems,
}

/// What a user did with one movie after one impression, folded as actions arrive; 16
/// bytes (two `Option`s would make it 32).
#[derive(Debug)]
pub struct Pair {
    rating_time: i64,
    minutes: u32,
    /// Where the movie stood in the impression's list.
    pub position: Position,
    rating: u8,
    /// [`Pair::HAS_MINUTES`] | [`Pair::HAS_RATING`].
    flags: u8,
}

impl Pair {
    const HAS_MINUTES: u8 = 1;
    const HAS_RATING: u8 = 2;

    /// A pair with no action yet.
    pub fn new(position: Position) -> Self {
        Self {
            rating_time: 0,
            minutes: 0,
            position,
            rating: 0,
            flags: 0,
        }
    }

    /// The furthest minute watched.
    pub fn minutes(&self) -> Option<u32> {
        (self.flags & Self::HAS_MINUTES != 0).then_some(self.minutes)
    }

    /// Sets the furthest minute watched.
    pub fn set_minutes(&mut self, minute: u32) {
        self.minutes = minute;
        self.flags |= Self::HAS_MINUTES;
    }

    /// (time, value) of the rating that counts.
    pub fn rating(&self) -> Option<(i64, u8)> {
        (self.flags & Self::HAS_RATING != 0).then_some((self.rating_time, self.rating))
    }

    /// Sets the rating that counts.
    pub fn set_rating(&mut self, time: i64, value: u8) {
        (self.rating_time, self.rating) = (time, value);
        self.flags |= Self::HAS_RATING;
    }
}

#[derive(Debug)]
struct PairNode {
    movie: MovieKey,
    /// Next node of the impression's pairs, or of the free list.
    next: u32,
    pair: Pair,
}

/// What the join remembers of a user.
#[derive(Debug)]
pub struct UserState {
    /// The newest event time of any of their records.
    pub newest: i64,
    closed_time: i64,
    closed_version: u32,
    /// Oldest open impression, or [`NO_SLOT`].
    head: u32,
}

impl UserState {
    /// A user first seen at `time`: nothing closed, nothing open.
    fn new(time: i64) -> Self {
        Self {
            newest: time,
            closed_time: 0,
            closed_version: NO_VERSION,
            head: NO_SLOT,
        }
    }

    /// The latest closed impression: (time, version).
    pub fn closed(&self) -> Option<(i64, u32)> {
        (self.closed_version != NO_VERSION).then_some((self.closed_time, self.closed_version))
    }

    /// Whether any impression of theirs is open.
    pub fn has_open(&self) -> bool {
        self.head != NO_SLOT
    }
}

/// A user's open impressions, oldest first, borrowed from the slab.
pub struct OpenList<'a> {
    slots: &'a [Shown],
    ids: [u32; IMPRESSIONS_PER_USER],
    len: usize,
}

impl<'a> OpenList<'a> {
    /// The impressions, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a Shown> + ExactSizeIterator + '_ {
        let slots = self.slots;
        self.ids[..self.len]
            .iter()
            .map(move |&slot| &slots[slot as usize])
    }

    /// The `i`-th oldest.
    pub fn get(&self, i: usize) -> &'a Shown {
        let slots = self.slots;
        &slots[self.slot(i) as usize]
    }

    /// The slot of the `i`-th oldest (for [`Users::pair`]).
    pub fn slot(&self, i: usize) -> u32 {
        self.ids[..self.len][i]
    }
}

/// An entry of a [`Pool`]: its `next` index chains a user's impressions, an impression's
/// pairs, or the pool's free entries.
trait Chained {
    fn next_mut(&mut self) -> &mut u32;
}

impl Chained for Shown {
    fn next_mut(&mut self) -> &mut u32 {
        &mut self.next
    }
}

impl Chained for PairNode {
    fn next_mut(&mut self) -> &mut u32 {
        &mut self.next
    }
}

/// A slab of `T` addressed by `u32` index; freed entries are chained through their own
/// `next` and reused first.
#[derive(Debug)]
struct Pool<T> {
    items: Vec<T>,
    /// Head of the chain of free entries.
    free: u32,
    /// Entries in use.
    used: usize,
}

impl<T: Chained> Pool<T> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            free: NO_SLOT,
            used: 0,
        }
    }

    /// Stores `item` in a free entry, or a new one; returns its index.
    fn allocate(&mut self, item: T) -> u32 {
        self.used += 1;
        if self.free == NO_SLOT {
            let index = u32::try_from(self.items.len()).expect("fewer than 2^32 entries");
            self.items.push(item);
            index
        } else {
            let index = self.free;
            self.free = *self.items[index as usize].next_mut();
            self.items[index as usize] = item;
            index
        }
    }

    /// Puts `index` on the free chain; returns the `next` it had.
    fn free(&mut self, index: u32) -> u32 {
        self.used -= 1;
        let next = std::mem::replace(self.items[index as usize].next_mut(), self.free);
        self.free = index;
        next
    }
}

/// Every user's state, open impressions and their pairs.
#[derive(Debug)]
pub struct Users {
    /// Attribution window, seconds: an impression at `t` closes when the watermark passes
    /// `t + window`.
    window: i64,
    table: ShardedMap<u32, UserState>,
    slots: Pool<Shown>,
    nodes: Pool<PairNode>,
    /// Impressions pushed out of their user's list that still hold pairs, by the end of
    /// their window.
    parked: BTreeMap<i64, Vec<u32>>,
}

/// Scores a closed pair: (version, movie, pair).
pub type ScorePair<'a> = dyn FnMut(u32, MovieKey, &Pair) + 'a;

impl Users {
    /// No users; impressions close `window` seconds after they were shown.
    pub fn new(window: i64) -> Self {
        Self {
            window,
            table: ShardedMap::new(),
            slots: Pool::new(),
            nodes: Pool::new(),
            parked: BTreeMap::new(),
        }
    }

    /// Pairs collected by open impressions.
    pub fn open_pairs(&self) -> usize {
        self.nodes.used
    }

    /// Users with any state.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// A user's state.
    pub fn get(&self, user: u32) -> Option<&UserState> {
        self.table.get(&user)
    }

    /// Notes a record of `user` at `time` (creating their state); true when an earlier
    /// record of theirs was newer (out of order).
    pub fn touch(&mut self, user: u32, time: i64) -> bool {
        let state = self.table.get_or_insert_with(user, || UserState::new(time));
        let out_of_order = time < state.newest;
        state.newest = state.newest.max(time);
        out_of_order
    }

    /// Forgets a user and frees their open impressions, pairs unscored (the join forgets
    /// only users with none open).
    pub fn remove(&mut self, user: u32) {
        if let Some(state) = self.table.remove(&user) {
            let mut slot = state.head;
            while slot != NO_SLOT {
                self.drop_pairs(slot, &mut |_, _, _| {});
                slot = self.release(slot);
            }
        }
    }

    /// The open impressions in `state`, oldest first.
    pub fn open(&self, state: &UserState) -> OpenList<'_> {
        let mut list = OpenList {
            slots: &self.slots.items,
            ids: [NO_SLOT; IMPRESSIONS_PER_USER],
            len: 0,
        };
        let mut slot = state.head;
        while slot != NO_SLOT && list.len < IMPRESSIONS_PER_USER {
            list.ids[list.len] = slot;
            list.len += 1;
            slot = self.slots.items[slot as usize].next;
        }
        list
    }

    /// Whether `user` has this exact impression open already.
    pub fn is_open(&self, user: u32, time: i64, version: u32, items: &ShownItems) -> bool {
        self.table.get(&user).is_some_and(|state| {
            self.open(state)
                .iter()
                .any(|s| s.time == time && s.version == version && s.items == *items)
        })
    }

    /// Records `user`'s closed impression at `time` if it is their latest closed one;
    /// false when it is not (or the user has no state).
    pub fn set_closed(&mut self, user: u32, time: i64, version: u32) -> bool {
        let Some(state) = self.table.get_mut(&user) else {
            return false;
        };
        if state.closed().is_some_and(|(closed, _)| closed > time) {
            return false;
        }
        state.closed_time = time;
        state.closed_version = version;
        true
    }

    /// Opens an impression of `user` in time order (after any at the same time); the
    /// oldest leaves the list when the user then has more than [`IMPRESSIONS_PER_USER`]
    /// (parked until its window closes if it holds pairs).
    pub fn push_open(&mut self, user: u32, time: i64, version: u32, items: ShownItems) {
        let slot = self.slots.allocate(Shown {
            time,
            version,
            next: NO_SLOT,
            pairs: NO_SLOT,
            items,
        });
        let slots = &mut self.slots.items;
        let state = self.table.get_or_insert_with(user, || UserState::new(time));
        let (mut before, mut after, mut count) = (NO_SLOT, state.head, 1);
        while after != NO_SLOT && slots[after as usize].time <= time {
            (before, after) = (after, slots[after as usize].next);
            count += 1;
        }
        slots[slot as usize].next = after;
        if before == NO_SLOT {
            state.head = slot;
        } else {
            slots[before as usize].next = slot;
        }
        while after != NO_SLOT {
            after = slots[after as usize].next;
            count += 1;
        }
        if count > IMPRESSIONS_PER_USER {
            let oldest = state.head;
            state.head = slots[oldest as usize].next;
            let shown = &slots[oldest as usize];
            if shown.pairs == NO_SLOT {
                self.release(oldest);
            } else {
                let closes = shown.time.saturating_add(self.window);
                self.parked.entry(closes).or_default().push(oldest);
            }
        }
    }

    /// The pair of `movie` under the impression in `slot` (from [`OpenList::slot`]),
    /// created on its first action.
    pub fn pair(&mut self, slot: u32, movie: MovieKey) -> &mut Pair {
        let shown = &self.slots.items[slot as usize];
        let mut node = shown.pairs;
        while node != NO_SLOT && self.nodes.items[node as usize].movie != movie {
            node = self.nodes.items[node as usize].next;
        }
        if node == NO_SLOT {
            let pair = Pair::new(shown.items.position(movie));
            node = self.nodes.allocate(PairNode {
                movie,
                next: shown.pairs,
                pair,
            });
            self.slots.items[slot as usize].pairs = node;
        }
        &mut self.nodes.items[node as usize].pair
    }

    /// Scores and frees the pairs of parked impressions whose window ended before
    /// `watermark`.
    pub fn close_parked(&mut self, watermark: i64, score: &mut ScorePair<'_>) {
        let open = self.parked.split_off(&watermark);
        for (_, slots) in std::mem::replace(&mut self.parked, open) {
            for slot in slots {
                self.drop_pairs(slot, score);
                self.release(slot);
            }
        }
    }

    /// Closes `user`'s open impressions whose window (`time + window`) ended before
    /// `watermark`, scoring their pairs; returns the latest of them (time, version).
    pub fn close_before(
        &mut self,
        user: u32,
        watermark: i64,
        score: &mut ScorePair<'_>,
    ) -> Option<(i64, u32)> {
        let mut latest = None;
        loop {
            let state = self.table.get_mut(&user)?;
            let slot = state.head;
            if slot == NO_SLOT {
                break;
            }
            let oldest = &self.slots.items[slot as usize];
            if oldest.time.saturating_add(self.window) >= watermark {
                break;
            }
            latest = Some((oldest.time, oldest.version));
            state.head = oldest.next;
            self.drop_pairs(slot, score);
            self.release(slot);
        }
        latest
    }

    /// Scores and frees the pairs under `slot`.
    fn drop_pairs(&mut self, slot: u32, score: &mut ScorePair<'_>) {
        let shown = &mut self.slots.items[slot as usize];
        let version = shown.version;
        let mut node = std::mem::replace(&mut shown.pairs, NO_SLOT);
        while node != NO_SLOT {
            let freed = &self.nodes.items[node as usize];
            score(version, freed.movie, &freed.pair);
            node = self.nodes.free(node);
        }
    }

    /// Frees a slot (and its list, if boxed); returns the next slot of its chain.
    fn release(&mut self, slot: u32) -> u32 {
        self.slots.items[slot as usize].items = ShownItems::EMPTY;
        self.slots.free(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: impl IntoIterator<Item = u64>) -> Vec<MovieKey> {
        ids.into_iter().map(MovieKey).collect()
    }

    #[test]
    fn compact_lists_find_the_positions_the_plain_list_does() {
        let slug = (1u64 << 32) + 3;
        let lists = [
            (0..25).map(|i| 100 + i).collect::<Vec<u64>>(),
            vec![7, slug, 9, u64::from(u32::MAX)],
            vec![0, 5],
            vec![],
        ];
        for list in lists {
            let compact = ShownItems::new(&keys(list.iter().copied()));
            assert_eq!(
                matches!(compact, ShownItems::Ids { .. }),
                list.iter().all(|&k| u32::try_from(k).is_ok()),
                "{list:?}"
            );
            // Movie 0 is not in a list padded with zeros unless it was listed.
            for movie in list
                .iter()
                .copied()
                .chain([0, 1, slug + 1, 100 + 19, 100 + 20])
            {
                let plain = Position::of(&keys(list.iter().copied()), &MovieKey(movie));
                assert_eq!(
                    compact.position(MovieKey(movie)),
                    plain,
                    "{movie} in {list:?}"
                );
            }
        }
    }

    #[test]
    fn sharded_map_counts_and_finds_what_a_plain_map_does() {
        let mut sharded = ShardedMap::new();
        let mut plain = HashMap::new();
        let mut state = 7u64;
        for step in 0..20_000u32 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let key = (state >> 40) as u32 % 3_000;
            if step % 3 == 0 {
                assert_eq!(sharded.remove(&key), plain.remove(&key));
            } else {
                *sharded.get_or_insert_with(key, || 0) += 1;
                *plain.entry(key).or_insert(0) += 1;
            }
            assert_eq!(sharded.len(), plain.len());
        }
        for key in 0..3_000 {
            assert_eq!(sharded.get(&key), plain.get(&key));
        }
        let used = sharded.shards.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(used, SHARDS, "sequential ids spread over every shard");
    }

    fn times(users: &Users, user: u32) -> Vec<i64> {
        users
            .get(user)
            .map(|state| users.open(state).iter().map(|s| s.time).collect())
            .unwrap_or_default()
    }

    fn nothing(_: u32, _: MovieKey, _: &Pair) {}

    #[test]
    fn open_impressions_stay_in_time_order_capped_and_reuse_their_slots() {
        let mut users = Users::new(50);
        users.touch(1, 100);
        users.touch(2, 100);
        for (version, time) in [(0, 100), (1, 300), (2, 200), (3, 200)] {
            users.push_open(1, time, version, ShownItems::new(&keys([7])));
        }
        assert_eq!(times(&users, 1), [100, 200, 200, 300]);
        let versions: Vec<u32> = users
            .open(users.get(1).unwrap())
            .iter()
            .map(|s| s.version)
            .collect();
        assert_eq!(versions, [0, 2, 3, 1], "same time: the later arrival after");
        for i in 0..10 {
            users.push_open(2, 1_000 + i, 0, ShownItems::EMPTY);
        }
        assert_eq!(times(&users, 2), (1_002..1_010).collect::<Vec<_>>());
        assert_eq!(users.slots.used, 4 + IMPRESSIONS_PER_USER);

        assert_eq!(users.close_before(1, 251, &mut nothing), Some((200, 3)));
        assert_eq!(times(&users, 1), [300]);
        assert_eq!(
            users.close_before(1, 251, &mut nothing),
            None,
            "nothing more closes"
        );
        assert_eq!(users.slots.used, 1 + IMPRESSIONS_PER_USER);
        let before = users.slots.items.len();
        users.push_open(1, 400, 0, ShownItems::EMPTY);
        assert_eq!(users.slots.items.len(), before, "a freed slot is reused");
        users.remove(2);
        assert_eq!(users.slots.used, 2);
        assert!(users.get(2).is_none() && users.len() == 1);
    }

    #[test]
    fn pairs_are_scored_once_when_their_impression_closes_even_after_leaving_the_list() {
        let mut users = Users::new(100);
        users.touch(1, 0);
        users.push_open(1, 0, 4, ShownItems::new(&keys([10, 11])));
        let first = users.open(users.get(1).unwrap()).slot(0);
        users.pair(first, MovieKey(11)).set_minutes(5);
        users.pair(first, MovieKey(99)).set_rating(3, 4);
        assert_eq!(
            users.pair(first, MovieKey(11)).minutes(),
            Some(5),
            "found again"
        );
        assert_eq!(users.open_pairs(), 2);
        // Newer impressions push the first out of the list; it keeps its pairs.
        for t in 1..=IMPRESSIONS_PER_USER as i64 {
            users.push_open(1, t, 0, ShownItems::EMPTY);
        }
        assert_eq!(times(&users, 1).first(), Some(&1));
        assert_eq!(users.open_pairs(), 2);

        let mut scored = Vec::new();
        let mut score = |version: u32, movie: MovieKey, pair: &Pair| {
            scored.push((
                version,
                movie.0,
                pair.position,
                pair.minutes(),
                pair.rating(),
            ));
        };
        users.close_parked(100, &mut score);
        assert_eq!(users.open_pairs(), 2, "its window ends at 100, inclusive");
        users.close_parked(101, &mut score);
        scored.sort_by_key(|s| s.1);
        assert_eq!(
            scored,
            [
                (4, 11, Position::Listed(2), Some(5), None),
                (4, 99, Position::NotListed, None, Some((3, 4))),
            ]
        );
        assert_eq!(users.open_pairs(), 0);
        assert_eq!(
            users.slots.used, IMPRESSIONS_PER_USER,
            "the parked slot is free"
        );

        let second = users.open(users.get(1).unwrap()).slot(0);
        users.pair(second, MovieKey(1)).set_minutes(1);
        let mut count = 0;
        users.close_before(1, i64::MAX, &mut |_, _, _| count += 1);
        assert_eq!((count, users.open_pairs(), users.slots.used), (1, 0, 0));
    }

    #[test]
    fn the_latest_closed_impression_wins() {
        let mut users = Users::new(10);
        assert!(!users.set_closed(5, 10, 1), "no state, nothing to remember");
        users.touch(5, 10);
        assert_eq!(users.get(5).unwrap().closed(), None);
        assert!(users.set_closed(5, 20, 1));
        assert!(!users.set_closed(5, 15, 2), "older than the one kept");
        assert!(users.set_closed(5, 20, 3), "same time: the later call wins");
        assert_eq!(users.get(5).unwrap().closed(), Some((20, 3)));
        assert!(!users.get(5).unwrap().has_open());
        assert!(users.touch(5, 9), "older than the newest: out of order");
        assert_eq!(users.get(5).unwrap().newest, 10);
    }

    #[test]
    fn a_user_state_stays_small() {
        assert_eq!(std::mem::size_of::<UserState>(), 24);
        assert!(std::mem::size_of::<Shown>() <= 112);
        assert_eq!(std::mem::size_of::<PairNode>(), 32);
    }
}
