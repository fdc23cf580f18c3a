//! The viewer's page cache: a file's decrypted content and its rendered pages, kept in
//! memory for a short while so that paging through a document decrypts it once and
//! renders each page once, not once per request.
//!
//! Guarantees:
//! - **Grant-bound.** Every entry is keyed by the view grant it was made under (and the
//!   file, page and zoom), so nothing cached under one grant is reachable under another.
//!   The cache is consulted only after the access policy has allowed the request with the
//!   grant's state as of now (`viewer::page`), and an entry is never kept past its
//!   grant's `valid_until`. When a grant is revoked (or a request under it is refused)
//!   its entries are dropped at once and, for [`ENDED_GRACE`], none may be added for it
//!   (a render that was under way when the grant ended is thrown away).
//! - **Short-lived.** An entry unused for the idle time (`viewer_cache_idle_seconds`,
//!   default 5 minutes) is dropped; a sweep runs on use and every [`SWEEP_EVERY`].
//! - **Bounded.** The entries' bytes stay within the budget (`viewer_cache_mib`, default
//!   256 MiB; 0 turns the cache off): the least recently used go first, and anything over
//!   half the budget is not kept at all.
//! - **Memory only.** Entries live in this process's memory and are zeroed when dropped
//!   (the last holder of an entry zeroes it: an eviction during a render waits for that
//!   render). Nothing is written to disk.
//! - **One render at a time per page, one look-ahead render at a time per server.** Loads
//!   and renders of one key are serialized ([`ViewerCache::lock_page`],
//!   [`ViewerCache::lock_content`]), so concurrent requests for the same page render it
//!   once. Pages after the one asked for are rendered ahead in the background, one
//!   task per viewer and one look-ahead render at a time across the server, so the
//!   renderer's other slot stays free for pages someone is waiting for.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::{OwnedMutexGuard, Semaphore};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::render::{self, Renderable};
use crate::records::model::FileId;

/// Plaintext held by the cache (content or a rendered page): zeroed when the last holder
/// drops it.
pub type Plain = Arc<Zeroizing<Vec<u8>>>;

/// How often the background sweep drops expired entries.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How long after a grant ends its entries may not come back: longer than any render
/// that was under way when it ended can take (the renderer's own timeout is 60 s).
pub const ENDED_GRACE: Duration = Duration::from_secs(180);
/// Pages rendered ahead of the one asked for.
pub const LOOKAHEAD: u32 = 4;
/// How long a request waits for another request's render of the same page (or load of
/// the same file) before it is answered busy.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long a look-ahead render waits for its turn before the look-ahead gives up.
const PREFETCH_WAIT: Duration = Duration::from_secs(5);
/// Lock stripes for loads and for renders.
const STRIPES: usize = 64;
/// Bytes of content handed to the renderer at a time.
const FEED_CHUNK: usize = 64 * 1024;

/// Look-ahead renders running at once across the server.
static PREFETCH: Semaphore = Semaphore::const_new(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A file's decrypted content, as opened under a grant.
    Content { grant: Uuid, file: FileId },
    /// One rendered page (PNG) at one zoom.
    Page {
        grant: Uuid,
        file: FileId,
        page: u32,
        zoom: u32,
    },
}

impl Key {
    fn grant(&self) -> Uuid {
        match self {
            Key::Content { grant, .. } | Key::Page { grant, .. } => *grant,
        }
    }
}

struct Entry {
    value: Plain,
    /// For content: the page count, once counted.
    pages: Option<u32>,
    /// The grant's end: the entry is never used at or after it.
    until: DateTime<Utc>,
    used: Instant,
    /// Position in the LRU order.
    tick: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Least recently used first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    /// Grants that ended, and when: nothing is added for them within [`ENDED_GRACE`].
    ended: HashMap<Uuid, Instant>,
    /// Viewers (grant, file) with a look-ahead under way.
    prefetching: HashSet<(Uuid, FileId)>,
    last_sweep: Option<Instant>,
}

