//! The watcher: lists one resource (paged) and then watches it from the list's resourceVersion, forever.
//!
//! As client-go's reflector: the first list may be served from the watch cache (`resourceVersion=0`); watches
//! ask for bookmarks and end after a jittered timeout, and are resumed from the last resourceVersion seen
//! (bookmarks included); a 410 Expired (from the watch call, or as an ERROR event) means the history is gone,
//! so the watcher relists (consistently, from storage). Other errors are retried with exponential backoff
//! (100 ms doubling to 30 s, reset after a success). Consumers see [`Event`]s: a full relist as
//! [`Event::Restarted`], then single changes.

use std::time::Duration;

use client::{Api, ListParams, WatchEvent};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::{Backoff, jitter};

/// What a watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A full (re)list: the complete set of objects now; anything not in it is gone.
    Restarted(Vec<Value>),
    /// An object was added or modified.
    Applied(Value),
    /// An object was deleted (its last state).
    Deleted(Value),
}

/// How a watcher lists and watches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Objects per list page (`limit`).
    pub page_size: u32,
    /// Watches ask the server to end after `watch_timeout` plus up to `watch_timeout_jitter` times it at random
    /// (whole seconds, at least 1): client-go's reflector uses 5 minutes and 1.0, so `[5m, 10m)`.
    pub watch_timeout: Duration,
    pub watch_timeout_jitter: f64,
    /// The first list is served from the apiserver's watch cache (`resourceVersion=0`), as client-go does.
    pub initial_list_from_cache: bool,
    /// First retry delay after an error.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Applied to every object as it arrives, each page of a list as it comes (client-go's `TransformFunc`): a
    /// transform that cuts objects down keeps a large first list from ever holding whole objects.
    pub transform: Option<Transform>,
}

/// What a watcher applies to each object it delivers.
pub type Transform = client::listdecode::Transform;

impl Default for Config {
    fn default() -> Self {
        Config {
            page_size: 500,
            watch_timeout: Duration::from_secs(300),
            watch_timeout_jitter: 1.0,
            initial_list_from_cache: true,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            transform: None,
        }
    }
}

/// A watch that ends sooner than this without delivering anything is treated as a failure.
const SHORT_WATCH: Duration = Duration::from_secs(1);

enum State {
    /// Needs a (re)list.
    List,
    /// Listed (or was watching): needs a watch from `resource_version`.
    Watch,
    /// A watch is open (since, and whether it delivered anything).
    Watching { rx: mpsc::Receiver<client::Result<WatchEvent>>, since: Instant, delivered: bool },
}

/// A list-then-watch loop over one resource. Drive it with [`Watcher::next`] or turn it into a stream with
/// [`Watcher::into_stream`].
pub struct Watcher {
    api: Api,
    label_selector: Option<String>,
    field_selector: Option<String>,
    config: Config,
    state: State,
    /// The last resourceVersion seen (list, event or bookmark).
    resource_version: Option<String>,
    /// The next list must be a consistent one (the last resourceVersion is gone or the cache was refused).
    consistent_list: bool,
    backoff: Backoff,
    /// No request before this instant (a backoff that survives the cancellation of `next`).
    retry_at: Option<Instant>,
}