impl Inner {
    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.order.remove(&e.tick);
        self.bytes = self.bytes.saturating_sub(e.value.len());
        Some(e)
    }

    fn touch(&mut self, key: Key) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(&key) {
            self.order.remove(&e.tick);
            e.tick = tick;
            e.used = Instant::now();
            self.order.insert(tick, key);
        }
    }

    /// The live entry for `key` (dropping it if it has expired), marked as used.
    fn get(&mut self, key: Key, idle: Duration, counters: &Counters) -> Option<&Entry> {
        let expired = self.entries.get(&key).map(|e| !live(e, idle, Utc::now()))?;
        if expired {
            self.remove(&key);
            counters.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.touch(key);
        self.entries.get(&key)
    }

    fn sweep(&mut self, idle: Duration, counters: &Counters) {
        let now = Utc::now();
        let dead: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| !live(e, idle, now))
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            self.remove(k);
        }
        counters
            .expired
            .fetch_add(dead.len() as u64, Ordering::Relaxed);
        self.ended.retain(|_, at| at.elapsed() < ENDED_GRACE);
        self.last_sweep = Some(Instant::now());
    }
}

fn live(e: &Entry, idle: Duration, now: DateTime<Utc>) -> bool {
    e.until > now && e.used.elapsed() < idle
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    decrypts: AtomicU64,
    renders: AtomicU64,
    prefetched: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
    dropped_for_grants: AtomicU64,
}

/// What the cache holds and has done (for tests, benchmarks and operators): no content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub budget: usize,
    /// Page requests answered from the cache, and not.
    pub hits: u64,
    pub misses: u64,
    /// Files decrypted and pages rendered for the viewer (look-ahead included).
    pub decrypts: u64,
    pub renders: u64,
    /// Pages rendered ahead of a request.
    pub prefetched: u64,
    /// Entries dropped to stay within the budget, because they expired (idle or grant
    /// end), and because their grant ended.
    pub evicted: u64,
    pub expired: u64,
    pub dropped_for_grants: u64,
}

/// The cache; cheap to clone (clones share it).
#[derive(Clone)]
pub struct ViewerCache {
    inner: Arc<Mutex<Inner>>,
    counters: Arc<Counters>,
    budget: usize,
    idle: Duration,
    content_locks: Arc<Vec<Arc<tokio::sync::Mutex<()>>>>,
    page_locks: Arc<Vec<Arc<tokio::sync::Mutex<()>>>>,
    hasher: RandomState,
    sweeper: Arc<AtomicBool>,
}

fn stripes() -> Arc<Vec<Arc<tokio::sync::Mutex<()>>>> {
    Arc::new(
        (0..STRIPES)
            .map(|_| Arc::new(tokio::sync::Mutex::new(())))
            .collect(),
    )
}

impl ViewerCache {
    /// A cache of at most `budget` bytes whose entries expire after `idle` unused.
    pub fn new(budget: usize, idle: Duration) -> ViewerCache {
        ViewerCache {
            inner: Arc::new(Mutex::new(Inner::default())),
            counters: Arc::new(Counters::default()),
            budget,
            idle,
            content_locks: stripes(),
            page_locks: stripes(),
            hasher: RandomState::new(),
            sweeper: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The cache the configuration asks for.
    pub fn from_config(config: &crate::config::Config) -> ViewerCache {
        let budget =
            usize::try_from(u64::from(config.viewer_cache_mib) * 1024 * 1024).unwrap_or(usize::MAX);
        ViewerCache::new(
            budget,
            Duration::from_secs(u64::from(config.viewer_cache_idle_seconds)),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner
            .last_sweep
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            inner.sweep(self.idle, &self.counters);
        }
        inner
    }

    /// The largest entry kept: half the budget.
    pub fn max_entry(&self) -> usize {
        self.budget / 2
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let c = &self.counters;
        CacheStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            budget: self.budget,
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            decrypts: c.decrypts.load(Ordering::Relaxed),
            renders: c.renders.load(Ordering::Relaxed),
            prefetched: c.prefetched.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            dropped_for_grants: c.dropped_for_grants.load(Ordering::Relaxed),
        }
    }

    /// How many entries are held for `grant`.
    pub fn entries_for_grant(&self, grant: Uuid) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.keys().filter(|k| k.grant() == grant).count()
    }

    /// Drops every entry of `grant` and refuses new ones for [`ENDED_GRACE`]: called when
    /// the grant is revoked and when a request under it is refused.
    pub fn forget_grant(&self, grant: Uuid) {
        let mut inner = self.lock();
        inner.ended.insert(grant, Instant::now());
        let keys: Vec<Key> = inner
            .entries
            .keys()
            .filter(|k| k.grant() == grant)
            .copied()
            .collect();
        for k in &keys {
            inner.remove(k);
        }
        if !keys.is_empty() {
            tracing::debug!(%grant, dropped = keys.len(), "viewer cache: grant ended");
        }
        self.counters
            .dropped_for_grants
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
    }

    /// Whether `grant` has ended (as far as this cache was told, within the grace time).
    fn has_ended(&self, grant: Uuid) -> bool {
        self.lock().ended.contains_key(&grant)
    }

    fn put(&self, key: Key, until: DateTime<Utc>, value: Plain, pages: Option<u32>) {
        let size = value.len();
        if size > self.max_entry() || until <= Utc::now() {
            return;
        }
        let mut inner = self.lock();
        if inner.ended.contains_key(&key.grant()) {
            return;
        }
        inner.remove(&key);
        while inner.bytes + size > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes = inner.bytes.saturating_sub(e.value.len());
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.order.insert(tick, key);
        inner.bytes += size;
        inner.entries.insert(
            key,
            Entry {
                value,
                pages,
                until,
                used: Instant::now(),
                tick,
            },
        );
        drop(inner);
        self.start_sweeper();
    }