impl Watcher {
    /// A watcher of `api` (a namespace or all) selecting with the label and field selectors of `params`; the other
    /// fields of `params` (limit, continue, resourceVersion, timeout, bookmarks) are the watcher's to choose.
    pub fn new(api: Api, params: &ListParams, config: Config) -> Self {
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max).with_jitter(0.1);
        Watcher {
            api,
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            consistent_list: !config.initial_list_from_cache,
            config,
            state: State::List,
            resource_version: None,
            backoff,
            retry_at: None,
        }
    }

    /// The resource this watcher follows.
    pub fn resource(&self) -> &'static api_types::Resource {
        self.api.res
    }

    /// The last resourceVersion seen (client-go's `LastSyncResourceVersion`), bookmarks included.
    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    fn selectors(&self) -> ListParams {
        ListParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            ..Default::default()
        }
    }

    fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        let delay = self.backoff.next_delay();
        tracing::warn!(resource = %self.api.res.qualified(), error = %e, retry_in = ?delay, "watcher: {what} failed");
        self.retry_at = Some(Instant::now() + delay);
    }

    /// A watched object, typed ([`Watcher::typed`]) and transformed.
    fn transformed(&self, mut obj: Value) -> Value {
        if let Some(transform) = self.config.transform {
            transform(&mut obj);
        }
        self.typed(obj)
    }

    /// Adds `kind` and `apiVersion` when the server left them out (list items).
    fn typed(&self, mut obj: Value) -> Value {
        if let Some(o) = obj.as_object_mut() {
            if !o.contains_key("kind") {
                o.insert("kind".into(), Value::String(self.api.res.kind.to_string()));
            }
            if !o.contains_key("apiVersion") {
                o.insert("apiVersion".into(), Value::String(self.api.res.api_version()));
            }
        }
        obj
    }

    /// Lists everything, page by page. Returns the objects and the list's resourceVersion.
    async fn list(&self) -> client::Result<(Vec<Value>, String)> {
        let mut p = self.selectors();
        p.limit = Some(self.config.page_size);
        if !self.consistent_list {
            p.resource_version = Some("0".into());
        }
        let mut items = Vec::new();
        loop {
            let mut page = match self.config.transform {
                Some(transform) => self.api.list_transformed(&p, transform).await?,
                None => self.api.list(&p).await?,
            };
            let rv = crate::resource_version(&page).to_string();
            if let Some(Value::Array(objs)) = page.get_mut("items").map(Value::take) {
                items.extend(objs.into_iter().map(|o| self.typed(o)));
            }
            match page.pointer("/metadata/continue").and_then(Value::as_str).filter(|c| !c.is_empty()) {
                Some(c) => {
                    p.continue_token = Some(c.to_string());
                    // A continued list is pinned by its token.
                    p.resource_version = None;
                }
                None => return Ok((items, rv)),
            }
        }
    }

    fn watch_params(&self) -> ListParams {
        let mut p = self.selectors();
        p.resource_version = self.resource_version.clone();
        p.bookmarks = true;
        let timeout = jitter(self.config.watch_timeout, self.config.watch_timeout_jitter).as_secs().max(1);
        p.timeout_seconds = Some(u32::try_from(timeout).unwrap_or(u32::MAX));
        p
    }

    fn note_rv(&mut self, obj: &Value) {
        let rv = crate::resource_version(obj);
        if !rv.is_empty() {
            self.resource_version = Some(rv.to_string());
        }
    }

    /// The next event. Retries forever; errors are logged. Dropping the future loses no event, but a list in
    /// progress starts over: in a `select!` loop that often cancels it, poll [`Watcher::into_stream`] instead.
    pub async fn next(&mut self) -> Event {
        loop {
            if let Some(at) = self.retry_at {
                tokio::time::sleep_until(at).await;
                self.retry_at = None;
            }
            match &mut self.state {
                State::List => match self.list().await {
                    Ok((items, rv)) => {
                        self.resource_version = Some(rv);
                        self.consistent_list = false;
                        self.backoff.reset();
                        self.state = State::Watch;
                        return Event::Restarted(items);
                    }
                    Err(e) => {
                        // 410: an expired continue token or resourceVersion; 504: "Too large resource version".
                        if matches!(e.code(), Some(410 | 504)) {
                            self.consistent_list = true;
                        }
                        self.fail("list", &e);
                    }
                },
                State::Watch => {
                    let p = self.watch_params();
                    match self.api.watch(&p).await {
                        Ok(rx) => self.state = State::Watching { rx, since: Instant::now(), delivered: false },
                        Err(e) if e.code() == Some(410) => {
                            tracing::info!(resource = %self.api.res.qualified(), "watcher: resourceVersion expired; relisting");
                            self.consistent_list = true;
                            self.state = State::List;
                        }
                        Err(e) => self.fail("watch", &e),
                    }
                }
                State::Watching { rx, since, delivered } => match rx.recv().await {
                    // The server ended the watch (timeout): resume from the last resourceVersion. One that ends
                    // at once with nothing in it points at a problem: back off (client-go's "very short watch").
                    None => {
                        let short = !*delivered && since.elapsed() < (self.config.watch_timeout / 2).min(SHORT_WATCH);
                        self.state = State::Watch;
                        if short {
                            self.fail("watch", &"very short watch");
                        }
                    }
                    Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                        *delivered = true;
                        self.note_rv(&obj);
                        self.backoff.reset();
                        return Event::Applied(self.transformed(obj));
                    }
                    Some(Ok(WatchEvent::Deleted(obj))) => {
                        *delivered = true;
                        self.note_rv(&obj);
                        self.backoff.reset();
                        return Event::Deleted(self.transformed(obj));
                    }
                    Some(Ok(WatchEvent::Bookmark(rv))) => {
                        *delivered = true;
                        if !rv.is_empty() {
                            self.resource_version = Some(rv);
                        }
                        self.backoff.reset();
                    }
                    Some(Ok(WatchEvent::Error(e))) if e.code == 410 => {
                        tracing::info!(resource = %self.api.res.qualified(), error = %e, "watcher: watch expired; relisting");
                        self.consistent_list = true;
                        self.state = State::List;
                    }
                    Some(Ok(WatchEvent::Error(e))) => {
                        self.state = State::Watch;
                        self.fail("watch", &e);
                    }
                    Some(Err(e)) => {
                        self.state = State::Watch;
                        self.fail("watch stream", &e);
                    }
                },
            }
        }
    }

    /// The events as an endless stream, each with the resourceVersion the watcher reached with it.
    /// `StreamExt::next` on it is cancel-safe: an interrupted list resumes where it was.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = (Event, Option<String>)> + Send {
        futures_util::stream::unfold(self, |mut w| async move {
            let ev = w.next().await;
            let rv = w.resource_version.clone();
            Some(((ev, rv), w))
        })
    }
}