    /// Runs the periodic sweep (once per cache, for as long as the cache exists).
    fn start_sweeper(&self) {
        if self.sweeper.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeper.store(false, Ordering::Release);
            return;
        };
        let inner: Weak<Mutex<Inner>> = Arc::downgrade(&self.inner);
        let counters = Arc::clone(&self.counters);
        let idle = self.idle;
        runtime.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                inner
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sweep(idle, &counters);
            }
        });
    }

    /// The rendered page, if cached (counted as a hit or a miss).
    pub fn page(&self, grant: Uuid, file: FileId, page: u32, zoom: u32) -> Option<Plain> {
        let key = Key::Page {
            grant,
            file,
            page,
            zoom,
        };
        let hit = self
            .lock()
            .get(key, self.idle, &self.counters)
            .map(|e| Arc::clone(&e.value));
        let counter = if hit.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    fn has_page(&self, grant: Uuid, file: FileId, page: u32, zoom: u32) -> bool {
        let key = Key::Page {
            grant,
            file,
            page,
            zoom,
        };
        let inner = self.lock();
        inner
            .entries
            .get(&key)
            .is_some_and(|e| live(e, self.idle, Utc::now()))
    }

    /// Keeps a rendered page; returns it as the cache holds it.
    pub fn put_page(
        &self,
        grant: Uuid,
        file: FileId,
        (page, zoom): (u32, u32),
        until: DateTime<Utc>,
        png: Vec<u8>,
    ) -> Plain {
        let png: Plain = Arc::new(Zeroizing::new(png));
        let key = Key::Page {
            grant,
            file,
            page,
            zoom,
        };
        self.put(key, until, Arc::clone(&png), None);
        png
    }

    /// The decrypted content of `file` as opened under `grant`, and its page count if
    /// counted.
    pub fn content(&self, grant: Uuid, file: FileId) -> Option<(Plain, Option<u32>)> {
        let key = Key::Content { grant, file };
        self.lock()
            .get(key, self.idle, &self.counters)
            .map(|e| (Arc::clone(&e.value), e.pages))
    }

    /// Keeps the decrypted content of `file` opened under `grant`.
    pub fn put_content(
        &self,
        grant: Uuid,
        file: FileId,
        until: DateTime<Utc>,
        content: Plain,
        pages: Option<u32>,
    ) {
        self.put(Key::Content { grant, file }, until, content, pages);
    }

    /// Records the page count of cached content.
    pub fn set_pages(&self, grant: Uuid, file: FileId, pages: u32) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(&Key::Content { grant, file }) {
            e.pages = Some(pages);
        }
    }

    pub fn count_decrypt(&self) {
        self.counters.decrypts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_render(&self) {
        self.counters.renders.fetch_add(1, Ordering::Relaxed);
    }

    async fn stripe(
        &self,
        locks: &[Arc<tokio::sync::Mutex<()>>],
        key: Key,
        wait: Duration,
    ) -> Option<OwnedMutexGuard<()>> {
        let at = usize::try_from(self.hasher.hash_one(key) % STRIPES as u64).unwrap_or(0);
        let lock = Arc::clone(locks.get(at)?);
        tokio::time::timeout(wait, lock.lock_owned()).await.ok()
    }

    /// Waits (bounded) until no one else loads this file under this grant; `None` if the
    /// wait ran out.
    pub async fn lock_content(&self, grant: Uuid, file: FileId) -> Option<OwnedMutexGuard<()>> {
        self.stripe(&self.content_locks, Key::Content { grant, file }, LOCK_WAIT)
            .await
    }

    /// Waits (bounded) until no one else renders this page; `None` if the wait ran out.
    /// A holder of a page lock may take a content lock, never the other way round.
    pub async fn lock_page(
        &self,
        grant: Uuid,
        file: FileId,
        page: u32,
        zoom: u32,
    ) -> Option<OwnedMutexGuard<()>> {
        let key = Key::Page {
            grant,
            file,
            page,
            zoom,
        };
        self.stripe(&self.page_locks, key, LOCK_WAIT).await
    }

    /// Renders the pages after `page` (up to [`LOOKAHEAD`] of them, and not past `pages`
    /// when known) into the cache in the background, unless they are there already or a
    /// look-ahead is under way for this viewer. Stops when the grant ends, at the first
    /// page that does not render, and when its turn does not come within a few seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn look_ahead(
        &self,
        grant: Uuid,
        file: FileId,
        until: DateTime<Utc>,
        kind: Renderable,
        content: Plain,
        (page, pages, zoom): (u32, Option<u32>, u32),
    ) {
        if kind != Renderable::Pdf || self.budget == 0 {
            return;
        }
        let last = page
            .saturating_add(LOOKAHEAD)
            .min(pages.unwrap_or(u32::MAX));
        let wanted: Vec<u32> = (page.saturating_add(1)..=last)
            .filter(|p| !self.has_page(grant, file, *p, zoom))
            .collect();
        if wanted.is_empty() {
            return;
        }
        if !self.lock().prefetching.insert((grant, file)) {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            let _done = Prefetching {
                cache: cache.clone(),
                viewer: (grant, file),
            };
            for p in wanted {
                if cache.has_ended(grant) || until <= Utc::now() {
                    return;
                }
                let Ok(Ok(_turn)) = tokio::time::timeout(PREFETCH_WAIT, PREFETCH.acquire()).await
                else {
                    return;
                };
                let key = Key::Page {
                    grant,
                    file,
                    page: p,
                    zoom,
                };
                let Some(_rendering) = cache.stripe(&cache.page_locks, key, PREFETCH_WAIT).await
                else {
                    return;
                };
                if cache.has_page(grant, file, p, zoom) {
                    continue;
                }
                match render::render_page(kind, feed(&content), p, zoom, super::MAX_VIEW_BYTES)
                    .await
                {
                    Ok(png) => {
                        cache.count_render();
                        cache.put_page(grant, file, (p, zoom), until, png);
                        cache.counters.prefetched.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

/// Marks a viewer's look-ahead as over, however its task ends.
struct Prefetching {
    cache: ViewerCache,
    viewer: (Uuid, FileId),
}

impl Drop for Prefetching {
    fn drop(&mut self) {
        self.cache.lock().prefetching.remove(&self.viewer);
    }
}

/// Cached content as the stream the renderers read, in chunks that share the cached
/// buffer (no copy of the plaintext is made).
pub fn feed(
    content: &Plain,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin {
    let all = Bytes::from_owner(Shared(Arc::clone(content)));
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = (0..all.len())
        .step_by(FEED_CHUNK)
        .map(|at| Ok(all.slice(at..all.len().min(at + FEED_CHUNK))))
        .collect();
    stream::iter(chunks)
}

/// A cached buffer as the owner of a `Bytes`.
struct Shared(Plain);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> (Uuid, FileId) {
        (Uuid::new_v4(), FileId(Uuid::new_v4()))
    }

    fn later() -> DateTime<Utc> {
        Utc::now() + chrono::Duration::hours(1)
    }

    #[test]
    fn pages_are_kept_per_grant_file_page_and_zoom() {
        let cache = ViewerCache::new(1 << 20, Duration::from_secs(300));
        let (g, f) = id();
        cache.put_page(g, f, (1, 100), later(), vec![1; 10]);
        assert_eq!(cache.page(g, f, 1, 100).map(|p| p.len()), Some(10));
        assert!(cache.page(g, f, 1, 200).is_none());
        assert!(cache.page(g, f, 2, 100).is_none());
        let (other_grant, other_file) = id();
        assert!(cache.page(other_grant, f, 1, 100).is_none());
        assert!(cache.page(g, other_file, 1, 100).is_none());
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries, s.bytes), (1, 4, 1, 10));
    }

    #[test]
    fn the_budget_is_kept_by_dropping_the_least_recently_used() {
        let cache = ViewerCache::new(100, Duration::from_secs(300));
        let (g, f) = id();
        for p in 1..=4 {
            cache.put_page(g, f, (p, 100), later(), vec![0; 30]);
        }
        // 4 x 30 > 100: page 1 went.
        let s = cache.stats();
        assert_eq!((s.entries, s.bytes, s.evicted), (3, 90, 1));
        assert!(cache.page(g, f, 1, 100).is_none());
        // Page 2 is used, so page 3 is the least recently used now.
        assert!(cache.page(g, f, 2, 100).is_some());
        cache.put_page(g, f, (5, 100), later(), vec![0; 30]);
        assert!(cache.page(g, f, 3, 100).is_none());
        assert!(cache.page(g, f, 2, 100).is_some());
        assert!(cache.stats().bytes <= 100);
        // Over half the budget: not kept at all.
        cache.put_page(g, f, (6, 100), later(), vec![0; 51]);
        assert!(cache.page(g, f, 6, 100).is_none());
        assert!(cache.stats().bytes <= 100);
        // No budget, no cache.
        let off = ViewerCache::new(0, Duration::from_secs(300));
        off.put_page(g, f, (1, 100), later(), vec![0; 1]);
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn entries_end_with_their_grant_and_when_idle() {
        let cache = ViewerCache::new(1 << 20, Duration::from_millis(50));
        let (g, f) = id();
        // Already past the grant's end: not kept.
        cache.put_page(g, f, (1, 100), Utc::now(), vec![0; 10]);
        assert!(cache.page(g, f, 1, 100).is_none());
        cache.put_page(
            g,
            f,
            (2, 100),
            Utc::now() + chrono::Duration::milliseconds(30),
            vec![0; 10],
        );
        assert!(cache.page(g, f, 2, 100).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.page(g, f, 2, 100).is_none(), "past the grant's end");
        cache.put_page(g, f, (3, 100), later(), vec![0; 10]);
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.page(g, f, 3, 100).is_none(), "idle too long");
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn a_forgotten_grant_loses_its_entries_and_gets_no_new_ones() {
        let cache = ViewerCache::new(1 << 20, Duration::from_secs(300));
        let (g, f) = id();
        let (other, _) = id();
        cache.put_page(g, f, (1, 100), later(), vec![0; 10]);
        cache.put_content(
            g,
            f,
            later(),
            Arc::new(Zeroizing::new(vec![7; 20])),
            Some(3),
        );
        cache.put_page(other, f, (1, 100), later(), vec![0; 10]);
        assert_eq!(cache.entries_for_grant(g), 2);
        cache.forget_grant(g);
        assert_eq!(cache.entries_for_grant(g), 0);
        assert_eq!(cache.entries_for_grant(other), 1);
        assert_eq!(cache.stats().bytes, 10);
        // A render that was under way when the grant ended is not kept.
        cache.put_page(g, f, (2, 100), later(), vec![0; 10]);
        assert_eq!(cache.entries_for_grant(g), 0);
        assert_eq!(cache.stats().dropped_for_grants, 2);
    }

    #[tokio::test]
    async fn content_feeds_the_renderer_in_chunks_without_copying() {
        use futures_util::StreamExt;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let plain: Plain = Arc::new(Zeroizing::new(data.clone()));
        let chunks: Vec<Bytes> = feed(&plain)
            .map(|c| match c {
                Ok(b) => b,
                Err(never) => match never {},
            })
            .collect()
            .await;
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.len() <= FEED_CHUNK));
        assert_eq!(chunks.concat(), data);
        assert_eq!(chunks[0].as_ptr(), plain.as_ptr());
    }
}
